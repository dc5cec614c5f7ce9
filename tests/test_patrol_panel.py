"""The patrol panel (巡查统计), the board's duty-schedule dialog and ``--view workers``,
driven as an operator would, on hand-made tracks whose answers are worked out here.

Monday 2 November 2026 (hall time), one fix a minute, the period Monday–Tuesday:

* PA01 (the first street): 09:00–09:39 moving at 4 km/h inside the own grid, twenty
  fixes in each of two cells; 09:40–09:50 moving in another grid.  The interval after a
  fix belongs to that fix, so the session is 09:00–09:40 (40 minutes, a patrol of the
  daily rule's 10 minutes), 10 minutes outside (09:40→09:50), 2 own cells visited.
  Tuesday: nothing, and no schedule, so Tuesday is required → the missed day.  Over the
  period 1 of 2 required days: not compliant.
* PB01 (a grid of the other street): Monday 10:00–10:15 moving inside, a 15-minute
  patrol; on duty Mondays only, so Tuesday is free and the period is 1 of 1: compliant.
* Under the 全科网格 rule (two patrols of ≥ 2 h) neither Monday complies.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton
from sqlalchemy import text

from db.field import roster, schedule_of, set_schedule
from db.users import authenticate
from tests.conftest import PASSWORD
from tests.field_support import Cell, add_worker, local, put_fixes, territory
from tests.kpi_support import console_engine

MON, TUE = date(2026, 11, 2), date(2026, 11, 3)
MINUTE = timedelta(minutes=1)


def _other_street_cell(engine, street_of_a: str) -> tuple[int, Cell, str]:
    """A whole cell of a grid in the street that is not ``street_of_a``."""
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT u.code, u.grid_id, u.min_lon, u.min_lat, u.max_lon, u.max_lat, s.code "
            "FROM unit_cell u JOIN grid g ON g.id = u.grid_id "
            "JOIN community c ON c.id = g.community_id JOIN street s ON s.id = c.street_id "
            "WHERE s.code <> :s AND NOT u.clipped ORDER BY g.code, u.code LIMIT 1"),
            {"s": street_of_a}).one()
    return row[1], Cell(*row[:6]), row[6]


@pytest.fixture
def hall(engine):
    place = territory(engine)
    c1, c2 = place.own_cells[:2]
    with engine.connect() as conn:
        street_a = conn.execute(text(
            "SELECT s.code FROM grid g JOIN community c ON c.id = g.community_id "
            "JOIN street s ON s.id = c.street_id WHERE g.id = :g"),
            {"g": place.own_grid}).scalar_one()
        n_cells = conn.execute(text("SELECT count(*) FROM unit_cell WHERE grid_id = :g"),
                               {"g": place.own_grid}).scalar_one()
    grid_b, cell_b, street_b = _other_street_cell(engine, street_a)
    _, da = add_worker(engine, "PA01", place.own_grid, device="TA")
    _, db_ = add_worker(engine, "PB01", grid_b, device="TB")
    t = local(2026, 11, 2, 9, 0)
    fixes = [(t + k * MINUTE, *(c1 if k < 20 else c2).at(0.3 + 0.02 * (k % 20), 0.5), 4.0,
              place.own_grid) for k in range(40)]
    fixes += [(t + (40 + k) * MINUTE, *place.other_cell.at(), 4.0, place.other_grid)
              for k in range(11)]
    put_fixes(engine, da, fixes)
    t = local(2026, 11, 2, 10, 0)
    put_fixes(engine, db_, [(t + k * MINUTE, *cell_b.at(0.2 + 0.03 * k, 0.5), 4.0, grid_b)
                            for k in range(16)])
    set_schedule(engine, None, "PB01", [1], time(8, 0), time(18, 0))
    return {"street_a": street_a, "street_b": street_b, "cells_a": n_cells}


def _panel(engine, qtbot):
    from widgets.patrol_panel import PatrolPanel

    panel = PatrolPanel(engine)
    qtbot.addWidget(panel)
    panel.show()  # a hidden panel reads nothing
    qtbot.waitUntil(lambda: panel.is_loaded, timeout=30000)
    return panel


def _reload(panel, qtbot, change):
    with qtbot.waitSignal(panel.loaded, timeout=30000):
        change()


def _texts(panel, worker: str, day: date) -> list[str]:
    """The row's texts as: worker, grid, date, sessions, patrols, minutes, coverage,
    outside, day, period (whatever order the columns stand in)."""
    from widgets.patrol_panel import (
        COL_COVERAGE,
        COL_DATE,
        COL_DAY,
        COL_GRID,
        COL_MINUTES,
        COL_OUTSIDE,
        COL_PATROLS,
        COL_PERIOD,
        COL_SESSIONS,
        COL_WORKER,
    )

    row = panel.row_of(worker, day.isoformat())
    assert row >= 0, f"{worker} {day} not shown"
    return [panel.proxy.index(row, c).data() for c in (
        COL_WORKER, COL_GRID, COL_DATE, COL_SESSIONS, COL_PATROLS, COL_MINUTES, COL_COVERAGE,
        COL_OUTSIDE, COL_DAY, COL_PERIOD)]


def test_the_panel_shows_sessions_coverage_and_compliance(hall, engine, qtbot):
    from widgets.patrol_panel import COL_DAY, COL_PERIOD, MISSED, MISSED_ROLE, OPEN

    panel = _panel(engine, qtbot)
    _reload(panel, qtbot, lambda: panel.set_period(MON, TUE))
    assert sorted((w["worker"], d["date"]) for w, d in panel.shown_rows()) == [
        ("PA01", "2026-11-02"), ("PA01", "2026-11-03"),
        ("PB01", "2026-11-02"), ("PB01", "2026-11-03")]
    # worker, grid, date, sessions, patrols, minutes, coverage, outside, day, period
    a_mon = _texts(panel, "PA01", MON)
    assert a_mon[3:] == ["1", "1", "40", f"{2 / hall['cells_a']:.0%}", "10", "✓ 达标",
                         "✗ 1/2"]
    assert a_mon[2].startswith("11-02")
    assert _texts(panel, "PA01", TUE)[3:] == ["0", "0", "0", "0%", "0", "✗ 未达标", "✗ 1/2"]
    assert _texts(panel, "PB01", MON)[3:6] == ["1", "1", "15"]
    assert _texts(panel, "PB01", MON)[8:] == ["✓ 达标", "✓ 1/1"]
    assert _texts(panel, "PB01", TUE)[8:] == ["休息", "✓ 1/1"]  # off duty: not owed
    # Only PA01's Tuesday is marked, and it sorts first (the missed days lead).
    marked = [(w["worker"], d["date"]) for i, (w, d) in enumerate(panel.shown_rows())
              if panel.proxy.index(i, 0).data(MISSED_ROLE)]
    assert marked == [("PA01", "2026-11-03")]
    assert panel.row_of("PA01", TUE.isoformat()) == 0
    tue = panel.row_of("PA01", TUE.isoformat())
    fg = Qt.ItemDataRole.ForegroundRole
    assert panel.proxy.index(tue, COL_DAY).data(fg).color() == MISSED
    assert panel.proxy.index(tue, COL_PERIOD).data(fg).color() == MISSED
    assert panel.proxy.index(panel.row_of("PB01", MON.isoformat()), COL_DAY).data(fg) is None
    # Seen on the Monday itself: Tuesday has not come (not missed), and a day not met yet
    # is today's, a warning in amber rather than a miss.
    panel.model.set_report(panel.report, today=MON)
    assert _texts(panel, "PA01", TUE)[8] == "未到"
    assert not any(panel.proxy.index(i, 0).data(MISSED_ROLE)
                   for i in range(panel.proxy.rowCount()))
    panel.model.set_report(panel.report, today=TUE)
    assert _texts(panel, "PA01", TUE)[8] == "今日进行中"
    assert panel.proxy.index(panel.row_of("PA01", TUE.isoformat()), COL_DAY).data(
        Qt.ItemDataRole.ForegroundRole).color() == OPEN
    panel.model.set_report(panel.report)
    panel.missed_box.setChecked(True)
    assert [(w["worker"], d["date"]) for w, d in panel.shown_rows()] == [
        ("PA01", "2026-11-03")]
    panel.missed_box.setChecked(False)
    # A click on a worker-day lists that day's sessions.
    panel.table.selectRow(panel.row_of("PA01", MON.isoformat()))
    cells = [[panel.sessions.item(i, j).text() for j in range(3)]
             for i in range(panel.sessions.rowCount())]
    assert cells == [["09:00", "09:40", "40"]]
    assert panel.sessions_title.text() == "员PA01 2026-11-02：1 段，共 40 分钟"
    # Sorting by patrol minutes, longest first: PA Mon 40, PB Mon 15, then the zeros.
    from widgets.patrol_panel import COL_MINUTES

    panel.table.sortByColumn(COL_MINUTES, Qt.SortOrder.DescendingOrder)
    assert [(w["worker"], d["date"]) for w, d in panel.shown_rows()][:2] == [
        ("PA01", "2026-11-02"), ("PB01", "2026-11-02")]


def test_street_filter_and_the_quanke_rule(hall, engine, qtbot):
    panel = _panel(engine, qtbot)
    _reload(panel, qtbot, lambda: panel.set_period(MON, TUE))
    qtbot.waitUntil(lambda: panel.street_combo.count() == 3, timeout=10000)  # all + 2 streets
    _reload(panel, qtbot, lambda: panel.set_street(hall["street_b"]))
    assert {w["worker"] for w, _ in panel.shown_rows()} == {"PB01"}
    _reload(panel, qtbot, lambda: panel.set_street(hall["street_a"]))
    assert {w["worker"] for w, _ in panel.shown_rows()} == {"PA01"}
    _reload(panel, qtbot, lambda: panel.set_street(None))
    # 全科网格: two patrols of at least two hours, five days a week.
    _reload(panel, qtbot, lambda: panel.rule_combo.setCurrentIndex(
        panel.rule_combo.findData("quanke")))
    assert (panel.min_patrols.value(), panel.min_minutes.value(),
            panel.days_per_week.value()) == (2, 120, 5)
    assert _texts(panel, "PA01", MON)[4] == "0"  # the 40-minute session is no patrol here
    assert _texts(panel, "PA01", MON)[8] == "✗ 未达标"
    assert _texts(panel, "PB01", MON)[8:] == ["✗ 未达标", "✗ 0/1"]
    # Configured by hand: one patrol of at least 20 minutes, one day a week.
    _reload(panel, qtbot, lambda: panel.min_patrols.setValue(1))
    _reload(panel, qtbot, lambda: panel.min_minutes.setValue(20))
    _reload(panel, qtbot, lambda: panel.days_per_week.setValue(1))
    assert _texts(panel, "PA01", MON)[8:] == ["✓ 达标", "✓ 1/1"]
    assert _texts(panel, "PB01", MON)[8:] == ["✗ 未达标", "✗ 0/1"]  # 15 < 20 minutes


def test_xlsx_export_has_numbers(hall, engine, qtbot, tmp_path):
    from openpyxl import load_workbook

    panel = _panel(engine, qtbot)
    _reload(panel, qtbot, lambda: panel.set_period(MON, TUE))
    out = tmp_path / "patrol.xlsx"
    with qtbot.waitSignal(panel.exported, timeout=30000):
        panel.export(str(out))
    wb = load_workbook(out)
    summary, days, sessions = wb.worksheets
    rows = {r[0]: r for r in summary.iter_rows(min_row=3, values_only=True)}
    # The mean coverage of the two days (each as the report rounds it: 4 places).
    assert rows["PA01"][6:11] == (1, 2, 40, pytest.approx(round(2 / hall["cells_a"], 4) / 2),
                                  "否")
    assert rows["PB01"][6:8] == (1, 1) and rows["PB01"][10] == "是"
    by_day = {(r[0], r[3].date()): r for r in days.iter_rows(min_row=2, values_only=True)}
    mon = by_day[("PA01", MON)]
    assert isinstance(mon[6], (int, float)) and mon[4:11] == (
        1, 1, 40, 10, 2, hall["cells_a"], round(2 / hall["cells_a"], 4))
    assert mon[12] == "是" and by_day[("PA01", TUE)][12] == "否"
    assert days["K2"].number_format == "0.0%"
    (s,) = [r for r in sessions.iter_rows(min_row=2, values_only=True) if r[0] == "PA01"]
    assert (s[3], s[4], s[5]) == (datetime(2026, 11, 2, 9, 0), datetime(2026, 11, 2, 9, 40),
                                  40)


def test_only_an_administrator_edits_a_schedule_from_the_board(hall, db_url, qtbot):
    from console.worker_board import WorkerBoardStore
    from widgets.worker_board import ScheduleDialog, WorkerBoard

    console = console_engine(db_url)
    for who in ("dispatcher1", "leader1", "wall1"):
        actor = authenticate(console, who, PASSWORD, f"ws-{who}")
        board = WorkerBoard(WorkerBoardStore(console, auto=False), actor=actor)
        qtbot.addWidget(board)
        assert board.schedule_button is None
        assert not any(b.text() == "值班表…" for b in board.findChildren(QPushButton))
    admin = authenticate(console, "admin1", PASSWORD, "ws-admin1")
    store = WorkerBoardStore(console, auto=False)
    board = WorkerBoard(store, actor=admin)
    qtbot.addWidget(board)
    with qtbot.waitSignal(store.changed, timeout=20000):
        store.refresh(patrol=True)
    assert board.schedule_button is not None and not board.schedule_button.isEnabled()
    assert board.select_worker("PA01") and board.schedule_button.isEnabled()
    item = board._items[board.selected_worker()["worker_id"]]
    assert item.text(8) == "—"  # no schedule yet
    board.schedule_button.click()
    dialog = board.dialog
    assert dialog.clear_box.isChecked()
    dialog.clear_box.setChecked(False)
    for box in dialog.days:
        box.setChecked(False)
    dialog.submit()  # no day chosen: one line, nothing sent
    assert dialog.error.text() == "请至少选择一个值班日。"
    for box in dialog.days[:5]:
        box.setChecked(True)
    dialog.start.setTime(dialog.start.time().fromString("08:30", "HH:mm"))
    dialog.end.setTime(dialog.end.time().fromString("17:30", "HH:mm"))
    with qtbot.waitSignal(store.changed, timeout=20000):  # saved, then the board re-read
        dialog.submit()
    row = next(r for r in roster(console) if r["code"] == "PA01")
    sched = schedule_of(row)
    assert (sched.days, sched.start, sched.end) == ((1, 2, 3, 4, 5), time(8, 30), time(17, 30))
    assert item.text(8) == "周一至周五 08:30–17:30"
    # A refusal from the database (a leader's session) is one line, and nothing changes.
    leader = authenticate(console, "leader1", PASSWORD, "ws-leader1")
    refused = ScheduleDialog(console, leader, row)
    qtbot.addWidget(refused)
    refused.clear_box.setChecked(True)
    refused.submit()
    qtbot.waitUntil(lambda: bool(refused.error.text()), timeout=20000)
    assert refused.error.text() == "只有管理员可以编辑值班表。"
    row = next(r for r in roster(console) if r["code"] == "PA01")
    assert schedule_of(row).days == (1, 2, 3, 4, 5)


def test_screenshot_of_the_workers_view(hall, db_url, tmp_path):
    from tests.test_screenshot import colours, png_size, shot

    result, out = shot(db_url, tmp_path, "--view workers --size 1400x900 --user leader1")
    assert result.returncode == 0, result.stderr
    assert png_size(out) == (1400, 900)
    assert colours(out) > 20
