"""The database is the authority: least-privilege roles, sessions, checked actions, a hash chain.

Roles (cluster-wide, created if missing):

* ``grid_owner``   owns every table, function and sequence; NOLOGIN: administrators
  and ``db upgrade`` act as it by membership, consoles never do;
* ``grid_console`` what operators' consoles, the CLI and the simulator connect as: it
  reads, and writes cases only through the checks below;
* ``grid_wall``    read-only (the wall display);
* ``grid_gateway`` positions, latest positions, worker events and device state only.

Identity: ``grid_login(name, password, workstation)`` checks the password inside the
database (salted, iterated SHA-256: PostgreSQL 16 without pgcrypto has ``sha256()``),
counts failures and locks the account (5 → 5 minutes), and hands back a random token
whose hash is kept in ``grid_session``.  A transaction proves who acts by setting
``grid.session`` (the token) and declares what it does with ``grid.action``; the
triggers read both, so a client that sets them falsely gets no more than that
user's role allows for that action.

Checks: a BEFORE trigger on ``case`` allows a change only when the session's role may
take the declared action from the row's status to the new status, the version rises
by one, only that action's columns change, and stage deadlines equal what the time
limits give (or the pending extension adds).  A deferred trigger requires each case
change to have its log entry.  The log trigger sets actor, role and time from the
session, records the client address and application name the server sees, takes the
order lock, numbers the entry and hash-chains it to the previous one.

Revision ID: 0005
Revises: 0004
Created: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from db.workflow import ACTIONS

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ROUNDS = 100_000
LOG_ORDER_LOCK = 0x6C6F67  # the same lock db.case_actions takes: seq order = commit order

# Columns each action may change, besides status, version, updated_at and the stage
# deadline columns (whose values the trigger checks).
ACTION_COLUMNS: dict[str, tuple[str, ...]] = {
    "accept": (),
    "reject": ("closed_at",),
    "merge": ("merged_into_id", "closed_at"),
    "file": ("category_id", "severity", "filed_at", "close_due_at"),
    "dispatch": ("department_id", "worker_id", "dispatched_at"),
    "reassign": ("department_id", "worker_id", "dispatched_at"),
    "acknowledge": (),
    "return": ("department_id", "worker_id", "return_count"),
    "feedback": ("feedback_at",),
    "verify_pass": ("closed_at",),
    "verify_fail": ("rework_count", "feedback_at"),
    "close": ("closed_at",),
    "archive": ("evaluation",),
    "escalate": ("escalation",),
    "request_extension": ("extension_pending_h",),
    "approve_extension": ("extension_pending_h", "extended_h", "close_due_at"),
}
# Target statuses of the actions whose rule leaves the target open (None).
VARIABLE_TARGETS: dict[str, tuple[str, ...]] = {
    "feedback": ("in_progress", "awaiting_verification"),
    "escalate": (),
    "request_extension": (),
    "approve_extension": (),
}
REPORT_TARGETS = ("reported", "awaiting_verification")  # on-the-spot handling
OWN_DEPARTMENT = ("acknowledge", "return", "feedback", "request_extension")


def _array(values) -> str:
    inner = ",".join('"' + v + '"' for v in values)
    return "'{" + inner + "}'::text[]"


def _rules_sql() -> list[str]:
    rows = []
    for name, rule in ACTIONS.items():
        if name == "report":
            targets: tuple[str, ...] = REPORT_TARGETS
        elif rule.to_status is None:
            targets = VARIABLE_TARGETS[name]
        else:
            targets = (str(rule.to_status),)
        rows.append(
            "('{}', {}, {}, {}, {}, {})".format(
                name,
                _array(sorted(rule.roles)),
                _array(sorted(str(s) for s in rule.from_statuses)),
                _array(targets),
                _array(ACTION_COLUMNS.get(name, ())),
                "true" if name in OWN_DEPARTMENT else "false",
            )
        )
    return ["DELETE FROM workflow_rule", "INSERT INTO workflow_rule VALUES " + ",\n".join(rows)]


ROLES_SQL = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'grid_owner') THEN
        CREATE ROLE grid_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'grid_console') THEN
        CREATE ROLE grid_console LOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'grid_wall') THEN
        CREATE ROLE grid_wall LOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'grid_gateway') THEN
        CREATE ROLE grid_gateway LOGIN;
    END IF;
    IF NOT pg_has_role(current_user, 'grid_owner', 'MEMBER') THEN
        EXECUTE format('GRANT grid_owner TO %I', current_user);
    END IF;
END $$
"""

