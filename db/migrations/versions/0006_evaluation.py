"""Evaluation from the case log: per-case facts, imported history, the shift handover.

Nothing here is typed in (docs/DOMAIN.md §2 "Evaluation"): the metrics are computed from
the case log.  Three parts:

* **Deadlines in force, recorded.**  The log trigger now copies the stage and close
  deadlines the database set on the case row (checked by ``grid_case_guard`` against the
  time limits) into every entry a console writes (``payload.stage_due`` / ``close_due``),
  and the automatic escalation does the same; the deadline in force when a step came is
  the one recorded by the entry before it.  Entries without (history written before this
  revision, the owner's bulk loads) fall back to the time limits and the log's own times,
  and imported history to the deadlines its file gave (``case_import``).  So a later
  change of a time limit never rewrites a past period's figures.
* **Per-case facts** (``case_fact``): one row per case with the times and deadlines the
  metrics need, folded from the case's whole log by ``grid_fact_compute``;
  ``grid_metrics_refresh()`` (any console, no arguments) folds the cases whose log grew
  since the last fold, under a lock, so every report reads one compact table.  The close
  deadline's history is kept only for the cases an extension moved
  (``case_fact_close_due``).
* **The shift handover** (``shift_handover``, and ``handover_log``, hash-chained like the
  case log): written only by ``grid_handover_submit`` / ``grid_handover_ack``, which need a
  duty leader's session.

Also: ``case.imported`` (history loaded from a legacy system, by the owner only) and
``case.reporter_worker_id`` (the grid worker who reported it, for the ranking by worker).

Revision ID: 0006
Revises: 0005
Created: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

LOG_ORDER_LOCK = 0x6C6F67  # as in 0005 and db.case_actions
METRICS_LOCK = 0x6B7069  # "kpi": one fold at a time
HANDOVER_LOCK = 0x686F76  # "hov": handover log order
# Past this many new log entries a fold recomputes every case in one pass.
FULL_FOLD_ENTRIES = 200_000

TS = sa.DateTime(timezone=True)


def _tables() -> None:
    op.add_column(
        "case", sa.Column("imported", sa.Boolean(), server_default=sa.text("false"), nullable=False)
    )
    op.add_column("case", sa.Column("reporter_worker_id", sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f("fk_case_reporter_worker_id_worker"), "case", "worker",
        ["reporter_worker_id"], ["id"], ondelete="SET NULL",
    )
    op.create_table(
        "case_import",
        sa.Column("case_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("source_file", sa.Text(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("imported_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("imported_by", sa.Text(), server_default=sa.text("SESSION_USER"),
                  nullable=False),
        sa.Column("due_file", TS, nullable=True),
        sa.Column("due_dispatch", TS, nullable=True),
        sa.Column("due_handle", TS, nullable=True),
        sa.Column("due_close", TS, nullable=True),
        sa.Column("record", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"], name=op.f("fk_case_import_case_id_case"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_case_import")),
    )
    fact_times = [
        "reported_at", "filed_at", "file_due", "dispatched_at", "dispatch_due", "fed_back_at",
        "handle_due", "closed_at", "close_due", "close_base", "close_changed_at", "ended_at",
        "returned_at", "reworked_at", "lead_at",
    ]
    op.create_table(
        "case_fact",
        sa.Column("case_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("grid_id", sa.Integer(), nullable=True),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        sa.Column("imported", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        *[sa.Column(name, TS, nullable=name != "reported_at") for name in fact_times],
        sa.Column("lead_department_id", sa.Integer(), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"], name=op.f("fk_case_fact_case_id_case"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_case_fact")),
    )
    op.create_index("ix_case_fact_close_changed_at", "case_fact", ["close_changed_at"],
                    unique=False, postgresql_where=sa.text("close_changed_at IS NOT NULL"))
    op.create_table(
        "case_fact_close_due",
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("from_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"],
                                name=op.f("fk_case_fact_close_due_case_id_case"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("case_id", "seq", name=op.f("pk_case_fact_close_due")),
    )
    op.create_table(
        "shift_handover",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("shift_start", TS, nullable=False),
        sa.Column("shift_end", TS, nullable=False),
        sa.Column("summary", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("notes", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("outgoing_id", sa.Integer(), nullable=False),
        sa.Column("outgoing_name", sa.Text(), nullable=False),
        sa.Column("submitted_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("incoming_id", sa.Integer(), nullable=True),
        sa.Column("incoming_name", sa.Text(), nullable=True),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.Column("ack_note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["outgoing_id"], ["app_user.id"],
                                name=op.f("fk_shift_handover_outgoing_id_app_user")),
        sa.ForeignKeyConstraint(["incoming_id"], ["app_user.id"],
                                name=op.f("fk_shift_handover_incoming_id_app_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shift_handover")),
    )
    op.create_table(
        "handover_log",
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("handover_id", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_name", sa.Text(), nullable=False),
        sa.Column("actor_role", sa.Text(), nullable=False),
        sa.Column("workstation", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()),
                  server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("action IN ('handover','acknowledge')",
                           name=op.f("ck_handover_log_action")),
        sa.ForeignKeyConstraint(["handover_id"], ["shift_handover.id"],
                                name=op.f("fk_handover_log_handover_id_shift_handover")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_handover_log")),
    )


# --- the log records the deadlines the database set (console path) -----------------
LOG_GUARD_SQL = f"""
CREATE OR REPLACE FUNCTION grid_log_guard() RETURNS trigger
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
"""

ESCALATE_SQL = """
CREATE OR REPLACE FUNCTION grid_escalate_overdue() RETURNS SETOF text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    sys record;
    c record;
