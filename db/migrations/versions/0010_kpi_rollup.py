"""The evaluation's daily rollup: a year's report sums 365 days, not a million cases.

Every metric of docs/DOMAIN.md §2 "Evaluation" is a count of cases whose step came in
the period, or (应结案数 and 返工率) of cases whose "due" interval meets it, so it splits
into per-day counts except for a few cases on the period's edges.  Two tables, written
only by the statement triggers on ``case_fact`` (so by every fold, incremental or whole,
and by a case's deletion), never by a console:

* ``kpi_case``: per case what the report needs beside the rollup: its groups (grid, the
  department of its latest dispatch, the reporting worker), its handling hours (for the
  exact medians), its "due" interval ``backlog`` = (lo, hi] with lo = max(filed,
  min(closed, close deadline)) and hi = closed (open: no end), so that the cases due and
  still unclosed at an instant are one GiST lookup, and ``xwin``, the instants at which
  its figures differ from what the rollup counts (before its latest dispatch a case was
  with another department or none; before an extension its close deadline was another;
  before a return it was not yet misrouted): the report recomputes exactly these few
  cases at the period's end from ``case_fact`` and replaces the rollup's share of them.
  A case whose steps are out of their usual order (closed before filed; reworked,
  dispatched or reassigned after closing; a department without a dispatch) is never in
  the rollup: ``xwin`` is every instant.  Indexes by group and handling hours give the
  exact medians by walking to the middle of a group instead of sorting it.
* ``kpi_day``: per hall-local day (the zone in ``grid_meta.kpi_tz``) and grid, department
  (with the day of the first dispatch: before it the case has no department) or worker,
  the counts of the steps that came that day and of the due intervals that began (lo,
  lor: with a failed verification) or ended (hi, hir) on it.

The report (``db.metrics``) then reads, for P = [t0, t1): the days of P in ``kpi_day``,
the cases due at t0 in ``kpi_case.backlog``, the cases of ``xwin`` at t1, and for a
period still running the open cases whose deadline falls later today.  A zone other than
``kpi_tz`` makes the report take the direct path over ``case_fact``;
``grid_kpi_rebuild(zone)`` (the owner's) rebuilds the rollup in another zone.

Revision ID: 0010
Revises: 0009
Created: 2026-12-09
"""

from __future__ import annotations

import os

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

METRICS_LOCK = 0x6B7069  # as in 0006: one fold (or rebuild) at a time
DEFAULT_TZ = "Asia/Shanghai"  # as db.clock

# kpi_day's counts, and the step each is counted on (the day of its time).
COUNT_COLUMNS = (
    "reported", "filed", "filed_timely", "dispatched", "dispatched_timely",
    "dispatched_returned", "fed_back", "fed_back_ontime", "closed", "closed_ontime",
    "hours_n", "closed_us", "lo", "lor", "hi", "hir",
)
EVENTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("d.reported_at", {"reported": "1"}),
    ("d.filed_at", {"filed": "1",
                    "filed_timely": "coalesce((d.filed_at <= d.file_due)::int, 0)"}),
    ("d.dispatched_at", {
        "dispatched": "1",
        "dispatched_timely": "coalesce((d.dispatched_at <= d.dispatch_due)::int, 0)",
        "dispatched_returned": "(d.returned_at IS NOT NULL)::int"}),
    ("d.fed_back_at", {"fed_back": "1",
                       "fed_back_ontime": "coalesce((d.fed_back_at <= d.handle_due)::int, 0)"}),
    ("d.closed_at", {"closed": "1",
                     "closed_ontime": "coalesce((d.closed_at <= d.close_due)::int, 0)",
                     "hours_n": "(d.hours IS NOT NULL)::int",
                     "closed_us": "coalesce(d.us, 0)"}),
    ("d.lo_at", {"lo": "1"}),
    ("d.lor_at", {"lor": "1"}),
    ("d.hi_at", {"hi": "1", "hir": "(d.lor_at IS NOT NULL)::int"}),
)