SCHEMA_SQL = [
    # New columns: where the server saw the action come from, and the chain.
    "ALTER TABLE case_log ADD COLUMN client_addr text",
    "ALTER TABLE case_log ADD COLUMN client_app text",
    "ALTER TABLE case_log ADD COLUMN prev_hash bytea",
    "ALTER TABLE case_log ADD COLUMN hash bytea",
    "ALTER TABLE device ADD COLUMN key_hash text",
    """
    CREATE TABLE workflow_rule (
        action text PRIMARY KEY,
        roles text[] NOT NULL,
        from_statuses text[] NOT NULL,
        to_statuses text[] NOT NULL,
        columns text[] NOT NULL,
        own_department boolean NOT NULL
    )
    """,
    """
    CREATE TABLE grid_session (
        token_hash bytea PRIMARY KEY,
        user_id integer NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        revoked_at timestamptz,
        client_addr text,
        client_app text,
        workstation text
    )
    """,
    "CREATE INDEX ix_grid_session_user_id ON grid_session (user_id)",
    """
    CREATE TABLE grid_meta (
        key text PRIMARY KEY,
        value text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE audit_check (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        from_seq bigint NOT NULL,
        to_seq bigint NOT NULL,
        entries bigint NOT NULL,
        ok boolean NOT NULL,
        first_bad_seq bigint,
        checked_by text NOT NULL DEFAULT session_user
    )
    """,
    "CREATE INDEX ix_case_log_case_version ON case_log (case_id, case_version)",
]

