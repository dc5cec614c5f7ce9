"""The 综合评价 panel: the week of tests/test_kpi_metrics.py on screen, drill-down from street
to community to grid, a click on a number lists its cases in the console's queue."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text

from console.config import Settings
from db.engine import make_engine
from db.history_import import import_history
from db.metrics import METRICS, Period
from db.users import get_actor
from tests.kpi_support import place_codes, setup_hall, write_history
from widgets.app import make_app
from widgets.kpi.panel import COL_BAR, COL_NAME, COL_RANK, TABLE_METRICS, KpiPanel

WEEK = Period(date(2025, 3, 3), date(2025, 3, 10))


@pytest.fixture
def hall(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("GRID_TZ", "Asia/Shanghai")
    setup_hall(engine, tmp_path)
    assert import_history(engine, write_history(tmp_path / "history.jsonl")).loaded == 11
    with engine.connect() as conn:
        ids = dict(conn.execute(text('SELECT number, id FROM "case"')).all())
    return {"codes": place_codes(engine), "ids": ids}


@pytest.fixture
def panel(qtbot, engine, hall):
    make_app()
    p = KpiPanel(engine, None, "zh")
    qtbot.addWidget(p)
    p.resize(1400, 700)
    p.show()
    qtbot.waitUntil(lambda: p.is_loaded, timeout=20_000)
    with qtbot.waitSignal(p.loaded, timeout=20_000):
        p.set_period(WEEK)
    return p


def cell(p: KpiPanel, row: int, metric: str) -> str:
    return p.table.item(row, 3 + TABLE_METRICS.index(metric)).text()


def test_the_week_on_screen_ranked_with_bars(panel, hall):
    tiles = {m: panel.tiles[m].text().split("\n")[1] for m in METRICS}
    # the district's week (test_kpi_metrics.DISTRICT["week"])
    assert tiles["reported"] == "8" and tiles["due"] == "9" and tiles["closed"] == "6"
    assert tiles["closure"] == "66.7%" and tiles["ontime_closure"] == "55.6%"
    assert tiles["rework"] == "11.1%"
    # by street (the default grouping): A 80 % on time, B 25 %
    assert panel.grouping() == "street" and panel.table.rowCount() == 2
    a, b = hall["codes"]["A"]["street"], hall["codes"]["B"]["street"]
    assert [panel.table.item(i, COL_NAME).data(0x101) for i in range(2)] == [a, b]
    assert [panel.table.item(i, COL_RANK).text() for i in range(2)] == ["1", "2"]
    assert panel.table.item(0, COL_BAR).text() == "80.0%"
    assert panel.table.item(0, COL_BAR).data(0x100) == pytest.approx(1.0)  # the best: full bar
    assert panel.table.item(1, COL_BAR).data(0x100) == pytest.approx(0.25 / 0.8)
    assert cell(panel, 1, "rework") == "25.0%" and cell(panel, 0, "dispatch_accuracy") == "100.0%"


def test_drill_down_street_community_grid_and_back(qtbot, panel, hall):
    codes = hall["codes"]["A"]
    with qtbot.waitSignal(panel.loaded, timeout=20_000):
        assert panel.drill_into(0)  # street A → its community
    assert panel.grouping() == "community" and panel.table.rowCount() == 1
    assert panel.table.item(0, COL_NAME).data(0x101) == codes["community"]
    with qtbot.waitSignal(panel.loaded, timeout=20_000):
        assert panel.drill_into(0)  # → its grids: A's with data, its neighbour without
    assert panel.grouping() == "grid"
    keys = [panel.table.item(i, COL_NAME).data(0x101) for i in range(panel.table.rowCount())]
    assert codes["grid"] in keys and all(k.startswith(codes["community"]) for k in keys)
    other = [i for i, k in enumerate(keys) if k != codes["grid"]]
    assert all(cell(panel, i, "closure") == "无数据" for i in other)
    assert not panel.drill_into(0)  # nothing below a grid
    assert "›" in panel.crumb_label.text()
    with qtbot.waitSignal(panel.loaded, timeout=20_000):
        panel.drill_up()
    assert panel.grouping() == "community"
    with qtbot.waitSignal(panel.loaded, timeout=20_000):
        panel.drill_up()
    assert panel.grouping() == "street" and panel.table.rowCount() == 2


def test_a_click_on_a_number_asks_for_its_cases(qtbot, panel, hall):
    ids = hall["ids"]
    with qtbot.waitSignal(panel.cases_requested, timeout=20_000) as got:
        panel.tiles["closed"].click()
    assert sorted(got.args[0]) == sorted(ids[n] for n in ("C1", "C2", "C3", "C4", "C7", "C12"))
    assert "结案数" in got.args[1] and "2025-03-03" in got.args[1]
    with qtbot.waitSignal(panel.cases_requested, timeout=20_000) as got:
        # street B's 按期结案率: the case that missed it
        panel._cell_clicked(1, 3 + TABLE_METRICS.index("ontime_closure"))
    assert got.args[0] == [ids["C4"]] and "未达标" in got.args[1]


def test_exports_from_the_panel(qtbot, panel, tmp_path):
    from openpyxl import load_workbook
    from pypdf import PdfReader

    with qtbot.waitSignal(panel.message, timeout=30_000):
        panel.export("xlsx", str(tmp_path / "w.xlsx"))
    with qtbot.waitSignal(panel.message, timeout=30_000):
        panel.export("pdf", str(tmp_path / "w.pdf"))
    assert load_workbook(tmp_path / "w.xlsx")["全区"]["D2"].value == 8  # reported
    assert "综合评价" in PdfReader(tmp_path / "w.pdf").pages[0].extract_text()


def test_the_console_lists_the_cases_behind_a_number_in_its_queue(qtbot, db_url, hall, tmp_path):
    from widgets.main_window import MainWindow

    make_app()
    engine = make_engine(db_url)
    win = MainWindow(engine, get_actor(engine, "leader1", "ws-test"),
                     Settings(database_url=db_url, data_dir=tmp_path), start_feed=False,
                     keep_layout=False)
    qtbot.addWidget(win)
    win.resize(1600, 1000)
    win.show()
    try:
        qtbot.waitUntil(lambda: win.store.is_loaded, timeout=15_000)
        open_count = win.queue.proxy.rowCount()
        assert open_count == 3  # C5, C9, C10: the queue holds open cases
        win.kpi_dock.show()
        win.kpi_dock.raise_()
        qtbot.waitUntil(lambda: win.kpi.is_loaded, timeout=20_000)
        with qtbot.waitSignal(win.kpi.loaded, timeout=20_000):
            win.kpi.set_period(WEEK)
        win.kpi.tiles["due"].click()  # 9 cases, 6 of them closed
        qtbot.waitUntil(lambda: win.queue.proxy.rowCount() == 9, timeout=15_000)
        shown = {win.queue.proxy.case_at(i).number for i in range(9)}
        assert shown == {"C1", "C2", "C3", "C4", "C5", "C6", "C7", "C10", "C12"}
        assert win.queue.drill_bar.isVisible() and "应结案数" in win.queue.drill_label.text()
        win.queue.drill_back.click()  # back to the queue: the closed cases go again
        qtbot.waitUntil(lambda: win.queue.proxy.rowCount() == open_count, timeout=15_000)
        assert not win.queue.drill_bar.isVisible()
        assert all(win.store.get(hall["ids"][n]) is None for n in ("C1", "C4", "C12"))
    finally:
        win.shutdown()
        win.close()
        engine.dispose()


def test_the_handover_dialog_hands_over_and_takes_over(qtbot, engine, db_url, hall):
    from db.users import add_user, authenticate
    from tests.conftest import PASSWORD
    from tests.kpi_support import console_engine
    from widgets.kpi.handover_dialog import HandoverDialog

    make_app()
    add_user(engine, "leader2", "leader", PASSWORD, "周值班")
    console = console_engine(db_url)
    try:
        first = authenticate(console, "leader1", PASSWORD, "ws-1")
        d = HandoverDialog(console, first, "zh")
        qtbot.addWidget(d)
        qtbot.waitSignal(d.report_loaded, timeout=20_000).wait()
        assert "交接班报告" in d.report_view.toPlainText()
        d.notes_edit.setPlainText("C10 超期未结，请跟进")
        with qtbot.waitSignal(d.done_step, timeout=20_000):
            d.submit_button.click()
        second = HandoverDialog(console, authenticate(console, "leader2", PASSWORD, "ws-2"), "zh")
        qtbot.addWidget(second)
        qtbot.waitSignal(second.report_loaded, timeout=20_000).wait()
        assert second.pending_list.count() == 1
        assert "C10 超期未结" in second.pending_list.item(0).text()
        with qtbot.waitSignal(second.done_step, timeout=20_000) as step:
            second.ack_button.click()
        assert step.args[0].startswith("已接班")
        with console.connect() as conn:
            actions = conn.execute(text("SELECT action, actor_name FROM handover_log "
                                        "ORDER BY seq")).all()
        assert [tuple(a) for a in actions] == [("handover", "刘值班"), ("acknowledge", "周值班")]
        viewer = HandoverDialog(console, authenticate(console, "dispatcher1", PASSWORD, "w"))
        qtbot.addWidget(viewer)
        assert not viewer.submit_button.isEnabled() and not viewer.ack_button.isEnabled()
    finally:
        console.dispose()