# A case's derived values, from a row ``ch`` of case_fact (and its sign ``s``).
DERIVED = """
    SELECT ch.*, a.irregular, b.lo_at, c.hi_at, c.lor_at,
           coalesce(ch.grid_id, 0) AS gk, coalesce(ch.lead_department_id, 0) AS dk,
           coalesce(ch.worker_id, 0) AS wk,
           coalesce((ch.dispatched_at AT TIME ZONE tz)::date, 'infinity'::date) AS dday,
           (ch.closed_at AT TIME ZONE tz)::date AS close_day,
           date_part('epoch', ch.closed_at - ch.filed_at) / 3600.0 AS hours,
           (extract(epoch FROM ch.closed_at - ch.filed_at) * 1000000)::bigint AS us,
           CASE WHEN b.lo_at IS NOT NULL AND (c.hi_at IS NULL OR b.lo_at < c.hi_at)
                THEN tstzrange(b.lo_at, c.hi_at, '(]') END AS backlog,
           CASE WHEN a.irregular THEN '(,)'::tstzrange
                WHEN w.lower_at IS NOT NULL THEN tstzrange(w.lower_at, w.upper_at, '(]') END
               AS xwin
      FROM ({source}) ch
     CROSS JOIN LATERAL (SELECT
           coalesce(ch.closed_at < ch.filed_at, false)
           OR coalesce(ch.reworked_at > ch.closed_at, false)
           OR coalesce(ch.dispatched_at > ch.closed_at, false)
           OR coalesce(ch.lead_at > ch.closed_at, false)
           OR (ch.lead_department_id IS NOT NULL AND ch.dispatched_at IS NULL) AS irregular,
           CASE WHEN ch.filed_at IS NOT NULL AND least(ch.closed_at, ch.close_due) IS NOT NULL
                THEN greatest(ch.filed_at, least(ch.closed_at, ch.close_due)) END AS lo0) a
     CROSS JOIN LATERAL (SELECT CASE WHEN NOT a.irregular THEN a.lo0 END AS lo_at) b
     CROSS JOIN LATERAL (SELECT
           CASE WHEN b.lo_at IS NOT NULL THEN ch.closed_at END AS hi_at,
           CASE WHEN b.lo_at IS NOT NULL AND ch.reworked_at IS NOT NULL
                THEN greatest(b.lo_at, ch.reworked_at) END AS lor_at) c
     CROSS JOIN LATERAL (SELECT
           least(CASE WHEN ch.lead_at > ch.dispatched_at THEN ch.dispatched_at END,
                 CASE WHEN ch.close_changed_at > ch.filed_at THEN ch.filed_at END,
                 CASE WHEN ch.returned_at > ch.dispatched_at THEN ch.dispatched_at END)
               AS lower_at,
           greatest(CASE WHEN ch.lead_at > ch.dispatched_at THEN ch.lead_at END,
                    CASE WHEN ch.close_changed_at > ch.filed_at THEN ch.close_changed_at END,
                    CASE WHEN ch.returned_at > ch.dispatched_at THEN ch.returned_at END)
               AS upper_at) w
"""

CASE_COLUMNS = ("grid_id", "department_id", "worker_id", "dispatched_at", "closed_at",
                "close_day", "hours", "lo_at", "hi_at", "lor_at", "backlog", "xwin",
                "irregular")


def case_upsert(source: str) -> str:
    """kpi_case's rows for the case_fact rows of ``source``."""
    cols = ", ".join(CASE_COLUMNS)
    return f"""
    INSERT INTO kpi_case AS k (case_id, {cols})
    SELECT d.case_id, d.grid_id, d.lead_department_id, d.worker_id, d.dispatched_at,
           d.closed_at, d.close_day, d.hours, d.lo_at, d.hi_at, d.lor_at, d.backlog, d.xwin, d.irregular
      FROM ({DERIVED.format(source=source)}) d
    ON CONFLICT (case_id) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in CASE_COLUMNS)}
    """


def day_delta(source: str) -> str:
    """Add the signed contributions of the case_fact rows of ``source`` to kpi_day."""
    values = []
    for at, cols in EVENTS:
        values.append("(" + ", ".join([at] + [cols.get(c, "0") for c in COUNT_COLUMNS]) + ")")
    sums = ", ".join(f"sum(e.s * e.{c})::{'bigint' if c == 'closed_us' else 'integer'} AS {c}"
                     for c in COUNT_COLUMNS)
    nonzero = " OR ".join(f"{c} <> 0" for c in COUNT_COLUMNS)
    return f"""
    WITH ev AS (
        SELECT d.s, (x.at AT TIME ZONE tz)::date AS day, d.gk, d.dk, d.dday, d.wk, x.*
          FROM ({DERIVED.format(source=source)}) d
         CROSS JOIN LATERAL (VALUES {", ".join(values)})
               AS x(at, {", ".join(COUNT_COLUMNS)})
         WHERE NOT d.irregular AND x.at IS NOT NULL
    ), g AS (
        SELECT CASE WHEN GROUPING(e.gk) = 0 THEN 1 WHEN GROUPING(e.dk) = 0 THEN 2 ELSE 3 END
                   AS dim,
               e.day, coalesce(e.gk, e.dk, e.wk) AS key,
               coalesce(e.dday, 'infinity'::date) AS dday, {sums}
          FROM ev e
         GROUP BY GROUPING SETS ((e.day, e.gk), (e.day, e.dk, e.dday), (e.day, e.wk))
    )
    INSERT INTO kpi_day AS k (dim, day, key, dday, {", ".join(COUNT_COLUMNS)})
    SELECT dim, day, key, dday, {", ".join(COUNT_COLUMNS)} FROM g WHERE {nonzero}
    ON CONFLICT (dim, day, key, dday) DO UPDATE SET
        {", ".join(f"{c} = k.{c} + EXCLUDED.{c}" for c in COUNT_COLUMNS)}
    """