FUNCTIONS_SQL = [
    # --- passwords ----------------------------------------------------------
    """
    CREATE FUNCTION grid_password_digest(pw text, salt bytea, rounds integer)
    RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT
    SET search_path = pg_catalog AS $$
    DECLARE
        p bytea := convert_to(pw, 'UTF8');
        h bytea := sha256(salt || p);
    BEGIN
        FOR i IN 1..rounds LOOP
            h := sha256(h || salt || p);
        END LOOP;
        RETURN h;
    END $$
    """,
    f"""
    CREATE FUNCTION grid_password_hash(pw text) RETURNS text
    LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, public AS $$
    DECLARE
        salt bytea := decode(replace(gen_random_uuid()::text, '-', ''), 'hex');
    BEGIN
        RETURN 'sha256i$' || {ROUNDS} || '$' || encode(salt, 'hex') || '$'
            || encode(grid_password_digest(pw, salt, {ROUNDS}), 'hex');
    END $$
    """,
    """
    CREATE FUNCTION grid_password_ok(pw text, stored text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, public AS $$
    DECLARE
        parts text[];
    BEGIN
        IF stored IS NULL OR stored NOT LIKE 'sha256i$%' THEN
            -- Same work as a real check, so the time does not tell.
            PERFORM grid_password_digest(coalesce(pw, ''), '\\x00'::bytea, 100000);
            RETURN false;
        END IF;
        parts := string_to_array(stored, '$');
        RETURN encode(grid_password_digest(pw, decode(parts[3], 'hex'), parts[2]::integer), 'hex')
            = parts[4];
    END $$
    """,
    # --- sessions -------------------------------------------------------------
    """
    CREATE FUNCTION grid_is_owner() RETURNS boolean
    LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
        -- current_user: inside the owner's own functions (escalation) this is the
        -- owner; a console's statement runs as the console's role.
        SELECT pg_has_role(current_user, 'grid_owner', 'MEMBER')
    $$
    """,
    """
    CREATE FUNCTION grid_session_actor(
        OUT user_id integer, OUT name text, OUT display_name text, OUT role text,
        OUT department_id integer)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        tok text := current_setting('grid.session', true);
    BEGIN
        IF tok IS NULL OR tok = '' THEN
            RETURN;
        END IF;
        SELECT u.id, u.name, u.display_name, u.role, u.department_id
          INTO user_id, name, display_name, role, department_id
          FROM grid_session s JOIN app_user u ON u.id = s.user_id
         WHERE s.token_hash = sha256(convert_to(tok, 'UTF8'))
           AND s.revoked_at IS NULL AND s.expires_at > now() AND u.active;
    END $$
    """,
    """
    CREATE FUNCTION grid_session_user_id() RETURNS integer
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        SELECT user_id FROM grid_session_actor()
    $$
    """,
    """
    CREATE FUNCTION grid_require_session(
        OUT user_id integer, OUT name text, OUT display_name text, OUT role text,
        OUT department_id integer)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    BEGIN
        SELECT * INTO user_id, name, display_name, role, department_id
          FROM grid_session_actor();
        IF user_id IS NULL THEN
            RAISE EXCEPTION 'no valid login session: log in first'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END $$
    """,
    """
    CREATE FUNCTION grid_login(p_name text, p_password text, p_workstation text,
        OUT result text, OUT token text, OUT user_id integer, OUT minutes integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        u record;
        ok boolean;
    BEGIN
        SELECT * INTO u FROM app_user WHERE name = p_name FOR UPDATE;
        IF NOT FOUND OR NOT u.active OR u.role = 'system' THEN
            PERFORM grid_password_ok(p_password, NULL);
            result := 'wrong';
            RETURN;
        END IF;
        IF u.locked_until IS NOT NULL AND u.locked_until > now() THEN
            PERFORM grid_password_ok(p_password, NULL);
            result := 'locked';
            minutes := greatest(1, ceil(extract(epoch FROM u.locked_until - now()) / 60)::int);
            RETURN;
        END IF;
        ok := grid_password_ok(p_password, u.password_hash);
        IF NOT ok THEN
            IF u.failed_logins + 1 >= 5 THEN
                UPDATE app_user SET failed_logins = 0, locked_until = now() + interval '5 minutes'
                 WHERE id = u.id;
            ELSE
                UPDATE app_user SET failed_logins = failed_logins + 1 WHERE id = u.id;
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
    """
    CREATE FUNCTION grid_logout(p_token text) RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        UPDATE grid_session SET revoked_at = now()
         WHERE token_hash = sha256(convert_to(p_token, 'UTF8')) AND revoked_at IS NULL
    $$
    """,
    # --- user administration (administrators or the owner) --------------------
    """
    CREATE FUNCTION grid_require_admin() RETURNS void
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        a record;
    BEGIN
        IF pg_has_role(session_user, 'grid_owner', 'MEMBER') THEN
            RETURN;
        END IF;
        SELECT * INTO a FROM grid_session_actor();
        IF a.user_id IS NULL OR a.role <> 'admin' THEN
            RAISE EXCEPTION 'only an administrator may manage users'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END $$
    """,
    """
    CREATE FUNCTION grid_user_add(p_name text, p_role text, p_password text,
        p_display text, p_department text) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        dept integer;
        uid integer;
    BEGIN
        PERFORM grid_require_admin();
        IF p_role = 'system' THEN
            RAISE EXCEPTION 'the system identity is built in' USING ERRCODE = 'check_violation';
        END IF;
        IF p_department IS NOT NULL THEN
            SELECT id INTO dept FROM department WHERE code = p_department;
        END IF;
        INSERT INTO app_user (name, display_name, role, password_hash, department_id)
        VALUES (p_name, coalesce(p_display, p_name), p_role, grid_password_hash(p_password),
                dept)
        RETURNING id INTO uid;
        RETURN uid;
    END $$
    """,
    """
    CREATE FUNCTION grid_user_passwd(p_name text, p_password text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        a record;
        target integer;
    BEGIN
        SELECT id INTO target FROM app_user WHERE name = p_name AND role <> 'system';
        IF target IS NULL THEN
            RAISE EXCEPTION 'unknown user' USING ERRCODE = 'no_data_found';
        END IF;
        SELECT * INTO a FROM grid_session_actor();
        IF NOT (pg_has_role(session_user, 'grid_owner', 'MEMBER') OR a.role = 'admin'
                OR a.user_id = target) THEN
            RAISE EXCEPTION 'only an administrator or the user may change a password'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        UPDATE app_user SET password_hash = grid_password_hash(p_password),
               failed_logins = 0, locked_until = NULL
         WHERE id = target;
        -- Every other session of that user ends with the old password.
        UPDATE grid_session SET revoked_at = now()
         WHERE user_id = target AND revoked_at IS NULL
           AND token_hash IS DISTINCT FROM
               sha256(convert_to(coalesce(current_setting('grid.session', true), ''), 'UTF8'));
    END $$
    """,
    """
    CREATE FUNCTION grid_user_set_active(p_name text, p_active boolean) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        target integer;
    BEGIN
        PERFORM grid_require_admin();
        UPDATE app_user SET active = p_active WHERE name = p_name AND role <> 'system'
        RETURNING id INTO target;
        IF target IS NULL THEN
            RAISE EXCEPTION 'unknown user' USING ERRCODE = 'no_data_found';
        END IF;
        IF NOT p_active THEN
            UPDATE grid_session SET revoked_at = now()
             WHERE user_id = target AND revoked_at IS NULL;
        END IF;
    END $$
    """,
    """
    CREATE FUNCTION grid_device_key(p_identifier text, p_key_hash text, p_create boolean)
    RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        n integer;
    BEGIN
        PERFORM grid_require_admin();
        IF p_create THEN
            INSERT INTO device (identifier) VALUES (p_identifier) ON CONFLICT DO NOTHING;
        END IF;
        UPDATE device SET key_hash = p_key_hash WHERE identifier = p_identifier;
        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN n;
    END $$
    """,
    # --- the checks on cases ----------------------------------------------------
    """
    CREATE FUNCTION grid_stage_due(p_status text, p_category integer, p_severity text,
                                   p_from timestamptz) RETURNS timestamptz
    LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
        SELECT p_from + make_interval(secs => 3600 * CASE p_status
                WHEN 'reported' THEN t.accept_h
                WHEN 'accepted' THEN t.file_h
                WHEN 'filed' THEN t.dispatch_h
                WHEN 'dispatched' THEN t.handle_h
                WHEN 'in_progress' THEN t.handle_h
                WHEN 'awaiting_verification' THEN t.verify_h
            END)
          FROM time_limit t WHERE t.category_id = p_category AND t.severity = p_severity
    $$
    """,
    """
    CREATE FUNCTION grid_close_due(p_category integer, p_severity text, p_from timestamptz)
    RETURNS timestamptz
    LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
        SELECT p_from + make_interval(secs => 3600 * t.close_h)
          FROM time_limit t WHERE t.category_id = p_category AND t.severity = p_severity
    $$
    """,
    """
    CREATE FUNCTION grid_near(a timestamptz, b timestamptz) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS $$
        SELECT CASE WHEN a IS NULL OR b IS NULL THEN a IS NULL AND b IS NULL
                    ELSE abs(extract(epoch FROM a - b)) < 0.002 END
    $$
    """,
    """
    CREATE FUNCTION grid_refuse(msg text) RETURNS void
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'refused by the database: %', msg USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    """
    CREATE FUNCTION grid_case_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
    DECLARE
        a record;
        r workflow_rule;
        act text := current_setting('grid.action', true);
        changed text[];
        allowed text[];
        col text;
    BEGIN
        IF grid_is_owner() THEN
            RETURN NEW;
        END IF;
        SELECT * INTO a FROM grid_require_session();
        SELECT * INTO r FROM workflow_rule WHERE action = act;
        IF NOT FOUND OR NOT (a.role = ANY (r.roles)) THEN
            PERFORM grid_refuse(format('role %s may not %s', a.role, coalesce(act, '(none)')));
        END IF;
        IF NEW.updated_at IS DISTINCT FROM now() THEN
            NEW.updated_at := now();
        END IF;
        IF TG_OP = 'INSERT' THEN
            IF act <> 'report' OR NOT (NEW.status = ANY (r.to_statuses)) OR NEW.version <> 1
               OR NEW.escalation <> 0 OR NEW.rework_count <> 0 OR NEW.return_count <> 0
               OR NEW.department_id IS NOT NULL OR NEW.worker_id IS NOT NULL
               OR NEW.merged_into_id IS NOT NULL OR NEW.closed_at IS NOT NULL
               OR NEW.extension_pending_h IS NOT NULL OR NEW.extended_h <> 0
               OR NEW.evaluation IS NOT NULL THEN
                PERFORM grid_refuse('a new case starts as reported, version 1, unassigned');
            END IF;
            IF NEW.onsite <> (NEW.status = 'awaiting_verification') THEN
                PERFORM grid_refuse('only a case handled on the spot starts awaiting verification');
            END IF;
            IF NOT grid_near(NEW.reported_at, now()) OR NOT grid_near(NEW.stage_started_at, now())
               OR NOT grid_near(NEW.stage_due_at,
                    grid_stage_due(NEW.status, NEW.category_id, NEW.severity, now())) THEN
                PERFORM grid_refuse('times and deadlines are the database''s');
            END IF;
            IF NEW.onsite AND NOT (grid_near(NEW.filed_at, now()) AND grid_near(NEW.feedback_at, now())
               AND grid_near(NEW.close_due_at, grid_close_due(NEW.category_id, NEW.severity, now()))) THEN
                PERFORM grid_refuse('times and deadlines are the database''s');
            END IF;
            IF NOT NEW.onsite AND (NEW.filed_at IS NOT NULL OR NEW.feedback_at IS NOT NULL
               OR NEW.dispatched_at IS NOT NULL OR NEW.close_due_at IS NOT NULL) THEN
                PERFORM grid_refuse('a new case has no later stages yet');
            END IF;
            RETURN NEW;
        END IF;
        -- UPDATE: the declared action must be a legal step for this role and row.
        IF act = 'report' OR NOT (OLD.status = ANY (r.from_statuses)) THEN
            PERFORM grid_refuse(format('%s does not apply to a case that is %s', act, OLD.status));
        END IF;
        IF cardinality(r.to_statuses) = 0 THEN
            IF NEW.status <> OLD.status THEN
                PERFORM grid_refuse(format('%s does not change the status', act));
            END IF;
        ELSIF NOT (NEW.status = ANY (r.to_statuses)) THEN
            PERFORM grid_refuse(format('%s leads to %s, not %s', act,
                array_to_string(r.to_statuses, '/'), NEW.status));
        END IF;
        IF NEW.version <> OLD.version + 1 THEN
            PERFORM grid_refuse('the version rises by exactly one per action');
        END IF;
        IF r.own_department AND NOT EXISTS (
                SELECT 1 FROM case_assignment
                 WHERE case_id = OLD.id AND department_id = a.department_id) THEN
            PERFORM grid_refuse('the case is not assigned to this department');
        END IF;
        SELECT coalesce(array_agg(n.key), '{}') INTO changed
          FROM jsonb_each(to_jsonb(NEW)) n JOIN jsonb_each(to_jsonb(OLD)) o USING (key)
         WHERE n.value IS DISTINCT FROM o.value;
        allowed := r.columns || ARRAY['status', 'version', 'updated_at', 'stage_started_at',
                                      'stage_due_at'];
        FOREACH col IN ARRAY changed LOOP
            IF NOT (col = ANY (allowed)) THEN
                PERFORM grid_refuse(format('%s may not change %s', act, col));
            END IF;
        END LOOP;
        -- Values the database decides.
        IF 'stage_started_at' = ANY (changed) AND NOT grid_near(NEW.stage_started_at, now()) THEN
            PERFORM grid_refuse('a stage starts now');
        END IF;
        IF 'stage_due_at' = ANY (changed) THEN
            IF act = 'approve_extension' THEN
                IF NOT grid_near(NEW.stage_due_at, OLD.stage_due_at
                        + make_interval(secs => 3600 * OLD.extension_pending_h)) THEN
                    PERFORM grid_refuse('an extension adds the hours asked for');
                END IF;
            ELSIF NOT grid_near(NEW.stage_due_at,
                    grid_stage_due(NEW.status, NEW.category_id, NEW.severity, now())) THEN
                PERFORM grid_refuse('stage deadlines come from the time limits');
            END IF;
        END IF;
        IF 'close_due_at' = ANY (changed) THEN
            IF act = 'approve_extension' THEN
                IF NOT grid_near(NEW.close_due_at, OLD.close_due_at
                        + make_interval(secs => 3600 * OLD.extension_pending_h)) THEN
                    PERFORM grid_refuse('an extension adds the hours asked for');
                END IF;
            ELSIF NOT grid_near(NEW.close_due_at,
                    grid_close_due(NEW.category_id, NEW.severity, now())) THEN
                PERFORM grid_refuse('the close deadline comes from the time limits');
            END IF;
        END IF;
        FOREACH col IN ARRAY ARRAY['filed_at', 'dispatched_at', 'feedback_at', 'closed_at'] LOOP
            IF col = ANY (changed) THEN
                IF (to_jsonb(NEW) ->> col) IS NOT NULL
                   AND NOT grid_near((to_jsonb(NEW) ->> col)::timestamptz, now()) THEN
                    PERFORM grid_refuse(format('%s is the time of the action', col));
                END IF;
            END IF;
        END LOOP;
        IF 'return_count' = ANY (changed) AND NEW.return_count <> OLD.return_count + 1
           OR 'rework_count' = ANY (changed) AND NEW.rework_count <> OLD.rework_count + 1
           OR 'escalation' = ANY (changed) AND NOT (NEW.escalation > OLD.escalation)
           OR 'extended_h' = ANY (changed)
              AND NEW.extended_h IS DISTINCT FROM OLD.extended_h + OLD.extension_pending_h
           OR act = 'request_extension' AND NOT coalesce(NEW.extension_pending_h > 0, false)
           OR act = 'approve_extension' AND NEW.extension_pending_h IS NOT NULL THEN
            PERFORM grid_refuse(format('%s: values out of its rule', act));
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE FUNCTION grid_case_logged() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
    DECLARE
        logged text;
    BEGIN
        IF grid_is_owner() THEN
            RETURN NULL;
        END IF;
        SELECT action INTO logged FROM case_log
         WHERE case_id = NEW.id AND case_version = NEW.version;
        IF logged IS NULL THEN
            PERFORM grid_refuse(format('case %s changed without its log entry', NEW.number));
        END IF;
        -- Joint handling: the case waits for every department's feedback.
        IF logged = 'feedback' AND NEW.status = 'awaiting_verification' AND EXISTS (
                SELECT 1 FROM case_assignment WHERE case_id = NEW.id AND fed_back_at IS NULL) THEN
            PERFORM grid_refuse('a joint case waits for every department''s feedback');
        END IF;
        RETURN NULL;
    END $$
    """,
    # --- the log: identity, order, chain ------------------------------------------
    """
    CREATE FUNCTION grid_log_text(l case_log) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public AS $$
        SELECT concat_ws(E'\\x1f', l.seq::text, l.case_id::text, l.case_number, l.action,
            coalesce(l.from_status, E'\\\\N'), l.to_status, l.case_version::text,
            coalesce(l.actor_id::text, E'\\\\N'), l.actor_name, l.actor_role, l.workstation,
            (extract(epoch FROM l.at) * 1000000)::bigint::text, coalesce(l.reason, E'\\\\N'),
            l.payload::text, coalesce(l.client_addr, E'\\\\N'), coalesce(l.client_app, E'\\\\N'))
    $$
    """,
    f"""
    CREATE FUNCTION grid_log_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
    DECLARE
        a record;
        c record;
        prev bytea;
    BEGIN
        IF NOT grid_is_owner() THEN
            SELECT * INTO a FROM grid_require_session();
            IF NEW.action IS DISTINCT FROM current_setting('grid.action', true) THEN
                PERFORM grid_refuse('a log entry records the action declared');
            END IF;
            SELECT id, number, status, version INTO c FROM "case" WHERE id = NEW.case_id;
            IF NOT FOUND OR c.number <> NEW.case_number OR c.status <> NEW.to_status
               OR c.version <> NEW.case_version THEN
                PERFORM grid_refuse('a log entry records the case as the action left it');
            END IF;
            IF EXISTS (SELECT 1 FROM case_log
                        WHERE case_id = NEW.case_id AND case_version = NEW.case_version) THEN
                PERFORM grid_refuse('this version of the case is already logged');
            END IF;
            NEW.actor_id := a.user_id;
            NEW.actor_name := a.display_name;
            NEW.actor_role := a.role;
            NEW.at := now();
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
    # --- guards of the tables next to the case --------------------------------------
    """
    CREATE FUNCTION grid_action_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
    DECLARE
        act text := current_setting('grid.action', true);
    BEGIN
        IF grid_is_owner() THEN
            RETURN coalesce(NEW, OLD);
        END IF;
        PERFORM grid_require_session();
        IF act IS NULL OR NOT (act = ANY (TG_ARGV)) THEN
            PERFORM grid_refuse(format('%s of %s belongs to %s', TG_OP, TG_TABLE_NAME,
                array_to_string(TG_ARGV, '/')));
        END IF;
        RETURN coalesce(NEW, OLD);
    END $$
    """,
    # --- escalation of overdue cases, by the system identity --------------------------
    """
    CREATE FUNCTION grid_escalate_overdue() RETURNS SETOF text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        sys record;
        c record;
    BEGIN
        SELECT id, display_name INTO sys FROM app_user WHERE name = 'system';
        FOR c IN
            SELECT id, number, status, version, escalation,
                   CASE WHEN now() >= stage_due_at + (stage_due_at - stage_started_at) THEN 2
                        ELSE 1 END AS target
              FROM "case"
             WHERE status IN ('reported', 'accepted', 'filed', 'dispatched', 'in_progress',
                              'awaiting_verification')
               AND stage_due_at IS NOT NULL AND stage_due_at <= now()
               AND escalation < CASE WHEN now() >= stage_due_at + (stage_due_at - stage_started_at)
                                     THEN 2 ELSE 1 END
             ORDER BY stage_due_at
               FOR UPDATE SKIP LOCKED
        LOOP
            UPDATE "case" SET escalation = c.target, version = c.version + 1, updated_at = now()
             WHERE id = c.id;
            INSERT INTO case_log (case_id, case_number, action, from_status, to_status,
                case_version, actor_id, actor_name, actor_role, workstation, reason, payload)
            VALUES (c.id, c.number, 'auto_escalate', c.status, c.status, c.version + 1,
                sys.id, sys.display_name, 'system', 'system', '超时自动督办 / overdue',
                jsonb_build_object('level', c.target, 'previous', c.escalation));
            RETURN NEXT c.number;
        END LOOP;
    END $$
    """,
    # Partitions and retention belong to the owner; the gateway asks for them.
    """
    CREATE OR REPLACE FUNCTION ensure_position_partition(d date) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        part text := 'positions_' || to_char(d, 'YYYYMMDD');
    BEGIN
        IF to_regclass('public.' || part) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE public.%I PARTITION OF public.positions FOR VALUES FROM (%L) TO (%L)',
                part, d::timestamptz, (d + 1)::timestamptz);
        END IF;
        RETURN part;
    END $$
    """,
    """
    CREATE FUNCTION grid_drop_positions_before(cutoff date) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        part record;
        dropped integer := 0;
    BEGIN
        IF cutoff > current_date - 1 THEN
            RAISE EXCEPTION 'positions of the last day are always kept'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        FOR part IN
            SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'positions'::regclass AND c.relname ~ '^positions_[0-9]{8}$'
               AND to_date(substr(c.relname, 11), 'YYYYMMDD') < cutoff
        LOOP
            EXECUTE format('DROP TABLE public.%I', part.relname);
            dropped := dropped + 1;
        END LOOP;
        DELETE FROM positions_default WHERE ts < cutoff::timestamptz;
        RETURN dropped;
    END $$
    """,
]

TRIGGERS_SQL = [
    """
    CREATE TRIGGER case_guard BEFORE INSERT OR UPDATE ON "case"
        FOR EACH ROW EXECUTE FUNCTION grid_case_guard()
    """,
    """
    CREATE CONSTRAINT TRIGGER case_logged AFTER INSERT OR UPDATE ON "case"
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION grid_case_logged()
    """,
    """
    CREATE TRIGGER case_log_guard BEFORE INSERT ON case_log
        FOR EACH ROW EXECUTE FUNCTION grid_log_guard()
    """,
    """
    CREATE TRIGGER case_assignment_guard BEFORE INSERT OR UPDATE OR DELETE ON case_assignment
        FOR EACH ROW EXECUTE FUNCTION grid_action_guard(
            'dispatch', 'reassign', 'acknowledge', 'return', 'feedback', 'verify_fail')
    """,
    """
    CREATE TRIGGER attachment_guard BEFORE INSERT OR UPDATE OR DELETE ON attachment
        FOR EACH ROW EXECUTE FUNCTION grid_action_guard('report', 'feedback')
    """,
    """
    CREATE TRIGGER case_counter_guard BEFORE INSERT OR UPDATE OR DELETE ON case_counter
        FOR EACH ROW EXECUTE FUNCTION grid_action_guard('report')
    """,
]
OWNERSHIP_SQL = """
DO $$
DECLARE
    obj record;
BEGIN
    FOR obj IN SELECT c.relname, c.relkind FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
                 AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                  WHERE d.objid = c.oid AND d.deptype = 'a'
                                    AND c.relkind = 'S')
    LOOP
        EXECUTE format('ALTER TABLE %I OWNER TO grid_owner', obj.relname);
    END LOOP;
    FOR obj IN SELECT p.oid::regprocedure AS sig FROM pg_proc p
                JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = 'public'
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO grid_owner', obj.sig);
    END LOOP;
