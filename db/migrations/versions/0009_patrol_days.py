"""Patrol summaries per worker and closed day, and a time index on positions (issue 12).

* **Patrol summaries** (``patrol_day``): what ``maps.patrol.compute`` finds for one worker
  on one local day (sessions, patrol and outside seconds, own-grid cells visited), kept
  for days that are over, so a monthly report of 590 workers reads 17,700 rows instead
  of 51 M fixes.  A row is valid only for what it was computed from: the worker's
  terminal (``device_id``) and own grid (``grid_id``), the session parameters (``params``:
  longest gap, moving speed, longest stop), and the fixes in ``[day_start, until)``
  (the day plus the margin in which its last interval may end).  The report reuses a
  row only when the first three still match and recomputes every other (worker, day)
  live, so it answers the same with or without summaries.
* **Late fixes** (a terminal that buffered offline, a replayed queue) would make a row
  stale: an AFTER INSERT statement trigger on ``positions`` deletes every summary whose
  ``[day_start, until)`` meets the new rows of its device (``grid_patrol_day_invalidate``,
  ``SECURITY DEFINER`` so the gateway needs no DELETE for it; its fast exit costs one pass
  over the batch when no summary reaches that late).  Retention deletes the summaries of
  the days it drops (``grid_drop_positions_before`` replaced with one more DELETE).
* Who writes them: ``db.field.summarize_patrol_days`` as the gateway's role (it already
  writes the positions the rows are made of, so it gains no power to forge a ledger) or
  the owner; consoles and the wall only read.
* **A BRIN index on ``positions.ts``**: fixes arrive roughly in time order, so a block
  range index (a few kB a day) lets "everyone at T" and a short "who was at X" read only
  the pages of their window instead of the whole day partition.
* **An SP-GiST index on ``point(lon, lat)``** (a quad-tree, built in): "who was at X"
  over a day or a week reads the few thousand fixes near X instead of every fix of the
  window (a day of 1.7 M: 250 ms → about 50 ms); it costs about 45 bytes a fix and a
  little on every insert (the gateway writes some 20 fixes a second for 590 workers).

Revision ID: 0009
Revises: 0008
Created: 2026-12-09
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SCHEMA_SQL = [
    """
    CREATE TABLE patrol_day (
        worker_id integer NOT NULL REFERENCES worker (id) ON DELETE CASCADE,
        day date NOT NULL,
        params text NOT NULL,
        device_id integer NOT NULL,
        grid_id integer NOT NULL,
        day_start timestamptz NOT NULL,
        until timestamptz NOT NULL,
        patrol_s double precision NOT NULL,
        outside_s double precision NOT NULL,
        cells_visited integer NOT NULL,
        sessions double precision[] NOT NULL,
        fixes integer NOT NULL,
        computed_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT pk_patrol_day PRIMARY KEY (worker_id, day, params),
        CONSTRAINT ck_patrol_day_window CHECK (until > day_start)
    )
    """,
    "CREATE INDEX ix_patrol_day_device_until ON patrol_day (device_id, until)",
    "CREATE INDEX ix_patrol_day_until ON patrol_day (until)",
    "CREATE INDEX ix_positions_ts_brin ON positions USING brin (ts) "
    "WITH (pages_per_range = 32, autosummarize = on)",
    "CREATE INDEX ix_positions_point ON positions USING spgist (point(lon, lat))",
]

FUNCTIONS_SQL = [
    """
    CREATE FUNCTION grid_patrol_day_invalidate() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        horizon timestamptz := (SELECT max(until) FROM patrol_day);
    BEGIN
        IF horizon IS NULL OR NOT EXISTS (SELECT 1 FROM new_rows WHERE ts < horizon) THEN
            RETURN NULL;  -- the usual case: live fixes, newer than every summary
        END IF;
        DELETE FROM patrol_day p
         USING (SELECT device_id, min(ts) AS a, max(ts) AS b FROM new_rows
                 WHERE ts < horizon GROUP BY device_id) n
         WHERE p.device_id = n.device_id AND p.until > n.a AND p.day_start <= n.b;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER positions_patrol_day AFTER INSERT ON positions
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION grid_patrol_day_invalidate()
    """,
]

_DROP_BEFORE = """
    CREATE OR REPLACE FUNCTION grid_drop_positions_before(cutoff date) RETURNS integer
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
        {extra}
        RETURN dropped;
    END $$
"""
# The summaries of a day whose fixes retention drops go with them.
RETENTION_SQL = [_DROP_BEFORE.replace(
    "{extra}", "DELETE FROM patrol_day WHERE day_start < cutoff::timestamptz;")]

GRANTS_SQL = [
    "REVOKE EXECUTE ON FUNCTION grid_patrol_day_invalidate() FROM PUBLIC",
    "GRANT SELECT ON patrol_day TO grid_console, grid_wall",
    "GRANT SELECT, INSERT, DELETE ON patrol_day TO grid_gateway",
    # The summariser reads what the report reads.
    "GRANT SELECT ON duty_schedule TO grid_gateway",
]


def upgrade() -> None:
    for statement in SCHEMA_SQL + FUNCTIONS_SQL + RETENTION_SQL + GRANTS_SQL:
        op.execute(statement)


def downgrade() -> None:
    op.execute(_DROP_BEFORE.replace("{extra}", ""))
    op.execute("DROP TRIGGER positions_patrol_day ON positions")
    op.execute("DROP FUNCTION grid_patrol_day_invalidate()")
    op.execute("DROP INDEX ix_positions_point")
    op.execute("DROP INDEX ix_positions_ts_brin")
    op.execute("DROP TABLE patrol_day")
