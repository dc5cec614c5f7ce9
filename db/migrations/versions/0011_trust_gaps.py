"""Closing what a review of revision 0005 found a console's credentials could still do.

* **The tables beside the case** (``case_assignment``, ``attachment``, ``case_counter``)
  were guarded only by the *declared* action's name, so a department declaring
  ``feedback`` could add itself to another department's case and then pass the
  own-department check.  Now each row change must come with a change of its case in
  the same transaction (the case's current version has no log entry yet: every
  committed change has one, ``case_logged``), by a role that may take the declared
  action, and be the change that action makes: dispatch and reassign insert fresh
  rows and delete old ones, acknowledge and feedback touch only the acting
  department's row and only their columns, return deletes, a failed verification
  clears.  Attachments are inserted only, their size, hash and uploader set by the
  database; the day counter only counts up by one, and only for a case with that
  number committed with it.
* **Lockout could be skipped** by wrapping ``grid_login`` in a transaction and rolling
  it back: the failure count was an ordinary row.  The row's ``failed_logins`` and
  ``locked_until`` are now mirrored, by a trigger as they are written, into a
  sequence per user, which PostgreSQL never rolls back (``setval``); ``grid_login``
  counts from the sequence, under the user's row lock.
* **A verification could be forged**: any console could INSERT a row into
  ``audit_check``.  Now only ``grid_audit_check`` writes it, after checking the
  chain itself, set-based, over the range asked; the client's own finding (it also
  checks the anchors kept outside the database) can only make the row worse.
* **A log entry's "from" status** was the client's word; it is now where the case's
  previous entry left it.
* **A temporary table could stand in for the rules.** The session's temporary schema
  is searched first even under ``SET search_path = pg_catalog, public``; every
  function that sets a search path now names pg_temp last (PostgreSQL's own advice
  for SECURITY DEFINER functions, and just as needed for the guards).

Revision ID: 0011
Revises: 0010
Created: 2026-12-10
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

LOCK_SECONDS = 300  # 5 failures → 5 minutes, as revision 0005
MAX_FAILURES = 5
LOG_ORDER_LOCK = 0x6C6F67  # revision 0005's, as db.case_actions takes it

FUNCTIONS_SQL = [
    # --- the tables beside the case ------------------------------------------------
    """
    CREATE FUNCTION grid_case_in_change(p_case bigint) RETURNS boolean
    LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
        -- Every committed version of a case has its log entry (case_logged), and the
        -- services append it last: a version without one is this transaction's change.
        SELECT EXISTS (SELECT 1 FROM "case" c WHERE c.id = p_case
                          AND NOT EXISTS (SELECT 1 FROM case_log l
                                           WHERE l.case_id = c.id
                                             AND l.case_version = c.version))
    $$
    """,
    """
    CREATE FUNCTION grid_side_actor(p_table text, p_op text, OUT role text,
        OUT department_id integer, OUT display_name text, OUT act text)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public AS $$
    DECLARE
        a record;
        r workflow_rule;
    BEGIN
        SELECT * INTO a FROM grid_require_session();
        act := current_setting('grid.action', true);
        SELECT * INTO r FROM workflow_rule w WHERE w.action = act;
        IF NOT FOUND OR NOT (a.role = ANY (r.roles)) THEN
            PERFORM grid_refuse(format('role %s may not %s (%s of %s)', a.role,
                coalesce(act, '(none)'), p_op, p_table));
        END IF;
        role := a.role;
        department_id := a.department_id;
        display_name := a.display_name;
    END $$
    """,
    """
    CREATE FUNCTION grid_assignment_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
    DECLARE
        a record;
        cid bigint;
        ok boolean;
    BEGIN
        IF grid_is_owner() THEN
            RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END IF;
        SELECT * INTO a FROM grid_side_actor(TG_TABLE_NAME, TG_OP);
        cid := CASE WHEN TG_OP = 'DELETE' THEN OLD.case_id ELSE NEW.case_id END;
        IF NOT grid_case_in_change(cid) THEN
            PERFORM grid_refuse(format('%s of case_assignment comes only with a change of '
                                       'its case', TG_OP));
        END IF;
        IF TG_OP = 'UPDATE' AND (NEW.case_id <> OLD.case_id
                OR NEW.department_id <> OLD.department_id OR NEW.is_lead <> OLD.is_lead
                OR NEW.assigned_at IS DISTINCT FROM OLD.assigned_at) THEN
            PERFORM grid_refuse('an assignment keeps its case, department and time');
        END IF;
        ok := CASE a.act
            WHEN 'dispatch' THEN TG_OP = 'DELETE' OR TG_OP = 'INSERT'
                AND grid_near(NEW.assigned_at, now()) AND NEW.acknowledged_at IS NULL
                AND NEW.fed_back_at IS NULL AND NEW.feedback IS NULL
            WHEN 'reassign' THEN TG_OP = 'DELETE' OR TG_OP = 'INSERT'
                AND grid_near(NEW.assigned_at, now()) AND NEW.acknowledged_at IS NULL
                AND NEW.fed_back_at IS NULL AND NEW.feedback IS NULL
            WHEN 'return' THEN TG_OP = 'DELETE'
            WHEN 'acknowledge' THEN TG_OP = 'UPDATE'
                AND NEW.department_id IS NOT DISTINCT FROM a.department_id
                AND OLD.acknowledged_at IS NULL AND grid_near(NEW.acknowledged_at, now())
                AND NEW.fed_back_at IS NOT DISTINCT FROM OLD.fed_back_at
                AND NEW.feedback IS NOT DISTINCT FROM OLD.feedback
            WHEN 'feedback' THEN TG_OP = 'UPDATE'
                AND NEW.department_id IS NOT DISTINCT FROM a.department_id
                AND OLD.fed_back_at IS NULL AND grid_near(NEW.fed_back_at, now())
                AND (OLD.acknowledged_at IS NULL AND grid_near(NEW.acknowledged_at, now())
                     OR OLD.acknowledged_at IS NOT NULL
                        AND NEW.acknowledged_at = OLD.acknowledged_at)
            WHEN 'verify_fail' THEN TG_OP = 'UPDATE' AND NEW.acknowledged_at IS NULL
                AND NEW.fed_back_at IS NULL AND NEW.feedback IS NULL
            ELSE false
        END;
        IF NOT coalesce(ok, false) THEN
            PERFORM grid_refuse(format('%s does not %s this assignment', a.act, lower(TG_OP)));
        END IF;
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END $$
    """,
    """
    CREATE FUNCTION grid_attachment_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
    DECLARE
        a record;
    BEGIN
        IF grid_is_owner() THEN
            RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END IF;
        SELECT * INTO a FROM grid_side_actor(TG_TABLE_NAME, TG_OP);
        IF TG_OP <> 'INSERT' OR a.act NOT IN ('report', 'feedback') THEN
            PERFORM grid_refuse('evidence is added with a report or a feedback, never changed');
        END IF;
        IF NOT grid_case_in_change(NEW.case_id) THEN
            PERFORM grid_refuse('evidence comes only with a change of its case');
        END IF;
        -- What the evidence is, the database says.
        NEW.size := octet_length(NEW.data);
        NEW.sha256 := encode(sha256(NEW.data), 'hex');
        NEW.uploaded_by := a.display_name;
        NEW.created_at := now();
        NEW.log_seq := NULL;
        RETURN NEW;
    END $$
    """,
    """
    CREATE FUNCTION grid_counter_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
    DECLARE
        a record;
    BEGIN
        IF grid_is_owner() THEN
            RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END IF;
        SELECT * INTO a FROM grid_side_actor(TG_TABLE_NAME, TG_OP);
        IF a.act <> 'report' OR TG_OP = 'DELETE'
           OR TG_OP = 'INSERT' AND NEW.n <> 1
           OR TG_OP = 'UPDATE' AND (NEW.day <> OLD.day OR NEW.n <> OLD.n + 1) THEN
            PERFORM grid_refuse('the day''s case counter only counts up by one, for a report');
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE FUNCTION grid_counter_used() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
    BEGIN
        IF grid_is_owner() THEN
            RETURN NULL;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM "case" WHERE number = NEW.day || '-'
                       || lpad(NEW.n::text, greatest(5, length(NEW.n::text)), '0')) THEN
            PERFORM grid_refuse('a case number is counted only for the case that takes it');
        END IF;
        RETURN NULL;
    END $$
    """,
    # --- the log: what the step came from is the database's too ----------------------
    # Revision 0006's guard (identity, order, chain, the deadlines in the payload) with
    # the "from" status taken from the previous entry.
    f"""
    CREATE OR REPLACE FUNCTION grid_log_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
    DECLARE
        a record;
        c record;
        prev bytea;
        came_from text;
    BEGIN
        IF NOT grid_is_owner() THEN
            SELECT * INTO a FROM grid_require_session();
            IF NEW.action IS DISTINCT FROM current_setting('grid.action', true) THEN
                PERFORM grid_refuse('a log entry records the action declared');
            END IF;
            SELECT id, number, status, version, stage_due_at, close_due_at INTO c
              FROM "case" WHERE id = NEW.case_id;
            IF NOT FOUND OR c.number <> NEW.case_number OR c.status <> NEW.to_status
               OR c.version <> NEW.case_version THEN
                PERFORM grid_refuse('a log entry records the case as the action left it');
            END IF;
            IF EXISTS (SELECT 1 FROM case_log
                        WHERE case_id = NEW.case_id AND case_version = NEW.case_version) THEN
                PERFORM grid_refuse('this version of the case is already logged');
            END IF;
            -- The status the step started from is where the previous entry left the
            -- case (a new case starts from nothing), not what the client says.
            IF NEW.case_version = 1 THEN
                NEW.from_status := NULL;
            ELSE
                SELECT to_status INTO came_from FROM case_log
                 WHERE case_id = NEW.case_id AND case_version = NEW.case_version - 1;
                IF FOUND THEN
                    NEW.from_status := came_from;
                END IF;
            END IF;
            NEW.actor_id := a.user_id;
            NEW.actor_name := a.display_name;
            NEW.actor_role := a.role;
            NEW.at := now();
            -- The deadlines in force after this action, as the case guard checked them
            -- (revision 0006): what the metrics read a stage's deadline from.
            NEW.payload := coalesce(NEW.payload, '{{}}'::jsonb)
                || jsonb_build_object('stage_due', c.stage_due_at, 'close_due', c.close_due_at);
        END IF;
        NEW.client_addr := coalesce(host(inet_client_addr()), 'local');
        NEW.client_app := left(current_setting('application_name', true), 64);
        -- Order: numbered under the log lock, so seq order is commit order.
        PERFORM pg_advisory_xact_lock({LOG_ORDER_LOCK});
        NEW.seq := nextval(pg_get_serial_sequence('case_log', 'seq'));
        SELECT hash INTO prev FROM case_log ORDER BY seq DESC LIMIT 1;
        NEW.prev_hash := coalesce(prev, '\\x'::bytea);
        NEW.hash := sha256(NEW.prev_hash || convert_to(grid_log_text(NEW), 'UTF8'));
        RETURN NEW;
    END $$
    """,
    # --- lockout that a rollback cannot undo ------------------------------------------
    """
    CREATE FUNCTION grid_login_guard(p_user integer) RETURNS regclass
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        name text := 'grid_login_guard_' || p_user;
        qualified text := 'public.' || quote_ident('grid_login_guard_' || p_user);
    BEGIN
        -- One sequence per user: value = lock end (epoch seconds) * 8 + failures since
        -- the last success.  setval is never rolled back.
        IF to_regclass(qualified) IS NULL THEN
            EXECUTE format('CREATE SEQUENCE public.%I MINVALUE 0 START 0', name);
            EXECUTE format('REVOKE ALL ON SEQUENCE public.%I FROM PUBLIC', name);
        END IF;
        RETURN qualified::regclass;
    END $$
    """,
    """
    CREATE FUNCTION grid_login_guard_new_user() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    BEGIN
        PERFORM grid_login_guard(NEW.id);
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION grid_login_guard_mirror() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    BEGIN
        -- The row's count and lock, copied where no rollback reaches: whoever writes
        -- them (a login, an administrator's unlock, a new password) writes the guard.
        PERFORM setval(grid_login_guard(NEW.id),
            coalesce(ceil(extract(epoch FROM NEW.locked_until))::bigint, 0) * 8
            + least(greatest(NEW.failed_logins, 0), 7), true);
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION grid_login(p_name text, p_password text, p_workstation text,
        OUT result text, OUT token text, OUT user_id integer, OUT minutes integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        u record;
        ok boolean;
        guard regclass;
        packed bigint;
        lock_end bigint;
        fails integer;
        now_s bigint := floor(extract(epoch FROM clock_timestamp()))::bigint;
    BEGIN
        -- The row lock orders concurrent attempts at one user, rollback or not.
        SELECT * INTO u FROM app_user WHERE name = p_name FOR UPDATE;
        IF NOT FOUND OR NOT u.active OR u.role = 'system' THEN
            PERFORM grid_password_ok(p_password, NULL);
            result := 'wrong';
            RETURN;
        END IF;
        guard := grid_login_guard(u.id);
        EXECUTE format('SELECT last_value FROM %s', guard) INTO packed;
        lock_end := packed / 8;
        fails := packed % 8;
        IF lock_end > now_s THEN
            PERFORM grid_password_ok(p_password, NULL);
            result := 'locked';
            minutes := greatest(1, ceil((lock_end - now_s) / 60.0)::int);
            RETURN;
        END IF;
        ok := grid_password_ok(p_password, u.password_hash);
        IF NOT ok THEN
            -- Counted from the guard, not the row (a rollback may have undone the
            -- row); the mirror trigger writes the guard as the row is written.
            IF fails + 1 >= {MAX_FAILURES} THEN
                UPDATE app_user SET failed_logins = 0,
                       locked_until = to_timestamp(now_s + {LOCK_SECONDS})
                 WHERE id = u.id;
            ELSE
                UPDATE app_user SET failed_logins = fails + 1 WHERE id = u.id;
            END IF;
            result := 'wrong';
            RETURN;
        END IF;
        UPDATE app_user SET failed_logins = 0, locked_until = NULL WHERE id = u.id;
        token := replace(gen_random_uuid()::text, '-', '')
              || replace(gen_random_uuid()::text, '-', '');
        INSERT INTO grid_session (token_hash, user_id, expires_at, client_addr, client_app,
                                  workstation)
        VALUES (sha256(convert_to(token, 'UTF8')), u.id, now() + interval '7 days',
                host(inet_client_addr()), current_setting('application_name', true),
                left(coalesce(p_workstation, ''), 100));
        result := 'ok';
        user_id := u.id;
    END $$
    """,
    # --- a verification only the database records -------------------------------------
    """
    CREATE FUNCTION grid_audit_check(p_from bigint, p_client_bad bigint DEFAULT NULL)
    RETURNS audit_check
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        start_hash bytea;
        n bigint;
        last bigint;
        bad bigint;
        res audit_check;
    BEGIN
        SELECT hash INTO start_hash FROM case_log WHERE seq < p_from
         ORDER BY seq DESC LIMIT 1;
        SELECT count(*), max(seq), min(seq) FILTER (WHERE broken)
          INTO n, last, bad
          FROM (SELECT l.seq,
                       l.hash IS NULL
                       OR l.prev_hash IS DISTINCT FROM
                          coalesce(lag(l.hash) OVER (ORDER BY l.seq),
                                   coalesce(start_hash, '\\x'::bytea))
                       OR l.hash <> sha256(l.prev_hash
                                           || convert_to(grid_log_text(l), 'UTF8')) AS broken
                  FROM case_log l WHERE l.seq >= p_from) s;
        IF p_client_bad IS NOT NULL THEN  -- the client's finding can only make it worse
            bad := least(coalesce(bad, p_client_bad), p_client_bad);
        END IF;
        INSERT INTO audit_check (from_seq, to_seq, entries, ok, first_bad_seq)
        VALUES (p_from, coalesce(last, p_from), n, bad IS NULL, bad)
        RETURNING * INTO res;
        RETURN res;
    END $$
    """,
]

TRIGGERS_SQL = [
    "DROP TRIGGER case_assignment_guard ON case_assignment",
    "DROP TRIGGER attachment_guard ON attachment",
    "DROP TRIGGER case_counter_guard ON case_counter",
    """
    CREATE TRIGGER case_assignment_guard BEFORE INSERT OR UPDATE OR DELETE ON case_assignment
        FOR EACH ROW EXECUTE FUNCTION grid_assignment_guard()
    """,
    """
    CREATE TRIGGER attachment_guard BEFORE INSERT OR UPDATE OR DELETE ON attachment
        FOR EACH ROW EXECUTE FUNCTION grid_attachment_guard()
    """,
    """
    CREATE TRIGGER case_counter_guard BEFORE INSERT OR UPDATE OR DELETE ON case_counter
        FOR EACH ROW EXECUTE FUNCTION grid_counter_guard()
    """,
    """
    CREATE CONSTRAINT TRIGGER case_counter_used AFTER INSERT OR UPDATE ON case_counter
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION grid_counter_used()
    """,
    """
    CREATE TRIGGER app_user_login_guard AFTER INSERT ON app_user
        FOR EACH ROW EXECUTE FUNCTION grid_login_guard_new_user()
    """,
    """
    CREATE TRIGGER app_user_login_guard_mirror AFTER UPDATE OF failed_logins, locked_until
        ON app_user FOR EACH ROW EXECUTE FUNCTION grid_login_guard_mirror()
    """,
    # Replica mode (session_replication_role) skips ordinary triggers: not these.
    "ALTER TABLE case_assignment ENABLE ALWAYS TRIGGER case_assignment_guard",
    "ALTER TABLE attachment ENABLE ALWAYS TRIGGER attachment_guard",
    "ALTER TABLE case_counter ENABLE ALWAYS TRIGGER case_counter_guard",
    "ALTER TABLE case_counter ENABLE ALWAYS TRIGGER case_counter_used",
    "DROP FUNCTION grid_action_guard()",
    # Existing users: their guards, carrying over a lock in force.
    """
    SELECT setval(grid_login_guard(id),
                  CASE WHEN locked_until > now()
                       THEN ceil(extract(epoch FROM locked_until))::bigint * 8
                       ELSE least(failed_logins, 7) END, true)
      FROM app_user
    """,
]

GRANTS_SQL = [
    "REVOKE INSERT ON audit_check FROM grid_console",
    "REVOKE EXECUTE ON FUNCTION grid_login_guard(integer) FROM PUBLIC",
    "REVOKE EXECUTE ON FUNCTION grid_audit_check(bigint, bigint) FROM PUBLIC",
    "GRANT EXECUTE ON FUNCTION grid_audit_check(bigint, bigint) TO grid_console, grid_wall",
    "GRANT EXECUTE ON FUNCTION grid_case_in_change(bigint), "
    "grid_side_actor(text, text) TO grid_console",
    "REVOKE EXECUTE ON FUNCTION grid_login_guard_new_user(), grid_login_guard_mirror(), "
    "grid_assignment_guard(), grid_attachment_guard(), grid_counter_guard(), "
    "grid_counter_used() FROM PUBLIC",
]


# PostgreSQL searches the session's temporary schema first, even under a function's
# ``SET search_path = pg_catalog, public``, unless pg_temp is named (last): a console's
# CREATE TEMP TABLE workflow_rule would otherwise stand in for the rules inside every
# guard.  Every function of the schema that sets a search path gets pg_temp last.
PG_TEMP_LAST_SQL = """
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS sig, cfg
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
                    unnest(p.proconfig) AS cfg
              WHERE n.nspname = 'public' AND cfg LIKE 'search_path=%'
                AND cfg NOT LIKE '%pg_temp%'
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %s, pg_temp', f.sig,
                       substr(f.cfg, length('search_path=') + 1));
    END LOOP;
    -- Trigger and SECURITY DEFINER functions that set none ran under the caller's path.
    FOR f IN SELECT p.oid::regprocedure AS sig
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'public'
                AND (p.prosecdef OR p.prorettype = 'trigger'::regtype)
                AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c
                                 WHERE c LIKE 'search_path=%')
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, public, pg_temp',
                       f.sig);
    END LOOP;
