"""Worker status from data: positions stored through the gateway's path, cases through the
services, schedules through the administrator's function; and the worker board showing it.

Expected statuses are the issue's rules (console/worker_status.py quotes them): a fix
inside the own grid while moving → patrolling; no fix for 10 minutes → offline; a case
dispatched to the worker and acknowledged → handling; outside duty hours → off duty.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from console.worker_board import WorkerBoardStore
from console.worker_status import derive
from db.field import board_rows, schedule_of, set_schedule
from db.positions import PositionReport, store_positions
from tests.field_support import add_worker, territory
from tests.flows import report as report_case
from tests.flows import step


def _fix(engine, device, lon, lat, speed, ago_s=0.0):
    ts = datetime.now(UTC) - timedelta(seconds=ago_s)
    store_positions(engine, [PositionReport(device, ts, lon, lat, speed_kmh=speed)])


def status_of(engine, code, patrol_minutes=None):
    rows, now = board_rows(engine)
    row = next(r for r in rows if r["code"] == code)
    return derive(row, now, schedule_of(row), patrol_minutes)


@pytest.fixture
def place(engine):
    return territory(engine)


def test_status_follows_fixes_assignments_and_the_schedule(place, engine, actors):
    add_worker(engine, "SW01", place.own_grid, device="TS1")
    cell = place.own_cells[0]
    assert status_of(engine, "SW01").status == "offline"  # never a fix, on duty by the roster
    assert "offline_on_duty" in status_of(engine, "SW01").alerts
    _fix(engine, "TS1", *cell.at(), speed=4.0)
    assert status_of(engine, "SW01").status == "patrolling"
    _fix(engine, "TS1", *cell.at(0.6, 0.5), speed=0.0)
    st = status_of(engine, "SW01")
    assert (st.status, st.alerts) == ("on_duty", ())
    _fix(engine, "TS1", *place.other_cell.at(), speed=4.0)  # moving, but in another grid
    st = status_of(engine, "SW01")
    assert (st.status, st.alerts) == ("on_duty", ("left_grid",))
    _fix(engine, "TS1", *cell.at(), speed=4.0)
    # A case dispatched to the worker: handling only once the department acknowledges it.
    lon, lat = cell.at()
    case = report_case(engine, actors, lon=lon, lat=lat)
    for action in ("accept", "file"):
        case = step(engine, actors, case, action)
    case = step(engine, actors, case, "dispatch", worker="SW01")
    assert status_of(engine, "SW01").status == "patrolling"
    case = step(engine, actors, case, "acknowledge")
    assert status_of(engine, "SW01").status == "handling"
    case = step(engine, actors, case, "feedback")
    assert status_of(engine, "SW01").status == "patrolling"


def test_no_fix_for_ten_minutes_is_offline(place, engine):
    add_worker(engine, "SW02", place.own_grid, device="TS2")
    _fix(engine, "TS2", *place.own_cells[0].at(), speed=4.0, ago_s=9 * 60)
    assert status_of(engine, "SW02").status == "patrolling"
    _fix(engine, "TS2", *place.own_cells[0].at(), speed=4.0, ago_s=11 * 60)  # older: no change
    assert status_of(engine, "SW02").status == "patrolling"
    add_worker(engine, "SW03", place.own_grid, device="TS3")
    _fix(engine, "TS3", *place.own_cells[0].at(), speed=4.0, ago_s=11 * 60)
    st = status_of(engine, "SW03")
    assert (st.status, st.alerts) == ("offline", ("offline_on_duty",))
    assert st.fix_age_s == pytest.approx(660, abs=30)


def test_outside_duty_hours_is_off_duty(place, engine):
    add_worker(engine, "SW04", place.own_grid, device="TS4")
    _fix(engine, "TS4", *place.own_cells[0].at(), speed=4.0)
    _, now = board_rows(engine)
    from db.clock import hall_timezone

    local = now.astimezone(hall_timezone())
    other_days = [d for d in range(1, 8) if d != local.isoweekday()]
    set_schedule(engine, None, "SW04", other_days, time(0, 0), time(23, 59))
    assert status_of(engine, "SW04").status == "off_duty"
    # Every day, an hour either side of now: near the hall's midnight the window is an
    # overnight shift (end before start), on duty from the evening before.
    set_schedule(engine, None, "SW04", list(range(1, 8)),
                 (local - timedelta(hours=1)).time(), (local + timedelta(hours=1)).time())
    assert status_of(engine, "SW04").status == "patrolling"
    set_schedule(engine, None, "SW04", list(range(1, 8)), (local + timedelta(hours=1)).time(),
                 (local + timedelta(hours=2)).time())
    assert status_of(engine, "SW04").status == "off_duty"
    # Off duty with no fix is off duty, not offline.
    add_worker(engine, "SW05", place.own_grid, device="TS5")
    set_schedule(engine, None, "SW05", other_days, time(8, 0), time(17, 0))
    assert status_of(engine, "SW05").status == "off_duty"


def test_no_patrol_by_ten_is_an_alert(place, engine):
    add_worker(engine, "SW06", place.own_grid, device="TS6")
    _fix(engine, "TS6", *place.own_cells[0].at(), speed=0.0)
    rows, now = board_rows(engine)
    row = next(r for r in rows if r["code"] == "SW06")
    from db.clock import hall_timezone

    tz = hall_timezone()
    day = now.astimezone(tz).date()
    nine = datetime.combine(day, time(9, 59), tz)
    eleven = datetime.combine(day, time(11, 0), tz)
    row = {**row, "ts": nine - timedelta(seconds=5)}
    assert "no_patrol" not in derive(row, nine, None, 0.0).alerts
    row = {**row, "ts": eleven - timedelta(seconds=5)}
    assert "no_patrol" in derive(row, eleven, None, 0.0).alerts
    assert "no_patrol" not in derive(row, eleven, None, 12.0).alerts


def test_the_board_lists_filters_and_shows_on_the_map(place, engine, qtbot):
    from widgets.worker_board import WorkerBoard

    add_worker(engine, "SW07", place.own_grid, device="TS7")
    add_worker(engine, "SW08", place.own_grid, device="TS8")
    add_worker(engine, "SW09", place.own_grid, role="part_time")
    _fix(engine, "TS7", *place.own_cells[0].at(), speed=4.0)
    store = WorkerBoardStore(engine, auto=False)
    board = WorkerBoard(store)
    qtbot.addWidget(board)
    with qtbot.waitSignal(store.changed, timeout=20000):
        store.refresh(patrol=True)
    assert sorted(board.visible_workers()) == ["SW07", "SW08", "SW09"]
    states = {r["code"]: r["state"].status for r in store.rows}
    assert states == {"SW07": "patrolling", "SW08": "offline", "SW09": "on_duty"}
    board.status_filter.setCurrentIndex(board.status_filter.findData("offline"))
    assert board.visible_workers() == ["SW08"]
    board.status_filter.setCurrentIndex(0)
    board.search.setText("SW07")
    assert board.visible_workers() == ["SW07"]
    item = board._items[next(r["worker_id"] for r in store.rows if r["code"] == "SW07")]
    with qtbot.waitSignal(board.show_on_map, timeout=2000) as sig:
        board.tree.itemClicked.emit(item, 0)
    assert sig.args == [next(r["device_id"] for r in store.rows if r["code"] == "SW07")]