END $$
"""

GRANTS_SQL = [
    "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    "GRANT USAGE, CREATE ON SCHEMA public TO grid_owner",
    "GRANT USAGE ON SCHEMA public TO grid_console, grid_wall, grid_gateway",
    "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC",
    "REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC",
    # Readers: everything but the secrets.
    """
    DO $$
    DECLARE
        t record;
    BEGIN
        FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v')
                    AND c.relname NOT IN ('app_user', 'grid_session', 'device')
                    AND NOT c.relispartition
        LOOP
            EXECUTE format('GRANT SELECT ON %I TO grid_console, grid_wall', t.relname);
        END LOOP;
    END $$
    """,
    "GRANT SELECT (id, name, display_name, role, department_id, active, failed_logins, "
    "locked_until, created_at) ON app_user TO grid_console, grid_wall",
    """
    DO $$
    BEGIN
        EXECUTE (SELECT format('GRANT SELECT (%s) ON device TO grid_console, grid_wall',
                               string_agg(quote_ident(attname), ', '))
                   FROM pg_attribute WHERE attrelid = 'device'::regclass AND attnum > 0
                    AND NOT attisdropped AND attname <> 'key_hash');
    END $$
    """,
    # Console writes: each through its guard.
    'GRANT INSERT, UPDATE ON "case" TO grid_console',
    "GRANT INSERT ON case_log TO grid_console",
    "GRANT INSERT, UPDATE, DELETE ON case_assignment TO grid_console",
    "GRANT INSERT ON attachment TO grid_console",
    "GRANT INSERT, UPDATE ON case_counter TO grid_console",
    "GRANT INSERT, UPDATE, DELETE ON presence, saved_layout, saved_filter TO grid_console",
    "GRANT INSERT ON audit_check TO grid_console",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO grid_console",
    # Functions the roles may call.
    "GRANT EXECUTE ON FUNCTION grid_login(text, text, text), grid_logout(text), "
    "grid_user_add(text, text, text, text, text), grid_user_passwd(text, text), "
    "grid_user_set_active(text, boolean), grid_escalate_overdue(), grid_session_user_id(), "
    "grid_device_key(text, text, boolean) TO grid_console",
    "GRANT EXECUTE ON FUNCTION grid_login(text, text, text), grid_logout(text) TO grid_wall",
    # What the checks call in the acting role's name (they reveal nothing but the
    # caller's own session).
    "GRANT EXECUTE ON FUNCTION grid_is_owner(), grid_refuse(text), "
    "grid_near(timestamptz, timestamptz), grid_stage_due(text, integer, text, timestamptz), "
    "grid_close_due(integer, text, timestamptz), grid_log_text(case_log), "
    "grid_require_session(), grid_session_actor(), grid_session_user_id() "
    "TO grid_console, grid_wall, grid_gateway",
    # The gateway: positions and device state, nothing else.
    "GRANT SELECT ON district, street, community, grid, unit_cell, worker, latest_position, "
    "worker_event TO grid_gateway",
    # It reads the key hashes to check terminals, and registers new terminals by
    # identifier; it can change no key (grid_device_key is an administrator's).
    "GRANT SELECT ON device TO grid_gateway",
    "GRANT INSERT (identifier, kind) ON device TO grid_gateway",
    "GRANT SELECT, INSERT ON positions, positions_default TO grid_gateway",
    "GRANT INSERT, UPDATE ON latest_position TO grid_gateway",
    "GRANT INSERT ON worker_event TO grid_gateway",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO grid_gateway",
    "GRANT EXECUTE ON FUNCTION ensure_position_partition(date), "
    "grid_drop_positions_before(date) TO grid_gateway",
    "GRANT SELECT ON alembic_version TO grid_console, grid_wall, grid_gateway",
    # Per-user rows: each console writes only its user's.
    "ALTER TABLE presence ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE saved_layout ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE saved_filter ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY presence_read ON presence FOR SELECT USING (true)",
    "CREATE POLICY presence_own ON presence FOR ALL TO grid_console "
    "USING (user_id = grid_session_user_id()) WITH CHECK (user_id = grid_session_user_id())",
    "CREATE POLICY layout_own ON saved_layout FOR ALL TO grid_console "
    "USING (user_id = grid_session_user_id()) WITH CHECK (user_id = grid_session_user_id())",
    "CREATE POLICY layout_read ON saved_layout FOR SELECT TO grid_wall USING (true)",
    "CREATE POLICY filter_own ON saved_filter FOR ALL TO grid_console "
    "USING (user_id = grid_session_user_id()) WITH CHECK (user_id = grid_session_user_id())",
]

# What a console sends is not shown to other consoles of the same role
# (pg_stat_activity shows a role its own sessions' statements, and a login's
# statement carries its password), nor written to the server log on an error.
# Both settings are the superuser's: on a server where ``db upgrade`` is not run
# by one, the README says to set them.
ACTIVITY_SQL = """
DO $$
BEGIN
    ALTER ROLE grid_console SET track_activities = off;
    ALTER ROLE grid_wall SET track_activities = off;
    ALTER ROLE grid_console SET log_min_error_statement = panic;
    ALTER ROLE grid_wall SET log_min_error_statement = panic;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'not a superuser: set track_activities = off and '
        'log_min_error_statement = panic for grid_console and grid_wall by hand';
