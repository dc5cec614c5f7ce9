"""How the live map draws: static layers off the GUI thread, one image, overview, panel, export.

Real maps on a real PostgreSQL (the ``maps`` fixture of ``tests.test_map_live``);
what the operator sees is read from the grabbed canvas.  Where a test must
catch the map between two moments (a render started, not yet landed), it holds
the real rasteriser on a gate and lets it go; nothing is faked.
"""

from __future__ import annotations

import math
import threading

import pytest
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QApplication
from sqlalchemy import text

from maps.mercator import Projector
from tests.map_support import (
    INSIDE,
    add_workers,
    canvas_pixel,
    near,
    outline_share,
    report_at,
    small_district,
)
from tests.test_export_map import Page, points
from tests.test_map_live import maps, settle, tile_server  # noqa: F401 (fixture)
from widgets.map import static_layers

WGS = Projector("wgs84")
BACKGROUND = "#1b2230"  # the canvas colour (README: the map's dark theme)


def grid_interior(m) -> tuple[float, float]:
    """A point well inside the first grid (its label point: inside by construction)."""
    grid = m.data.territory.layer.features["grid"][0]
    return grid.label_x, grid.label_y


def around(m, x: float, y: float, pred, reach_px: float = 25.0) -> bool:
    """``pred`` holds for most of five pixels around a point (a label or a line may sit on
    one of them): the point and four more ``reach_px`` away."""
    d = reach_px * m.canvas.m_per_px()
    spots = [(x, y), (x + d, y), (x - d, y), (x, y + d), (x, y - d)]
    return sum(bool(pred(canvas_pixel(m, a, b))) for a, b in spots) >= 4


class Gate:
    """Holds the real rasteriser until ``open()``; records which thread called it."""

    def __init__(self, monkeypatch):
        self.event = threading.Event()
        self.on_gui_thread: list[bool] = []
        real = static_layers.rasterise

        def gated(document, view):
            self.on_gui_thread.append(threading.current_thread() is threading.main_thread())
            self.event.wait(10)  # never forever: a render on the GUI thread would hang here
            return real(document, view)

        monkeypatch.setattr(static_layers, "rasterise", gated)

    def open(self) -> None:
        self.event.set()


def test_static_layers_render_on_a_pool_thread_while_the_map_keeps_painting(
        qtbot, maps, engine, monkeypatch):  # noqa: F811
    small_district(engine)
    m = maps()
    x, y = grid_interior(m)
    m.canvas.set_view(x, y, 4.0)
    settle(qtbot, m)
    gate = Gate(monkeypatch)
    m.canvas.set_view(x, y, 1.0)  # a new zoom: a new image is needed
    qtbot.waitUntil(lambda: len(gate.on_gui_thread) == 1, timeout=10_000)
    assert gate.on_gui_thread == [False]  # the render runs off the GUI thread
    assert not m.ready()  # and the map knows its image is not the current one yet
    frames = m.workers.frames
    for _ in range(3):  # meanwhile the GUI thread paints frame after frame
        m.canvas.viewport().update()
        qtbot.waitUntil(lambda f=frames: m.workers.frames > f, timeout=5000)
        frames = m.workers.frames
    gate.open()
    settle(qtbot, m)
    assert m.boundaries._image_key[0] == pytest.approx(m.canvas.m_per_px(), rel=0.01)
    assert gate.on_gui_thread == [False] * len(gate.on_gui_thread)


