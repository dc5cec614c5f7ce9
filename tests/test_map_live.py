"""The map follows the field: gateway reports move markers on another console; bad input.

A real gateway on loopback takes the report (``tests.gateway_support``); the
console that shows it is a second map with its own engine, fed only by the
``grid_positions`` notification and its watermark.  Tile sources are real
HTTP servers on loopback and real files.
"""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QColor, QImage

from console.case_store import CaseStore
from console.map_stores import MapData
from db.engine import make_engine
from maps.mercator import Projector
from tests.gateway_support import Client, running_gateway
from tests.map_support import (
    INSIDE,
    add_workers,
    canvas_pixel,
    near,
    outline_share,
    report_at,
    small_district,
)
from widgets.app import make_app
from widgets.map import style
from widgets.map.map_widget import MapWidget

WGS = Projector("wgs84")
ON_DUTY = style.WORKER_STATUS_COLOURS["on_duty"]


@pytest.fixture
def maps(qtbot, db_url):
    """Stand-alone maps (case store + map data + widget), each on its own engine."""
    make_app()
    opened = []

    def open_map(basemap: str | None = None, listen: bool = True) -> MapWidget:
        engine = make_engine(db_url)
        store = CaseStore(engine)
        data = MapData(engine, store, listen=listen)
        widget = MapWidget(data, "zh", basemap)
        qtbot.addWidget(widget)
        widget.resize(1200, 800)
        widget.show()
        store.load()
        data.start()
        opened.append((widget, store, engine))
        qtbot.waitUntil(widget.ready, timeout=20_000)
        return widget

    yield open_map
    for widget, store, engine in opened:
        widget.shutdown()
        store.stop()
        widget.close()
        engine.dispose()


def settle(qtbot, m) -> None:
    qtbot.waitUntil(lambda: m.ready() and not m.workers.pending, timeout=15_000)
    qtbot.wait(30)


def test_a_report_through_the_gateway_moves_the_marker_on_another_console(
        qtbot, maps, engine, tmp_path):
    small_district(engine)
    (did, dev), = add_workers(engine, 1)
    # a minute ago: the gateway's report (whole seconds) must be the newer fix
    report_at(engine, dev, 116.4100, 39.9200, ts=datetime.now(UTC) - timedelta(minutes=1))
    m = maps()
    layer = m.data.positions.layer
    qtbot.waitUntil(lambda: layer.position(did) == pytest.approx(WGS.forward(116.41, 39.92)),
                    timeout=10_000)
    notified = m.data.positions.notifications
    # no timed re-read from here on: the new position can only come by the notification
    m.data.positions._poll.stop()
    new = (116.4135, 39.9234)
    nx, ny = WGS.forward(*new)
    m.canvas.set_view(nx, ny, 0.8)
    settle(qtbot, m)
    assert not near(canvas_pixel(m, nx, ny), ON_DUTY)  # nobody there yet
    with running_gateway(engine, tmp_path / "queue") as gw:
        client = Client(gw.port)
        status, body = client.get(id=dev, lat=new[1], lon=new[0], timestamp=int(time.time()))
        client.close()
        assert status == 200, body
        qtbot.waitUntil(lambda: layer.position(did) == pytest.approx((nx, ny)), timeout=10_000)
    assert m.data.positions.notifications > notified  # it came by NOTIFY, not by the poll
    settle(qtbot, m)
    assert near(canvas_pixel(m, nx, ny), ON_DUTY)  # and the marker is drawn there


def test_a_position_far_outside_is_drawn_only_inside_the_view(qtbot, maps, engine):
    small_district(engine)
    (_inside_id, inside_dev), (far_id, far_dev), (_edge_id, edge_dev) = add_workers(engine, 3)
    report_at(engine, inside_dev, *INSIDE)
    report_at(engine, far_dev, 121.4737, 31.2304)  # Shanghai, 1,000 km away
    report_at(engine, edge_dev, 179.99, 89.9)  # beyond Web Mercator's square world
    m = maps()
    layer = m.data.positions.layer
    qtbot.waitUntil(lambda: np.isfinite(layer.x).sum() == 3, timeout=10_000)
    assert np.all(np.isfinite(layer.y))  # the pole is clamped, never infinite
    m.zoom_home()
    settle(qtbot, m)
    x0, y0, x1, y1 = m.canvas.view_rect()
    tx0, ty0, tx1, ty1 = m.data.territory.layer.bounds()
    assert x0 <= tx0 and x1 >= tx1 and y0 <= ty0 and y1 >= ty1
    # fitted to the district along its tight side, not stretched to reach Shanghai
    assert min((x1 - x0) / (tx1 - tx0), (y1 - y0) / (ty1 - ty0)) < 1.2
    m.canvas.viewport().repaint()
    assert m.workers.visible_count == 1  # only the one inside the view is drawn
    fx, fy = layer.position(far_id)
    m.canvas.set_view(fx, fy, 2.0)
    settle(qtbot, m)
    m.canvas.viewport().repaint()
    assert m.workers.visible_count == 1
    assert near(canvas_pixel(m, fx, fy), ON_DUTY)