END $$
"""


def upgrade() -> None:
    for statement in FUNCTIONS_SQL + TRIGGERS_SQL + GRANTS_SQL:
        op.execute(statement)
    op.execute(PG_TEMP_LAST_SQL)


def _revision(filename: str):
    """An earlier revision's module, whose definitions a downgrade puts back."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name(filename)
    spec = importlib.util.spec_from_file_location(f"grid_revision_{filename[:4]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    old = _revision("0005_trust.py")
    for trigger, table in (("case_assignment_guard", "case_assignment"),
                           ("attachment_guard", "attachment"),
                           ("case_counter_guard", "case_counter"),
                           ("case_counter_used", "case_counter"),
                           ("app_user_login_guard", "app_user"),
                           ("app_user_login_guard_mirror", "app_user")):
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    op.execute("DROP FUNCTION grid_assignment_guard(), grid_attachment_guard(), "
               "grid_counter_guard(), grid_counter_used(), grid_login_guard_new_user(), "
               "grid_login_guard_mirror(), grid_side_actor(text, text), "
               "grid_case_in_change(bigint), grid_audit_check(bigint, bigint)")
    op.execute("""
    DO $$
    DECLARE
        s record;
    BEGIN
        FOR s IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = 'public' AND c.relkind = 'S'
                    AND c.relname LIKE 'grid\\_login\\_guard\\_%'
        LOOP
            EXECUTE format('DROP SEQUENCE public.%I', s.relname);
        END LOOP;
    END $$
    """)
    op.execute("DROP FUNCTION grid_login_guard(integer)")
    for statement in old.FUNCTIONS_SQL:
        if "FUNCTION grid_action_guard()" in statement:
            op.execute(statement)
        elif "FUNCTION grid_login(" in statement:
            op.execute(statement.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    op.execute(_revision("0006_evaluation.py").LOG_GUARD_SQL)  # the log guard as 0006 left it
    for statement in old.TRIGGERS_SQL:
        if any(f"TRIGGER {t} " in statement
               for t in ("case_assignment_guard", "attachment_guard", "case_counter_guard")):
            op.execute(statement)
    op.execute("GRANT INSERT ON audit_check TO grid_console")
