"""The field force: duty schedules per worker (issue 12).

* **Duty schedules** (``duty_schedule``): per worker the ISO weekdays (1 = Monday) and
  the hours of duty, local to the hall (``GRID_TZ``).  A shift whose end is before its
  start runs past midnight.  A worker without a row has no schedule: the worker board
  then takes the roster's status (``worker.status``) and the patrol report counts every
  day.  Only an administrator edits a schedule, through ``grid_duty_schedule_set``
  (``SECURITY DEFINER``, ``grid_require_admin`` as 0005's ``grid_device_key``); every
  console and the wall read them.
* Everything else the field force needs (positions, worker events, assignments) is
  already there; patrol sessions and coverage are computed from ``positions`` when
  asked (``db.field``, ``maps.patrol``).

Revision ID: 0008
Revises: 0007
Created: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SCHEMA_SQL = [
    """
    CREATE TABLE duty_schedule (
        worker_id integer PRIMARY KEY REFERENCES worker (id) ON DELETE CASCADE,
        days smallint[] NOT NULL,
        start_time time NOT NULL,
        end_time time NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT ck_duty_schedule_days CHECK (
            cardinality(days) BETWEEN 1 AND 7 AND days <@ ARRAY[1,2,3,4,5,6,7]::smallint[]),
        CONSTRAINT ck_duty_schedule_hours CHECK (start_time <> end_time)
    )
    """,
]

FUNCTIONS_SQL = [
    """
    CREATE FUNCTION grid_duty_schedule_set(
        p_worker text, p_days smallint[], p_start time, p_end time)
    RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        wid integer;
    BEGIN
        PERFORM grid_require_admin();
        SELECT id INTO wid FROM worker WHERE code = p_worker;
        IF wid IS NULL THEN
            RAISE EXCEPTION 'unknown worker %', p_worker USING ERRCODE = 'no_data_found';
        END IF;
        IF p_days IS NULL THEN  -- no schedule any more
            DELETE FROM duty_schedule WHERE worker_id = wid;
            RETURN wid;
        END IF;
        INSERT INTO duty_schedule (worker_id, days, start_time, end_time, updated_at)
        VALUES (wid, (SELECT array_agg(DISTINCT d ORDER BY d) FROM unnest(p_days) d),
                p_start, p_end, now())
        ON CONFLICT (worker_id) DO UPDATE
            SET days = EXCLUDED.days, start_time = EXCLUDED.start_time,
                end_time = EXCLUDED.end_time, updated_at = now();
        RETURN wid;
    END $$
    """,
]

GRANTS_SQL = [
    "REVOKE EXECUTE ON FUNCTION grid_duty_schedule_set(text, smallint[], time, time) FROM PUBLIC",
    "GRANT EXECUTE ON FUNCTION grid_duty_schedule_set(text, smallint[], time, time) "
    "TO grid_console",
    "GRANT SELECT ON duty_schedule TO grid_console, grid_wall",
]


def upgrade() -> None:
    for statement in SCHEMA_SQL + FUNCTIONS_SQL + GRANTS_SQL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION grid_duty_schedule_set(text, smallint[], time, time)")
    op.execute("DROP TABLE duty_schedule")