BEGIN
    SELECT id, display_name INTO sys FROM app_user WHERE name = 'system';
    FOR c IN
        SELECT id, number, status, version, escalation, stage_due_at, close_due_at,
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
            jsonb_build_object('level', c.target, 'previous', c.escalation,
                               'stage_due', c.stage_due_at, 'close_due', c.close_due_at));
        RETURN NEXT c.number;
    END LOOP;
END $$
"""

# Imported history and the reporting worker are the owner's to write: a console's new
# case is never marked imported (the 0005 guard already refuses changing either later).
ORIGIN_GUARD_SQL = [
    """
    CREATE FUNCTION grid_case_origin_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
    BEGIN
        IF NOT grid_is_owner() AND NEW.imported THEN
            PERFORM grid_refuse('only the owner imports history');
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER case_origin_guard BEFORE INSERT ON "case"
        FOR EACH ROW EXECUTE FUNCTION grid_case_origin_guard()
    """,
    'ALTER TABLE "case" ENABLE ALWAYS TRIGGER case_origin_guard',
]

# --- the fold: a case's whole log → its facts ---------------------------------------
# ``%s`` is where the log rows come from: every case, or the cases in $1.
FACT_QUERY = """
WITH base AS (
    SELECT l.case_id, l.seq, l.at, l.action, l.to_status, l.payload,
           CASE WHEN l.action = 'approve_extension'
                     AND coalesce(l.payload->>'approved', 'true') <> 'false'
                THEN coalesce((l.payload->>'hours')::float8, 0) ELSE 0 END AS ext_h
      FROM %s
), w1 AS (
    SELECT b.*,
           sum(b.ext_h) OVER w AS ext_cum,
           lag(b.payload->>'stage_due') OVER w AS prev_due,
           lag(b.payload->>'close_due') OVER w AS prev_close,
           max(b.at) FILTER (WHERE b.action IN ('dispatch', 'reassign')) OVER w AS hstart_at
      FROM base b
    WINDOW w AS (PARTITION BY b.case_id ORDER BY b.seq)
), w2 AS (
    SELECT w1.*,
           max(w1.ext_cum) FILTER (WHERE w1.action IN ('dispatch', 'reassign'))
               OVER (PARTITION BY w1.case_id ORDER BY w1.seq) AS ext_at_hstart,
           (w1.action = 'feedback' AND w1.to_status = 'awaiting_verification') AS is_fb,
           w1.action IN ('verify_pass', 'close') AS is_close
      FROM w1
), k AS (
    SELECT case_id,
           min(at) FILTER (WHERE action = 'report') AS rep_at,
           coalesce(bool_or(action = 'report' AND to_status = 'awaiting_verification'), false)
               AS onsite,
           min(payload->>'category') FILTER (WHERE action = 'report') AS rep_cat,
           min(payload->>'severity') FILTER (WHERE action = 'report') AS rep_sev,
           min(payload->>'close_due') FILTER (WHERE action = 'report') AS rep_close_rec,
           min(at) FILTER (WHERE action = 'accept') AS acc_at,
           min(at) FILTER (WHERE action = 'file') AS file_at,
           (array_agg(prev_due ORDER BY seq) FILTER (WHERE action = 'file'))[1] AS file_rec,
           (array_agg(payload->>'close_due' ORDER BY seq) FILTER (WHERE action = 'file'))[1]
               AS file_close_rec,
           min(at) FILTER (WHERE action = 'dispatch') AS disp_at,
           (array_agg(prev_due ORDER BY seq) FILTER (WHERE action = 'dispatch'))[1] AS disp_rec,
           min(at) FILTER (WHERE is_fb) AS fb_at,
           (array_agg(prev_due ORDER BY seq) FILTER (WHERE is_fb))[1] AS fb_rec,
           (array_agg(hstart_at ORDER BY seq) FILTER (WHERE is_fb))[1] AS fb_hstart,
           (array_agg(ext_cum - coalesce(ext_at_hstart, 0) ORDER BY seq)
               FILTER (WHERE is_fb))[1] AS fb_ext,
           min(at) FILTER (WHERE is_close) AS close_at,
           (array_agg(prev_close ORDER BY seq) FILTER (WHERE is_close))[1] AS close_rec,
           (array_agg(ext_cum ORDER BY seq) FILTER (WHERE is_close))[1] AS close_ext,
           min(at) FILTER (WHERE action IN ('verify_pass', 'close', 'reject', 'merge'))
               AS ended_at,
           min(at) FILTER (WHERE action = 'return') AS ret_at,
           min(at) FILTER (WHERE action = 'verify_fail') AS rew_at,
           (array_agg((payload->>'department_id')::integer ORDER BY seq)
               FILTER (WHERE action IN ('dispatch', 'reassign'))) AS leads,
           max(at) FILTER (WHERE action IN ('dispatch', 'reassign')) AS lead_at,
           max(at) FILTER (WHERE ext_h > 0) AS ext_last_at,
           sum(ext_h) AS ext_total,
           (array_agg(payload->>'close_due' ORDER BY seq)
               FILTER (WHERE payload->>'close_due' IS NOT NULL)) AS close_recs,
           max(seq) AS last_seq
      FROM w2
     GROUP BY case_id
), f AS (
    SELECT k.*, c.grid_id, c.reporter_worker_id, c.imported,
           i.due_file, i.due_dispatch, i.due_handle, i.due_close,
           t0.file_h AS t0_file_h, t1.dispatch_h, t1.handle_h, t1.close_h
      FROM k
      JOIN "case" c ON c.id = k.case_id
      LEFT JOIN case_import i ON i.case_id = k.case_id
      LEFT JOIN category c0 ON c0.code = k.rep_cat
      LEFT JOIN time_limit t0 ON t0.category_id = coalesce(c0.id, c.category_id)
                             AND t0.severity = coalesce(k.rep_sev, c.severity)
      LEFT JOIN time_limit t1 ON t1.category_id = c.category_id AND t1.severity = c.severity
), g AS (
    SELECT f.*,
           CASE WHEN f.onsite THEN f.rep_at ELSE f.file_at END AS filed,
           coalesce(f.due_close,
               CASE WHEN f.onsite
                    THEN coalesce(f.rep_close_rec::timestamptz,
                                  f.rep_at + make_interval(secs => 3600 * f.close_h))
                    ELSE coalesce(f.file_close_rec::timestamptz,
                                  f.file_at + make_interval(secs => 3600 * f.close_h)) END)
               AS base_close
      FROM f
)
INSERT INTO case_fact AS cf (
    case_id, grid_id, worker_id, imported, reported_at, filed_at, file_due, dispatched_at,
    dispatch_due, fed_back_at, handle_due, closed_at, close_due, close_base, close_changed_at,
    ended_at, returned_at, reworked_at, lead_department_id, lead_at, last_seq)
