"""The live map in the console: selection both ways, layers, clusters, dispatch, report here.

Real windows on a real PostgreSQL (pytest-qt); what the operator sees is
checked on the grabbed canvas (the colour at a marker's position), what the
window does through its own widgets (queue selection, dialogs).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from PySide6.QtCore import Qt
from sqlalchemy import text

from console.config import Settings
from db.engine import make_engine
from db.territory_queries import locate_point
from db.users import get_actor
from maps.layers import WORKER_STATUS_CODE
from maps.mercator import Projector
from tests.flows import case_in, report
from tests.map_support import (
    INSIDE,
    add_workers,
    canvas_pixel,
    near,
    report_at,
    screen_pos,
    small_district,
)
from widgets.app import make_app
from widgets.main_window import MainWindow
from widgets.map import style

WGS = Projector("wgs84")


@pytest.fixture
def windows(qtbot, db_url, tmp_path):
    """Main windows on their own engines; the map ready before the test goes on."""
    make_app()
    opened = []

    def open_window(user: str = "dispatcher1", workstation: str = "ws-map"):
        engine = make_engine(db_url)
        actor = get_actor(engine, user, workstation)
        win = MainWindow(engine, actor, Settings(database_url=db_url, data_dir=tmp_path))
        qtbot.addWidget(win)
        win.resize(1600, 1000)
        win.show()
        opened.append((win, engine))
        qtbot.waitUntil(lambda: win.store.is_loaded and win.live.feed.online, timeout=15_000)
        qtbot.waitUntil(win.map.ready, timeout=20_000)
        return win

    yield open_window
    for win, engine in opened:
        win.shutdown()
        win.close()
        engine.dispose()


def settle(qtbot, live_map) -> None:
    qtbot.waitUntil(lambda: live_map.ready() and not live_map.workers.pending, timeout=15_000)
    qtbot.wait(30)


def look_at(qtbot, live_map, x: float, y: float, m_per_px: float = 0.8) -> None:
    live_map.canvas.set_view(x, y, m_per_px)
    settle(qtbot, live_map)


def test_selection_flows_both_ways_between_map_and_queue(qtbot, windows, engine, actors):
    small_district(engine)
    a = report(engine, actors, lon=116.4100, lat=39.9200)
    b = report(engine, actors, lon=116.4230, lat=39.9310)
    win = windows()
    m = win.map
    qtbot.waitUntil(lambda: m.data.cases.layer.row_of(b.case_id) >= 0, timeout=10_000)
    ax, ay = m.data.cases.layer.position(a.case_id)
    assert (ax, ay) == pytest.approx(WGS.forward(116.41, 39.92))
    # map → queue and detail: a mouse click on the case's marker
    look_at(qtbot, m, ax, ay)
    qtbot.mouseClick(m.canvas.viewport(), Qt.MouseButton.LeftButton, pos=screen_pos(m, ax, ay))
    qtbot.waitUntil(lambda: (win.queue.current_case() is not None
                             and win.queue.current_case().id == a.case_id), timeout=5000)
    qtbot.waitUntil(lambda: win.current is not None and win.current["id"] == a.case_id,
                    timeout=10_000)
    assert a.number in win.detail.header.text()
    # queue → map: centred on the case and ringed
    assert win.queue.select_case(b.case_id)
    bx, by = m.data.cases.layer.position(b.case_id)
    qtbot.waitUntil(lambda: m.selected_case == b.case_id, timeout=5000)
    cx, cy = m.canvas.centre()
    assert math.hypot(cx - bx, cy - by) < 2 * m.canvas.m_per_px()
    assert m.overlay.selected == pytest.approx((bx, by))


def test_layer_toggles_hide_and_show(qtbot, windows, engine, actors):
    small_district(engine)
    (did, dev), = add_workers(engine, 1)
    report_at(engine, dev, 116.4150, 39.9250)
    case = report(engine, actors, lon=116.4100, lat=39.9200)
    win = windows()
    m = win.map
    layer = m.data.positions.layer
    qtbot.waitUntil(lambda: layer.row_of(did) >= 0 and np.isfinite(layer.x[layer.row_of(did)]),
                    timeout=10_000)
    wx, wy = layer.position(did)
    look_at(qtbot, m, wx, wy)
    on_duty = style.WORKER_STATUS_COLOURS["on_duty"]
    assert near(canvas_pixel(m, wx, wy), on_duty)
    item = m.panel.list.findItems("网格员", Qt.MatchFlag.MatchExactly)[0]
    item.setCheckState(Qt.CheckState.Unchecked)
    settle(qtbot, m)
    assert not near(canvas_pixel(m, wx, wy), on_duty)
    assert m.hit(wx, wy) is None
    item.setCheckState(Qt.CheckState.Checked)
    settle(qtbot, m)
    assert near(canvas_pixel(m, wx, wy), on_duty)
    assert m.hit(wx, wy) == ("worker", did)
    # the same for cases
    qtbot.waitUntil(lambda: m.data.cases.layer.row_of(case.case_id) >= 0, timeout=10_000)
    cx, cy = m.data.cases.layer.position(case.case_id)
    look_at(qtbot, m, cx, cy)
    reported = style.CASE_STATUS_COLOURS["reported"]
    assert near(canvas_pixel(m, cx, cy), reported)
    cases_item = m.panel.list.findItems("案件", Qt.MatchFlag.MatchExactly)[0]
    cases_item.setCheckState(Qt.CheckState.Unchecked)
    settle(qtbot, m)
    assert not near(canvas_pixel(m, cx, cy), reported)
    cases_item.setCheckState(Qt.CheckState.Checked)
    settle(qtbot, m)
    assert near(canvas_pixel(m, cx, cy), reported)


def test_a_cluster_never_hides_an_urgent_or_overdue_case(qtbot, windows, engine, actors):
    small_district(engine)
    lon0, lat0 = INSIDE
    plain = [report(engine, actors, lon=lon0 + k * 0.0001, lat=lat0) for k in range(5)]
    urgent = report(engine, actors, lon=lon0 + 0.00005, lat=lat0 + 0.0001, severity="urgent")
    late = report(engine, actors, lon=lon0 + 0.00015, lat=lat0 - 0.0001)
    with engine.begin() as conn:  # its stage deadline passed an hour ago
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text('UPDATE "case" SET stage_due_at = now() - interval \'1 hour\', '
                          "stage_started_at = now() - interval '3 hours' WHERE id = :i"),
                     {"i": late.case_id})
    win = windows()
    m = win.map
    ids = [c.case_id for c in (*plain, urgent, late)]
    win.store.refresh([late.case_id])
    cases = m.data.cases
    qtbot.waitUntil(lambda: all(cases.layer.row_of(i) >= 0 for i in ids), timeout=10_000)
    qtbot.waitUntil(lambda: cases.store.get(late.case_id).overdue(time.time()), timeout=10_000)
    cases.flush()
    x, y = cases.layer.position(plain[0].case_id)
    look_at(qtbot, m, x, y, m_per_px=8.0)  # district zoom: a 450 m cluster cell
    clusters = m.cases.clusters
    shown = set(cases.layer.ids[m.cases.rows_shown].tolist())
    clustered = {int(cases.layer.ids[r]) for members in clusters.members for r in members}
    assert {urgent.case_id, late.case_id} <= shown
    assert not {urgent.case_id, late.case_id} & clustered
    assert {c.case_id for c in plain} <= clustered
    for case in (urgent, late):  # on top of the cluster's bubble, clickable
        assert m.hit(*cases.layer.position(case.case_id)) == ("case", case.case_id)
    m.set_clustering(False)
    settle(qtbot, m)
    assert set(ids) <= set(cases.layer.ids[m.cases.rows_shown].tolist())
    assert len(m.cases.clusters) == 0


def test_dispatch_on_the_map_offers_the_nearest_available_worker(qtbot, windows, engine,
                                                                 actors):
    small_district(engine)
    (near_id, near_dev), (_far_id, far_dev) = add_workers(engine, 2)
    lon0, lat0 = INSIDE
    report_at(engine, near_dev, lon0 + 0.002, lat0)  # about 170 m east
    report_at(engine, far_dev, lon0, lat0 + 0.004)  # about 445 m north
    case = case_in(engine, actors, "filed", lon=lon0, lat=lat0)
    win = windows()
    m = win.map
    qtbot.waitUntil(lambda: win.store.get(case.case_id) is not None, timeout=10_000)
    assert win.queue.select_case(case.case_id)
    qtbot.waitUntil(lambda: win.current is not None and win.current["id"] == case.case_id,
                    timeout=10_000)
    qtbot.waitUntil(lambda: len(m.overlay.candidates) == 2, timeout=5000)
    labels = [c[2] for c in m.overlay.candidates]
    metres = 2 * 6371008.8 * math.asin(math.sqrt(
        math.cos(math.radians(lat0)) ** 2 * math.sin(math.radians(0.002) / 2) ** 2))
    assert labels[0] == f"测试员0 {metres:.0f} m"  # nearest first, with its distance
    assert set(m.dispatch_codes) == {"MW000", "MW001"}
    m.click_item(("worker", near_id))
    qtbot.waitUntil(lambda: win.dialog is not None and win.dialog.action == "dispatch",
                    timeout=5000)
    assert win.dialog.widgets["worker"].currentData() == "MW000"
    win.dialog.reject()


def test_report_here_fills_position_grid_and_address(qtbot, windows, engine):
    small_district(engine)
    win = windows("intake1")
    m = win.map
    x, y = WGS.forward(*INSIDE)
    place = m.place_at(x, y)
    where = locate_point(engine, *INSIDE)
    assert place["lon"] == pytest.approx(INSIDE[0]) and place["lat"] == pytest.approx(INSIDE[1])
    assert place["grid"] == where["grid"]["code"]
    assert where["street"]["name"] in place["address"]
    assert where["community"]["name"] in place["address"]
    win._report_here(place)
    dialog = win.dialog
    assert dialog.action == "report"
    assert float(dialog.widgets["lon"].text()) == pytest.approx(INSIDE[0], abs=1e-6)
    assert float(dialog.widgets["lat"].text()) == pytest.approx(INSIDE[1], abs=1e-6)
    assert dialog.widgets["address"].text() == place["address"]
    assert dialog.findChild(type(dialog.error), "reportGrid").text() == where["grid"]["code"]
    dialog.reject()


def test_worker_card_and_camera_choice(qtbot, windows, engine):
    small_district(engine)
    (did, dev), = add_workers(engine, 1)
    report_at(engine, dev, 116.4150, 39.9250)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO camera (code, name, lon, lat, heading) "
                          "VALUES ('CAM900', '测试路口', 116.4120, 39.9220, 90)"))
    win = windows()
    m = win.map
    qtbot.waitUntil(lambda: len(m.data.cameras.layer) == 1 and m.data.positions.layer.row_of(
        did) >= 0, timeout=10_000)
    m.click_item(("worker", did))
    assert m.card.isVisible()
    body = m.card.body.text()
    assert "测试员0" in m.card.title.text() and "秒前" in body and "在岗" in body
    cx, cy = m.data.cameras.layer.position(m.data.cameras.layer.ids[0])
    look_at(qtbot, m, cx, cy)
    with qtbot.waitSignal(m.camera_chosen, timeout=3000) as got:
        qtbot.mouseClick(m.canvas.viewport(), Qt.MouseButton.LeftButton,
                         pos=screen_pos(m, cx, cy))
    assert got.args == ["CAM900"]


def test_search_finds_case_worker_and_grid(qtbot, windows, engine, actors):
    small_district(engine)
    (did, dev), = add_workers(engine, 1)
    report_at(engine, dev, 116.4150, 39.9250)
    case = report(engine, actors, address="东四北大街 100 号")
    win = windows()
    m = win.map
    qtbot.waitUntil(lambda: m.data.cases.layer.row_of(case.case_id) >= 0, timeout=10_000)
    assert ("case", case.case_id) in [t for _, t in m.search_results(case.number)]
    assert ("worker", did) in [t for _, t in m.search_results("测试员0")]
    with engine.connect() as conn:
        grid = conn.execute(text("SELECT code FROM grid ORDER BY code LIMIT 1")).scalar_one()
    assert ("code", grid) in [t for _, t in m.search_results(grid)]
    assert ("case", case.case_id) in [t for _, t in m.search_results("东四北大街")]
    m.search.setText("测试员0")
    m.run_search()
    assert m.card.isVisible()
    wx, wy = m.data.positions.layer.position(did)
    cx, cy = m.canvas.centre()
    assert math.hypot(cx - wx, cy - wy) < 5
    assert WORKER_STATUS_CODE["on_duty"] == int(m.data.positions.layer.status[0])