# -- tile sources ---------------------------------------------------------------------------


def _png(colour: str) -> bytes:
    image = QImage(256, 256, QImage.Format.Format_RGB32)
    image.fill(QColor(colour))
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    return bytes(data)


@contextmanager
def tile_server(kind: str) -> Iterator[str]:
    """'good' answers a magenta PNG for every tile, 'garbage' an HTML page, 'dead' drops."""
    tile = _png("#ff00ff")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if kind == "dead":
                self.connection.close()
                return
            body = tile if kind == "good" else b"<html>oops</html>"
            self.send_response(200)
            self.send_header("Content-Type", "image/png" if kind == "good" else "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{{z}}/{{x}}/{{y}}.png#datum=wgs84"
    finally:
        server.shutdown()
        server.server_close()


def _scene(engine) -> tuple[int, tuple[float, float]]:
    small_district(engine)
    (did, dev), = add_workers(engine, 1)
    report_at(engine, dev, *INSIDE)
    return did, WGS.forward(*INSIDE)


def test_tiles_from_a_server_on_loopback_are_drawn(qtbot, maps, engine):
    pytest.importorskip("maps.tiles")
    _did, (wx, wy) = _scene(engine)
    with tile_server("good") as url:
        m = maps(url)
        qtbot.waitUntil(lambda: m.basemap.fetched > 0, timeout=10_000)
        m.canvas.set_view(wx, wy, 1.0)
        settle(qtbot, m)
        m.set_layer_visible("choropleth", False)
        settle(qtbot, m)
        corner = canvas_pixel(m, wx + 300, wy + 200)
        assert near(corner, "#ff00ff")  # the basemap shows between the layers
        assert near(canvas_pixel(m, wx, wy), ON_DUTY)  # and the markers above it
        assert m.basemap.note == ""


@pytest.mark.parametrize("kind", ["garbage", "dead"])
def test_a_dead_or_garbage_tile_server_leaves_boundaries_and_markers(qtbot, maps, engine,
                                                                     kind):
    pytest.importorskip("maps.tiles")
    _did, (wx, wy) = _scene(engine)
    with tile_server(kind) as url:
        m = maps(url)
        m.canvas.set_view(wx, wy, 1.0)
        qtbot.waitUntil(lambda: m.basemap.failures > 0, timeout=15_000)
        settle(qtbot, m)
        assert m.basemap.note.startswith("底图不可用")
        assert m.canvas.note == m.basemap.note  # said quietly on the map
        assert near(canvas_pixel(m, wx, wy), ON_DUTY)
        assert m.boundaries._image is not None and m.boundaries.ready
        _assert_border_drawn(qtbot, m)


def _assert_border_drawn(qtbot, m) -> None:
    """The district's outline is on screen: its border colour where its outline runs."""
    m.zoom_home()
    settle(qtbot, m)
    assert outline_share(m) > 0.7


@pytest.mark.parametrize("spec", ["http://127.0.0.1:9/tiles.png", "NOT_A_FILE.mbtiles",
                                  "FAKE.mbtiles"])
def test_a_bad_basemap_setting_gives_a_clear_note_and_a_working_map(qtbot, maps, engine,
                                                                    tmp_path, spec):
    pytest.importorskip("maps.tiles")
    _did, (wx, wy) = _scene(engine)
    if spec == "FAKE.mbtiles":
        spec = str(tmp_path / "fake.mbtiles")
        (tmp_path / "fake.mbtiles").write_bytes(b"this is not an sqlite file at all" * 10)
    elif spec == "NOT_A_FILE.mbtiles":
        spec = str(tmp_path / "missing.mbtiles")
    m = maps(spec)
    qtbot.waitUntil(lambda: m.basemap.note != "", timeout=10_000)
    assert m.basemap.note.startswith("底图不可用：")
    assert m.basemap.source is None
    m.canvas.set_view(wx, wy, 1.0)
    settle(qtbot, m)
    assert near(canvas_pixel(m, wx, wy), ON_DUTY)