SELECT g.case_id, g.grid_id, g.reporter_worker_id, g.imported, g.rep_at, g.filed,
       CASE WHEN g.onsite THEN g.rep_at
            ELSE coalesce(g.due_file, g.file_rec::timestamptz,
                          g.acc_at + make_interval(secs => 3600 * g.t0_file_h)) END,
       g.disp_at,
       coalesce(g.due_dispatch, g.disp_rec::timestamptz,
                g.file_at + make_interval(secs => 3600 * g.dispatch_h)),
       CASE WHEN g.onsite THEN g.rep_at ELSE g.fb_at END,
       CASE WHEN g.onsite THEN g.rep_at
            WHEN g.fb_at IS NULL THEN NULL
            ELSE coalesce(g.due_handle, g.fb_rec::timestamptz,
                          g.fb_hstart + make_interval(secs => 3600 * (g.handle_h + g.fb_ext))) END,
       g.close_at,
       CASE WHEN g.filed IS NULL THEN NULL
            WHEN g.due_close IS NOT NULL THEN g.due_close
            WHEN g.close_at IS NOT NULL
            THEN coalesce(g.close_rec::timestamptz,
                          g.base_close + make_interval(secs => 3600 * g.close_ext))
            ELSE coalesce(g.close_recs[cardinality(g.close_recs)]::timestamptz,
                          g.base_close + make_interval(secs => 3600 * g.ext_total)) END,
       g.base_close,
       CASE WHEN g.due_close IS NULL AND g.filed IS NOT NULL THEN g.ext_last_at END,
       g.ended_at, g.ret_at, g.rew_at,
       g.leads[cardinality(g.leads)], g.lead_at, g.last_seq
  FROM g