def test_choropleth_and_boundaries_in_one_image_look_as_when_drawn_apart(qtbot, maps, engine):  # noqa: F811
    small_district(engine)
    m = maps()
    m.zoom_home()
    settle(qtbot, m)
    assert m.boundaries.guest is m.choropleth  # neighbours in the default order: one image
    together = m.canvas.grab().toImage()
    x, y = grid_interior(m)
    assert around(m, x, y, lambda c: not near(c, BACKGROUND, tol=6))  # the choropleth shows
    assert outline_share(m, together) > 0.7  # and the district's border
    # the workers moved between the two: each draws its own image again, the same picture
    m.set_order(["cases", "cameras", "boundaries", "workers", "choropleth", "basemap"])
    settle(qtbot, m)
    assert m.boundaries.guest is None and m.choropleth.host is None
    apart = m.canvas.grab().toImage()
    differ = sum(1 for yy in range(0, apart.height(), 4) for xx in range(0, apart.width(), 4)
                 if not near(apart.pixelColor(xx, yy), together.pixelColor(xx, yy).name(), 12))
    assert differ < 0.005 * (apart.width() // 4) * (apart.height() // 4)
    # back in the default order they merge again; hidden, the choropleth leaves the picture
    m.set_order(["cases", "workers", "cameras", "boundaries", "choropleth", "basemap"])
    assert m.boundaries.guest is m.choropleth
    m.set_layer_visible("choropleth", False)
    settle(qtbot, m)
    assert m.boundaries.guest is None
    assert around(m, x, y, lambda c: near(c, BACKGROUND, tol=6))


def test_tiles_show_through_the_choropleth(qtbot, maps, engine):  # noqa: F811
    pytest.importorskip("maps.tiles")
    small_district(engine)
    with tile_server("good") as url:
        m = maps(url)
        qtbot.waitUntil(lambda: m.basemap.fetched > 0, timeout=10_000)
        x, y = grid_interior(m)
        m.canvas.set_view(x, y, 2.0)
        settle(qtbot, m)
        qtbot.waitUntil(lambda: m.basemap.fetched >= 4, timeout=10_000)
        settle(qtbot, m)
        # a choropleth class (alpha at most 150/255) over magenta (255, 0, 255): red and
        # blue of the tile come through; over the dark canvas red would stay under 60
        assert around(m, x, y, lambda c: c.red() > 100 and c.blue() > 100 and c.green() < 100)


def test_zooming_out_past_the_image_shows_the_overview_until_the_sharp_one_lands(
        qtbot, maps, engine, monkeypatch):  # noqa: F811
    small_district(engine)
    m = maps()
    tx0, ty0, tx1, ty1 = m.data.territory.layer.bounds()
    # close to the district's south-west corner, where no border is near
    m.canvas.set_view(tx0 + 0.3 * (tx1 - tx0), ty0 + 0.3 * (ty1 - ty0), 1.0)
    settle(qtbot, m)
    qtbot.waitUntil(lambda: m.boundaries._overview is not None, timeout=15_000)
    old = m.boundaries._image_rect
    gate = Gate(monkeypatch)
    cx, cy = m.canvas.centre()
    m.canvas.set_view(cx, cy, 12.0)  # far out: the old image is a small box in the middle
    m.canvas.viewport().repaint()
    image = m.canvas.grab().toImage()
    dpr = image.devicePixelRatio()
    t = m.canvas.vb.childGroup.sceneTransform() * m.canvas.viewportTransform()
    box = t.mapRect(old)
    box = QRectF(box.left() * dpr, box.top() * dpr, box.width() * dpr, box.height() * dpr)
    assert box.width() < image.width() / 2  # the old image covers a small part only
    # the district's border, far outside the old image: the overview's
    assert outline_share(m, image, outside=box.adjusted(-4, -4, 4, 4)) > 0.7
    gate.open()
    settle(qtbot, m)
    assert m.boundaries._image_key[0] == pytest.approx(12.0, rel=0.01)


def test_the_layer_panel_is_a_column_beside_the_map_not_over_it(qtbot, maps, engine):  # noqa: F811
    small_district(engine)
    m = maps()
    assert m.layers_button.isChecked() and m.panel_column.isVisible()  # 1200 px: room for it
    canvas = m.canvas.geometry()
    panel = m.panel_column.geometry()
    assert not canvas.intersects(panel) and panel.left() >= canvas.right()
    width = m.canvas.width()
    m.layers_button.click()  # 图层 folds it: the map takes the room
    qtbot.waitUntil(lambda: m.canvas.width() > width, timeout=5000)
    assert not m.panel_column.isVisible()
    m.layers_button.click()
    qtbot.waitUntil(lambda: m.panel_column.isVisible() and m.canvas.width() == width,
                    timeout=5000)


def test_clusters_and_cameras_are_drawn_where_they_are(qtbot, maps, engine, actors):  # noqa: F811
    from tests.flows import report

    small_district(engine)
    lon0, lat0 = INSIDE
    for k in range(5):  # 5 cases within 40 m: one cluster at district zoom
        report(engine, actors, lon=lon0 + k * 0.0001, lat=lat0)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO camera (code, name, lon, lat, heading) "
                          "VALUES ('CAM901', '测试路口', 116.4160, 39.9240, 0)"))
    m = maps()
    qtbot.waitUntil(lambda: len(m.data.cases.layer) == 5 and len(m.data.cameras.layer) == 1,
                    timeout=10_000)
    x, y = WGS.forward(lon0 + 0.0002, lat0)
    m.canvas.set_view(x, y, 8.0)
    settle(qtbot, m)
    clusters = m.cases.clusters
    assert len(clusters) >= 1 and int(clusters.counts.sum()) == 5  # a cell edge may split them
    k = int(clusters.counts.argmax())
    r = m.cases.cluster_item.radius(int(clusters.counts[k]))
    cx, cy = float(clusters.x[k]), float(clusters.y[k])
    # the bubble's fill (blue, 215/255 opaque) below its white count
    bubble = canvas_pixel(m, cx, cy - 0.6 * r * 8.0)
    assert bubble.blue() > 120 and bubble.blue() > bubble.red() + 50, bubble.name()
    # the camera's dot, at street zoom
    kx, ky = WGS.forward(116.4160, 39.9240)
    m.canvas.set_view(kx, ky, 1.0)
    settle(qtbot, m)
    assert near(canvas_pixel(m, kx, ky), "#9fd3ff")  # README: cameras with their direction
    north = canvas_pixel(m, kx, ky + 12 * 1.0)  # 12 px north, inside the wedge (heading 0)
    south = canvas_pixel(m, kx, ky - 12 * 1.0)
    assert north.blue() > south.blue() + 15  # the wedge looks north, not south