# What the rollup reads of a fact row: a change elsewhere (last_seq, ended_at …) is no
# change to it.
WATCHED = ("grid_id", "worker_id", "lead_department_id", "lead_at", "reported_at",
           "filed_at", "file_due", "dispatched_at", "dispatch_due", "fed_back_at",
           "handle_due", "closed_at", "close_due", "close_changed_at", "returned_at",
           "reworked_at")
_CHANGED = (f"({', '.join('o.' + c for c in WATCHED)}) IS DISTINCT FROM "
            f"({', '.join('n.' + c for c in WATCHED)})")
NEW_ROWS = "SELECT 1 AS s, n.* FROM n"
OLD_ROWS = "SELECT -1 AS s, o.* FROM o"
CHANGED_NEW = f"SELECT 1 AS s, n.* FROM n JOIN o ON o.case_id = n.case_id WHERE {_CHANGED}"
CHANGED_BOTH = (f"SELECT -1 AS s, o.* FROM o JOIN n ON n.case_id = o.case_id WHERE {_CHANGED} "
                f"UNION ALL {CHANGED_NEW}")
ALL_FACTS = "SELECT 1 AS s, f.* FROM case_fact f"

TABLES_SQL = [
    f"""
    CREATE TABLE kpi_day (
        dim smallint NOT NULL,   -- 1 grid, 2 department, 3 worker (key 0: none)
        day date NOT NULL,       -- in grid_meta.kpi_tz
        key integer NOT NULL,
        dday date NOT NULL,      -- department: the day of the first dispatch; else infinity
        {", ".join(f"{c} {'bigint' if c == 'closed_us' else 'integer'} NOT NULL DEFAULT 0"
                   for c in COUNT_COLUMNS)},
        CONSTRAINT pk_kpi_day PRIMARY KEY (dim, day, key, dday)
    )
    """,
    """
    CREATE TABLE kpi_case (
        case_id bigint PRIMARY KEY,
        grid_id integer,
        department_id integer,
        worker_id integer,
        dispatched_at timestamptz,
        closed_at timestamptz,
        close_day date,          -- in grid_meta.kpi_tz
        hours double precision,
        lo_at timestamptz,
        hi_at timestamptz,
        lor_at timestamptz,
        backlog tstzrange,
        xwin tstzrange,
        irregular boolean NOT NULL DEFAULT false
    )
    """,
    "CREATE INDEX ix_kpi_case_closed_at ON kpi_case (closed_at) "
    "INCLUDE (grid_id, department_id, worker_id, hours) WHERE closed_at IS NOT NULL",
    # the exact medians without a sort: the cases of a group (or a day) in order of their
    # handling hours, walked to the middle
    "CREATE INDEX ix_kpi_case_hours ON kpi_case (hours) "
    "INCLUDE (closed_at, grid_id, department_id, worker_id) WHERE hours IS NOT NULL",
    "CREATE INDEX ix_kpi_case_grid_hours ON kpi_case (grid_id, hours) INCLUDE (closed_at) "
    "WHERE hours IS NOT NULL",
    "CREATE INDEX ix_kpi_case_department_hours ON kpi_case (department_id, hours) "
    "INCLUDE (closed_at) WHERE hours IS NOT NULL",
    "CREATE INDEX ix_kpi_case_worker_hours ON kpi_case (worker_id, hours) INCLUDE (closed_at) "
    "WHERE hours IS NOT NULL",
    "CREATE INDEX ix_kpi_case_day_hours ON kpi_case (close_day, hours) INCLUDE (closed_at) "
    "WHERE hours IS NOT NULL",
    "CREATE INDEX ix_kpi_case_backlog ON kpi_case USING gist (backlog) "
    "WHERE backlog IS NOT NULL",
    "CREATE INDEX ix_kpi_case_xwin ON kpi_case USING gist (xwin) WHERE xwin IS NOT NULL",
    "CREATE INDEX ix_kpi_case_open_lo ON kpi_case (lo_at) "
    "WHERE hi_at IS NULL AND lo_at IS NOT NULL",
]