ON CONFLICT (case_id) DO UPDATE SET
    grid_id = EXCLUDED.grid_id, worker_id = EXCLUDED.worker_id, imported = EXCLUDED.imported,
    reported_at = EXCLUDED.reported_at, filed_at = EXCLUDED.filed_at,
    file_due = EXCLUDED.file_due, dispatched_at = EXCLUDED.dispatched_at,
    dispatch_due = EXCLUDED.dispatch_due, fed_back_at = EXCLUDED.fed_back_at,
    handle_due = EXCLUDED.handle_due, closed_at = EXCLUDED.closed_at,
    close_due = EXCLUDED.close_due, close_base = EXCLUDED.close_base,
    close_changed_at = EXCLUDED.close_changed_at, ended_at = EXCLUDED.ended_at,
    returned_at = EXCLUDED.returned_at, reworked_at = EXCLUDED.reworked_at,
    lead_department_id = EXCLUDED.lead_department_id, lead_at = EXCLUDED.lead_at,
    last_seq = EXCLUDED.last_seq
"""

# The close deadline's history, for the cases an extension moved: the deadline set at
# filing (seq 0), then the one each approved extension left.
CLOSE_HISTORY_QUERY = """
INSERT INTO case_fact_close_due (case_id, seq, from_at, due_at)
SELECT f.case_id, 0, f.filed_at, f.close_base
  FROM case_fact f
 WHERE f.close_changed_at IS NOT NULL AND f.close_base IS NOT NULL %(only_f)s
UNION ALL
SELECT l.case_id, l.seq, l.at,
       coalesce((l.payload->>'close_due')::timestamptz,
                f.close_base + make_interval(secs => 3600 * sum(coalesce((l.payload->>'hours')::float8, 0))
                    OVER (PARTITION BY l.case_id ORDER BY l.seq)))
  FROM case_log l JOIN case_fact f ON f.case_id = l.case_id
 WHERE f.close_changed_at IS NOT NULL AND f.close_base IS NOT NULL
   AND l.action = 'approve_extension' AND coalesce(l.payload->>'approved', 'true') <> 'false'
   AND l.at >= f.filed_at %(only_l)s