def test_case_markers_share_one_symbol_per_look(qtbot, maps, engine, actors):  # noqa: F811
    """pyqtgraph's symbol atlas keys on the brush and pen objects: a fixed palette keeps
    one rendered symbol per look (status, class, urgency), whatever the number of cases."""
    from tests.flows import report

    small_district(engine)
    lon0, lat0 = INSIDE
    for k in range(6):  # six plain reported 事件, 30 m apart: six markers, one look
        report(engine, actors, lon=lon0 + k * 0.00035, lat=lat0)
    report(engine, actors, lon=lon0, lat=lat0 + 0.0004, severity="urgent")  # a second look
    m = maps()
    qtbot.waitUntil(lambda: len(m.data.cases.layer) == 7, timeout=10_000)
    x, y = WGS.forward(lon0 + 0.001, lat0)
    m.canvas.set_view(x, y, 0.8)  # street zoom: nothing clusters
    settle(qtbot, m)
    m.canvas.viewport().repaint()
    assert len(m.cases.rows_shown) == 7
    assert len(m.cases.scatter.fragmentAtlas) == 2


# -- export the current view ---------------------------------------------------------------


def _hall(engine, actors):
    from tests.flows import report

    small_district(engine)
    lon0, lat0 = INSIDE
    near_case = report(engine, actors, lon=lon0 + 0.0010, lat=lat0 + 0.0005)  # ~100 m away
    far_case = report(engine, actors, lon=lon0 - 0.0200, lat=lat0 - 0.0100)  # ~2 km away
    (_d1, dev1), (_d2, dev2) = add_workers(engine, 2)
    report_at(engine, dev1, lon0 - 0.0008, lat0)  # ~70 m
    report_at(engine, dev2, lon0 + 0.0200, lat0 + 0.0150)  # ~2.4 km
    return near_case, far_case


def test_export_the_current_view_from_the_map(qtbot, maps, engine, actors, tmp_path):  # noqa: F811
    near_case, far_case = _hall(engine, actors)
    m = maps()
    x, y = WGS.forward(*INSIDE)
    m.canvas.set_view(x, y, 0.8)  # 1200 × ~770 px: about 960 m × 600 m around INSIDE
    settle(qtbot, m)
    west, south, east, north = m.view_bounds()
    lon0, lat0 = INSIDE
    # the box is the view: centred on INSIDE, 0.8 m/px over the canvas, in degrees
    half_w = 0.8 * m.canvas.viewport().width() / 2 / (6378137.0 * math.pi / 180)
    assert (west + east) / 2 == pytest.approx(lon0, abs=1e-6)
    assert (east - west) / 2 == pytest.approx(half_w, rel=1e-3)
    assert south < lat0 < north and north - south < east - west
    out = tmp_path / "view.html"
    actions = {a.text(): a for a in m.export_menu.actions()}
    actions["导出当前视图为离线网页…"].trigger()
    dialog = m.export_dialog
    assert dialog is not None and dialog.isVisible()
    with qtbot.waitSignal(m.exported, timeout=30_000) as done:
        dialog.selectFile(str(out))
        dialog.accept()
        assert not m.export_button.isEnabled()  # one export at a time, in the background
    summary = done.args[0]
    assert summary.path == str(out) and summary.offline
    page = Page(out.read_text("utf-8"))
    numbers = [c["title"] for c in points(page, "cases")]
    assert any(near_case.number in t for t in numbers)
    assert not any(far_case.number in t for t in numbers)
    workers = [w["title"] for w in points(page, "workers")]
    assert len(workers) == 1 and "测试员0" in workers[0]
    assert not [link for link in page.links if link.startswith(("http://", "https://"))]
    assert m.export_button.isEnabled() and m.canvas.note.startswith("已导出")


def test_a_failed_export_says_why_in_one_line_and_writes_nothing(qtbot, maps, engine, actors,  # noqa: F811
                                                                  tmp_path):
    _hall(engine, actors)
    m = maps()
    with qtbot.waitSignal(m.export_failed, timeout=30_000) as failed:
        m.export_current_view(str(tmp_path / "view.txt"), offline=True)
    assert failed.args[0] == f"输出文件须以 .html 结尾：{tmp_path / 'view.txt'}。"
    assert "\n" not in m.canvas.note and m.canvas.note.startswith("导出失败：")
    assert list(tmp_path.iterdir()) == []
    assert m.export_button.isEnabled()


@pytest.fixture(autouse=True)
def _close_dialogs():
    yield
    for w in QApplication.topLevelWidgets():
        if w.objectName() == "mapExportDialog" and w.isVisible():
            w.reject()