FUNCTIONS_SQL = [
    f"""
    CREATE FUNCTION grid_kpi_zone() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        SELECT coalesce((SELECT value FROM grid_meta WHERE key = 'kpi_tz'), '{DEFAULT_TZ}')
    $$
    """,
    f"""
    CREATE FUNCTION grid_kpi_apply() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
    DECLARE
        tz text := grid_kpi_zone();
    BEGIN
        IF TG_OP = 'INSERT' THEN
            {case_upsert(NEW_ROWS)};
            {day_delta(NEW_ROWS)};
        ELSIF TG_OP = 'UPDATE' THEN
            {case_upsert(CHANGED_NEW)};
            {day_delta(CHANGED_BOTH)};
        ELSE
            DELETE FROM kpi_case WHERE case_id IN (SELECT case_id FROM o);
            {day_delta(OLD_ROWS)};
        END IF;
        RETURN NULL;
    END $fn$
    """,
    f"""
    CREATE FUNCTION grid_kpi_rebuild(p_tz text) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, public AS $fn$
    DECLARE
        tz text := p_tz;
        total bigint;
    BEGIN
        PERFORM pg_advisory_xact_lock({METRICS_LOCK});
        PERFORM now() AT TIME ZONE tz;  -- an unknown zone stops here
        INSERT INTO grid_meta (key, value, updated_at) VALUES ('kpi_tz', tz, now())
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
        TRUNCATE kpi_day, kpi_case;
        {case_upsert(ALL_FACTS)};
        GET DIAGNOSTICS total = ROW_COUNT;
        {day_delta(ALL_FACTS)};
        RETURN total;
    END $fn$
    """,
]

TRIGGERS_SQL = [
    "CREATE TRIGGER case_fact_kpi_insert AFTER INSERT ON case_fact "
    "REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION grid_kpi_apply()",
    "CREATE TRIGGER case_fact_kpi_update AFTER UPDATE ON case_fact "
    "REFERENCING OLD TABLE AS o NEW TABLE AS n FOR EACH STATEMENT "
    "EXECUTE FUNCTION grid_kpi_apply()",
    "CREATE TRIGGER case_fact_kpi_delete AFTER DELETE ON case_fact "
    "REFERENCING OLD TABLE AS o FOR EACH STATEMENT EXECUTE FUNCTION grid_kpi_apply()",
    "ALTER TABLE case_fact ENABLE ALWAYS TRIGGER case_fact_kpi_insert",
    "ALTER TABLE case_fact ENABLE ALWAYS TRIGGER case_fact_kpi_update",
    "ALTER TABLE case_fact ENABLE ALWAYS TRIGGER case_fact_kpi_delete",
    # a truncated case_fact (the owner's) leaves no rollup behind
    """
    CREATE FUNCTION grid_kpi_truncate() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    BEGIN
        TRUNCATE kpi_day, kpi_case;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER case_fact_kpi_truncate AFTER TRUNCATE ON case_fact "
    "FOR EACH STATEMENT EXECUTE FUNCTION grid_kpi_truncate()",
]

GRANTS_SQL = [
    "GRANT SELECT ON kpi_day, kpi_case TO grid_console, grid_wall",
    "REVOKE EXECUTE ON FUNCTION grid_kpi_apply(), grid_kpi_truncate(), grid_kpi_rebuild(text) "
    "FROM PUBLIC",
    "GRANT EXECUTE ON FUNCTION grid_kpi_zone() TO grid_console, grid_wall",
]


def upgrade() -> None:
    for statement in TABLES_SQL + FUNCTIONS_SQL + TRIGGERS_SQL + GRANTS_SQL:
        op.execute(statement)
    # the facts folded so far, in the hall's zone as this process knows it
    zone = os.environ.get("GRID_TZ", DEFAULT_TZ).replace("'", "")
    op.execute(f"SELECT grid_kpi_rebuild('{zone}')")


def downgrade() -> None:
    for trigger in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER case_fact_kpi_{trigger} ON case_fact")
    op.execute("DROP FUNCTION grid_kpi_apply(), grid_kpi_truncate(), grid_kpi_rebuild(text), "
               "grid_kpi_zone()")
    op.execute("DROP TABLE kpi_day, kpi_case")
    op.execute("DELETE FROM grid_meta WHERE key = 'kpi_tz'")