"""

FOLD_SQL = [
    f"""
    CREATE FUNCTION grid_fact_compute(p_ids bigint[]) RETURNS integer
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, public AS $fn$
    DECLARE
        n integer;
        q text := $q${FACT_QUERY}$q$;
        h text := $q${CLOSE_HISTORY_QUERY}$q$;
    BEGIN
        IF p_ids IS NULL THEN
            EXECUTE format(q, 'case_log l');
            GET DIAGNOSTICS n = ROW_COUNT;
            DELETE FROM case_fact_close_due;
            EXECUTE replace(replace(h, '%(only_f)s', ''), '%(only_l)s', '');
        ELSE
            EXECUTE format(q, 'unnest($1) AS x(id) JOIN case_log l ON l.case_id = x.id')
              USING p_ids;
            GET DIAGNOSTICS n = ROW_COUNT;
            DELETE FROM case_fact_close_due WHERE case_id = ANY (p_ids);
            EXECUTE replace(replace(h, '%(only_f)s', 'AND f.case_id = ANY ($1)'),
                            '%(only_l)s', 'AND l.case_id = ANY ($1)') USING p_ids;
        END IF;
        RETURN n;
    END $fn$
    """,
    f"""
    CREATE FUNCTION grid_metrics_refresh() RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        w bigint;
        m bigint;
        ids bigint[];
        n integer := 0;
    BEGIN
        PERFORM pg_advisory_xact_lock({METRICS_LOCK});
        SELECT value::bigint INTO w FROM grid_meta WHERE key = 'metrics_seq';
        w := coalesce(w, 0);
        SELECT max(seq) INTO m FROM case_log;
        IF m IS NULL OR m <= w THEN
            RETURN 0;
        END IF;
        IF m - w > {FULL_FOLD_ENTRIES} THEN
            n := grid_fact_compute(NULL);
        ELSE
            SELECT array_agg(DISTINCT case_id) INTO ids FROM case_log WHERE seq > w AND seq <= m;
            n := grid_fact_compute(ids);
        END IF;
        INSERT INTO grid_meta (key, value, updated_at) VALUES ('metrics_seq', m::text, now())
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
        RETURN n;
    END $$
    """,
]

# --- the shift handover ---------------------------------------------------------------
HANDOVER_SQL = [
    """
    CREATE FUNCTION grid_handover_text(l handover_log) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public AS $$
        SELECT concat_ws(E'\\x1f', l.seq::text, l.handover_id::text, l.action,
            coalesce(l.actor_id::text, E'\\\\N'), l.actor_name, l.actor_role, l.workstation,
            (extract(epoch FROM l.at) * 1000000)::bigint::text, coalesce(l.notes, E'\\\\N'),
            l.payload::text)
    $$
    """,
    f"""
    CREATE FUNCTION grid_handover_append(p_id bigint, p_action text, p_actor_id integer,
                                         p_actor_name text, p_actor_role text,
                                         p_workstation text, p_notes text, p_payload jsonb)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, public AS $$
    DECLARE
        l handover_log;
        prev bytea;
    BEGIN
        PERFORM pg_advisory_xact_lock({HANDOVER_LOCK});
        l.seq := nextval(pg_get_serial_sequence('handover_log', 'seq'));
        l.handover_id := p_id;
        l.action := p_action;
        l.actor_id := p_actor_id;
        l.actor_name := p_actor_name;
        l.actor_role := p_actor_role;
        l.workstation := left(coalesce(p_workstation, ''), 100);
        l.at := now();
        l.notes := p_notes;
        l.payload := coalesce(p_payload, '{{}}'::jsonb);
        SELECT hash INTO prev FROM handover_log ORDER BY seq DESC LIMIT 1;
        l.prev_hash := coalesce(prev, '\\x'::bytea);
        l.hash := sha256(l.prev_hash || convert_to(grid_handover_text(l), 'UTF8'));
        INSERT INTO handover_log SELECT l.*;
        RETURN l.seq;
    END $$
    """,
    """
    CREATE FUNCTION grid_handover_submit(p_start timestamptz, p_end timestamptz, p_notes text,
                                         p_summary jsonb, p_workstation text) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        a record;
        hid bigint;
    BEGIN
        SELECT * INTO a FROM grid_require_session();
        IF a.role <> 'leader' THEN
            PERFORM grid_refuse('only a duty leader hands a shift over');
        END IF;
        IF p_start IS NULL OR p_end IS NULL OR p_end <= p_start
           OR p_end - p_start > interval '48 hours' OR p_end > now() + interval '1 hour' THEN
            PERFORM grid_refuse('a shift is a span of at most 48 hours that has ended');
        END IF;
        IF length(coalesce(p_notes, '')) > 4000 THEN
            PERFORM grid_refuse('handover notes are at most 4000 characters');
        END IF;
        INSERT INTO shift_handover (shift_start, shift_end, summary, notes, outgoing_id,
                                    outgoing_name)
        VALUES (p_start, p_end, coalesce(p_summary, '{}'::jsonb), coalesce(p_notes, ''),
                a.user_id, a.display_name)
        RETURNING id INTO hid;
        PERFORM grid_handover_append(hid, 'handover', a.user_id, a.display_name, a.role,
            p_workstation, p_notes,
            jsonb_build_object('shift_start', p_start, 'shift_end', p_end,
                               'counts', coalesce(p_summary->'counts', '{}'::jsonb)));
        RETURN hid;
    END $$
    """,
    """
    CREATE FUNCTION grid_handover_ack(p_id bigint, p_note text, p_workstation text)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        a record;
        h record;
    BEGIN
        SELECT * INTO a FROM grid_require_session();
        IF a.role <> 'leader' THEN
            PERFORM grid_refuse('only a duty leader takes a shift over');
        END IF;
        SELECT * INTO h FROM shift_handover WHERE id = p_id FOR UPDATE;
        IF NOT FOUND THEN
            PERFORM grid_refuse('no such handover');
        END IF;
        IF h.acknowledged_at IS NOT NULL THEN
            PERFORM grid_refuse('this handover is already acknowledged');
        END IF;
        IF h.outgoing_id = a.user_id THEN
            PERFORM grid_refuse('the incoming leader is not the one who handed over');
        END IF;
        IF length(coalesce(p_note, '')) > 4000 THEN
            PERFORM grid_refuse('handover notes are at most 4000 characters');
        END IF;
        UPDATE shift_handover SET incoming_id = a.user_id, incoming_name = a.display_name,
               acknowledged_at = now(), ack_note = p_note
         WHERE id = p_id;
        PERFORM grid_handover_append(p_id, 'acknowledge', a.user_id, a.display_name, a.role,
            p_workstation, p_note,
            jsonb_build_object('shift_end', h.shift_end));
    END $$
    """,
]

# The handover log is append-only, for everyone (the owner could switch this off, which
# is why it is hash-chained too).
FROZEN_SQL = [
    """
    CREATE FUNCTION grid_handover_log_frozen() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the handover log is append-only' USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    """
    CREATE TRIGGER handover_log_frozen BEFORE UPDATE OR DELETE ON handover_log
        FOR EACH ROW EXECUTE FUNCTION grid_handover_log_frozen()
    """,
    """
    CREATE TRIGGER handover_log_no_truncate BEFORE TRUNCATE ON handover_log
        FOR EACH STATEMENT EXECUTE FUNCTION grid_handover_log_frozen()
    """,
    "ALTER TABLE handover_log ENABLE ALWAYS TRIGGER handover_log_frozen",
    "ALTER TABLE handover_log ENABLE ALWAYS TRIGGER handover_log_no_truncate",
]

GRANTS_SQL = [
    "GRANT SELECT ON case_import, case_fact, case_fact_close_due, shift_handover, handover_log "
    "TO grid_console, grid_wall",
    "GRANT EXECUTE ON FUNCTION grid_metrics_refresh() TO grid_console, grid_wall",
    "GRANT EXECUTE ON FUNCTION grid_handover_submit(timestamptz, timestamptz, text, jsonb, text), "
    "grid_handover_ack(bigint, text, text) TO grid_console",
    "GRANT EXECUTE ON FUNCTION grid_handover_text(handover_log) TO grid_console, grid_wall",
    "REVOKE EXECUTE ON FUNCTION grid_fact_compute(bigint[]) FROM PUBLIC",
    "REVOKE EXECUTE ON FUNCTION grid_handover_append(bigint, text, integer, text, text, text, "
    "text, jsonb) "
    "FROM PUBLIC",
    "REVOKE EXECUTE ON FUNCTION grid_case_origin_guard() FROM PUBLIC",
]


def upgrade() -> None:
    _tables()
    op.execute(LOG_GUARD_SQL)
    op.execute(ESCALATE_SQL)
    for statement in ORIGIN_GUARD_SQL + FOLD_SQL + HANDOVER_SQL + FROZEN_SQL + GRANTS_SQL:
        op.execute(statement)
    # Existing history gets its facts now, so the first report is quick.
    op.execute("SELECT grid_metrics_refresh()")


def downgrade() -> None:
    raise NotImplementedError("0006 (evaluation) is not reversible: restore from a backup instead")
