"""A field worker's status and alerts, derived from data (issue 12, docs/DOMAIN.md).

Pure functions over one worker's roster row, latest fix, open handling and schedule, so
the rules are tested without a window and the board, the wall and the replay agree.

Status, first that applies:

* **off duty** (``off_duty``): outside the worker's duty schedule; without a schedule,
  when the roster says so (``worker.status``);
* **offline** (``offline``): on duty with a terminal but no fix for ``offline_minutes``
  (or never one); a worker without a terminal is on duty by the roster;
* **handling** (``handling``): a case dispatched to the worker was acknowledged (its
  status is ``in_progress``);
* **patrolling** (``patrolling``): the latest fix lies in the own grid and moves
  (``moving_kmh`` or faster);
* **on duty** (``on_duty``): otherwise.

Alerts: ``left_grid`` (on duty, the latest fix outside the own grid), ``offline_on_duty``,
``no_patrol`` (on duty, no patrol yet today by ``patrol_by``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from db.clock import hall_timezone
from db.field import DutySchedule

STATUSES = ("on_duty", "patrolling", "handling", "off_duty", "offline")
ALERTS = ("left_grid", "offline_on_duty", "no_patrol")
OFFLINE_MINUTES = 10.0  # as the gateway's default sweep (db.positions)
MOVING_KMH = 1.0  # as maps.patrol's rule
PATROL_BY = time(10, 0)


@dataclass(frozen=True)
class WorkerStatus:
    status: str
    alerts: tuple[str, ...]
    fix_age_s: float | None


def derive(row: dict, now: datetime, schedule: DutySchedule | None,
           patrol_minutes_today: float | None = None,
           offline_minutes: float = OFFLINE_MINUTES, moving_kmh: float = MOVING_KMH,
           patrol_by: time = PATROL_BY) -> WorkerStatus:
    """The status and alerts of one ``db.field.board_rows`` row at ``now``."""
    ts = row.get("ts")
    age = (now - ts).total_seconds() if ts is not None else None
    on_duty = schedule.on_duty(now) if schedule else row.get("status") != "off_duty"
    alerts: list[str] = []
    if not on_duty:
        return WorkerStatus("off_duty", (), age)
    if not row.get("device_id"):  # no terminal (most part-timers): the roster says on duty
        return WorkerStatus("on_duty", (), None)
    fresh = age is not None and age < offline_minutes * 60 and not row.get("offline_event")
    if not fresh:
        status = "offline"
        alerts.append("offline_on_duty")
    elif row.get("handling_case"):
        status = "handling"
    elif (row.get("fix_grid_id") == row.get("grid_id") and row.get("grid_id") is not None
          and (row.get("speed_kmh") or 0.0) >= moving_kmh):
        status = "patrolling"
    else:
        status = "on_duty"
    if fresh and row.get("grid_id") is not None and row.get("fix_grid_id") != row["grid_id"]:
        alerts.append("left_grid")
    local = now.astimezone(hall_timezone())
    if (patrol_minutes_today is not None and patrol_minutes_today <= 0
            and local.time() >= patrol_by and row.get("device_id")):
        alerts.append("no_patrol")
    return WorkerStatus(status, tuple(alerts), age)


def today_bounds(now: datetime) -> tuple[datetime, datetime]:
    """Local midnight of ``now``'s day and the next, in the hall's time zone."""
    local = now.astimezone(hall_timezone())
    start = datetime.combine(local.date(), time(), hall_timezone())
    return start, start + timedelta(days=1)