END $$
"""

# Existing history gets its chain, oldest first (the append-only guard steps aside
# for the migration only: the owner may do that, and that is why the chain exists).
CHAIN_EXISTING_SQL = [
    "ALTER TABLE case_log DISABLE TRIGGER case_log_no_update",
    """
    DO $$
    DECLARE
        l case_log;
        prev bytea := '\\x'::bytea;
    BEGIN
        FOR l IN SELECT * FROM case_log ORDER BY seq LOOP
            l.prev_hash := prev;
            l.hash := sha256(prev || convert_to(grid_log_text(l), 'UTF8'));
            UPDATE case_log SET prev_hash = l.prev_hash, hash = l.hash WHERE seq = l.seq;
            prev := l.hash;
        END LOOP;
    END $$
    """,
    "ALTER TABLE case_log ENABLE ALWAYS TRIGGER case_log_no_update",
]


def upgrade() -> None:
    op.execute(ROLES_SQL)
    for statement in SCHEMA_SQL:
        op.execute(statement)
    for statement in _rules_sql():
        op.execute(statement)
    for statement in FUNCTIONS_SQL:
        op.execute(statement)
    for statement in CHAIN_EXISTING_SQL:
        op.execute(statement)
    for statement in TRIGGERS_SQL:
        op.execute(statement)
    op.execute("ALTER TABLE case_log ENABLE ALWAYS TRIGGER case_log_guard")
    op.execute('ALTER TABLE "case" ENABLE ALWAYS TRIGGER case_guard')
    op.execute(OWNERSHIP_SQL)
    for statement in GRANTS_SQL:
        op.execute(statement)
    op.execute(ACTIVITY_SQL)


def downgrade() -> None:
    raise NotImplementedError("0005 (trust) is not reversible: restore from a backup instead")
