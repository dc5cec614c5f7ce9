"""The video wall's behaviour (README: Video wall): layouts, placing cameras, focus on the
main stream, groups on tour, layouts saved per user and per wall, the case's cameras.

Real widgets (pytest-qt), real decoders on streams made here (H.264 files: the main
stream 640×360 and the sub-stream 320×180 of each camera, so a tile's picture says
which one it shows), a real database for the directory and the saved layouts.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt
from PySide6.QtGui import QDropEvent

from console.video.decoder import TileState
from console.video.wall_model import LAYOUTS, WallState, page_of
from db.cameras import add_camera
from db.users import authenticate
from tests.conftest import PASSWORD
from tests.video_support import make_h264_file
from widgets.video.tile import CAMERA_MIME

LON, LAT = 116.41, 39.92
M_PER_DEG = 111_195.0


@pytest.fixture
def console(db_url):
    from db.engine import make_engine, role_url

    if os.environ.get("GRID_DATABASE_URL"):
        pytest.skip("a shared server's grid_console needs its password")
    eng = make_engine(role_url(db_url, "grid_console"))
    yield eng
    eng.dispose()


@pytest.fixture
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    main, sub = folder / "main.mp4", folder / "sub.mp4"
    make_h264_file(main, frames=50, size=(640, 360))
    make_h264_file(sub, frames=50, size=(320, 180))
    return str(main), str(sub)


@pytest.fixture
def cams(engine, clips):
    """Ten cameras east of the point, 20 m apart, all in group 东四; CAM-00 looks at it."""
    main, sub = clips
    k = M_PER_DEG * math.cos(math.radians(LAT))
    codes = []
    for i in range(10):
        code = f"CAM-{i:02d}"
        add_camera(engine, None, code=code, name=f"测试{i}", lon=LON + (20 + 20 * i) / k,
                   lat=LAT, heading=270 if i == 0 else 90, view_angle=60, url=main,
                   sub_url=sub, groups=["东四"])
        codes.append(code)
    return codes


def panel_for(qtbot, engine, user: str, keep_layout: bool = False, current=None):
    from widgets.video.panel import VideoPanel

    actor = authenticate(engine, user, PASSWORD, f"ws-{user}")
    panel = VideoPanel(engine, actor, "zh", current or (lambda: None), keep_layout=keep_layout)
    qtbot.addWidget(panel)
    panel.resize(1200, 700)
    panel.show()
    panel.start()
    qtbot.waitUntil(lambda: panel.directory.is_loaded and panel.layout_loaded, timeout=10_000)
    return panel


def visible(panel) -> list:
    return [t for t in panel.wall.tiles if t.isVisible()]


def test_every_layout_shows_its_tiles(qtbot, console, cams):
    panel = panel_for(qtbot, console, "dispatcher1")
    wall = panel.wall
    for name, count in (("1", 1), ("2x2", 4), ("3x3", 9), ("4x4", 16), ("1+5", 6),
                        ("1+7", 8)):
        wall.set_layout(name)
        qtbot.waitUntil(lambda n=count: len(visible(panel)) == n, timeout=3_000)
    wall.set_layout("1+5")
    qtbot.wait(50)
    big, small = wall.tiles[0], wall.tiles[1]
    # The large tile spans two rows and two columns of the 3×3 grid.
    assert abs(big.width() - (2 * small.width() + wall.grid.spacing())) <= 2
    assert abs(big.height() - (2 * small.height() + wall.grid.spacing())) <= 2
    wall.set_layout("1+7")
    qtbot.wait(50)
    assert abs(wall.tiles[0].width() - (3 * wall.tiles[1].width()
                                        + 2 * wall.grid.spacing())) <= 3
    panel.shutdown()


def test_a_camera_goes_to_the_selected_tile_else_the_first_free_one(qtbot, console, cams):
    panel = panel_for(qtbot, console, "dispatcher1")
    wall = panel.wall
    wall.set_layout("2x2")
    wall.show_camera("CAM-03")  # as a click on the map does
    wall.show_camera("CAM-04")
    assert wall.state.tiles == ["CAM-03", "CAM-04", None, None]
    wall.show_camera("CAM-03")  # already on the wall: selected, not doubled
    assert wall.selected == 0 and wall.state.tiles.count("CAM-03") == 1
    wall.select_tile(3)
    wall.show_camera("CAM-05")
    assert wall.state.tiles == ["CAM-03", "CAM-04", None, "CAM-05"]
    tile = wall.tiles[3]
    qtbot.waitUntil(lambda: tile.status.state == TileState.LIVE and tile.current is not None,
                    timeout=15_000)
    assert tile.current.source_size == (320, 180)  # the grid shows the sub-stream
    panel.shutdown()


def drop(tile, code: str, origin: int = -1) -> None:
    mime = QMimeData()
    mime.setData(CAMERA_MIME, f"{code}\n{origin}".encode())
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.MoveAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    tile.dropEvent(event)


def test_drag_a_camera_from_the_list_or_another_tile(qtbot, console, cams):
    panel = panel_for(qtbot, console, "dispatcher1")
    wall = panel.wall
    wall.set_layout("2x2")
    items = [wall.camera_list.item(i) for i in range(wall.camera_list.count())]
    item = next(it for it in items if it.data(Qt.ItemDataRole.UserRole) == "CAM-07")
    mime = wall.camera_list.mimeData([item])  # what a drag out of the list carries
    assert mime.hasFormat(CAMERA_MIME)
    code, origin = bytes(mime.data(CAMERA_MIME)).decode().split("\n")
    drop(wall.tiles[2], code, int(origin))
    assert wall.state.tiles == [None, None, "CAM-07", None]
    drop(wall.tiles[0], "CAM-01")
    drop(wall.tiles[2], "CAM-01", 0)  # tile 0 dragged onto tile 2: the two swap
    assert wall.state.tiles == ["CAM-07", None, "CAM-01", None]
    panel.shutdown()


def test_double_click_focuses_on_the_main_stream_and_back(qtbot, console, cams):
    panel = panel_for(qtbot, console, "dispatcher1")
    wall = panel.wall
    wall.show_cameras(["CAM-01", "CAM-02", "CAM-03", "CAM-04"], "2x2")
    for t in wall.tiles[:4]:
        qtbot.waitUntil(lambda t=t: t.current is not None, timeout=15_000)
    tile = wall.tiles[1]
    qtbot.mouseDClick(tile, Qt.MouseButton.LeftButton, pos=QPoint(20, 20))
    assert wall.focus_index == 1
    assert visible(panel) == [tile]
    qtbot.waitUntil(lambda: tile.current is not None and tile.current.source_size == (640, 360),
                    timeout=15_000)  # the main stream
    assert tile.focus
    # The tiles out of sight are not decoded while the focused one fills the wall.
    for other in (wall.tiles[0], wall.tiles[2], wall.tiles[3]):
        qtbot.waitUntil(lambda o=other: o.decoder.status().state == TileState.PAUSED,
                        timeout=5_000)
    qtbot.mouseDClick(tile, Qt.MouseButton.LeftButton, pos=QPoint(20, 20))
    assert wall.focus_index is None and len(visible(panel)) == 4
    qtbot.waitUntil(lambda: tile.current is not None and tile.current.source_size == (320, 180),
                    timeout=15_000)  # back on the sub-stream
    qtbot.waitUntil(lambda: wall.tiles[0].decoder.status().state == TileState.LIVE,
                    timeout=15_000)
    panel.shutdown()


def test_a_group_fills_the_layout_page_by_page_and_tours(qtbot, console, cams):
    panel = panel_for(qtbot, console, "dispatcher1")
    wall = panel.wall
    wall.set_layout("2x2")
    wall.set_group("东四")
    assert wall.state.tiles == cams[0:4]
    assert wall.page_label.text() == "1/3"  # ten cameras, four a page
    wall.next_page()
    assert wall.state.tiles == cams[4:8]
    wall.next_page()
    assert wall.state.tiles == [*cams[8:10], None, None]
    wall.next_page()
    assert wall.state.tiles == cams[0:4]  # round again
    assert page_of(cams, "3x3", 1) == [*cams[9:10], *[None] * 8]
    wall.set_tour(1)  # the next page every second
    qtbot.waitUntil(lambda: wall.state.tiles == cams[4:8], timeout=3_000)
    qtbot.waitUntil(lambda: wall.state.tiles == [*cams[8:10], None, None], timeout=3_000)
    wall.set_tour(0)
    panel.shutdown()


def test_the_layout_follows_the_user_and_no_one_else(qtbot, console, cams):
    first = panel_for(qtbot, console, "dispatcher1", keep_layout=True)
    first.wall.show_cameras(["CAM-02", "CAM-05", "CAM-06"], "3x3")
    first.wall.set_tour(20)
    first.shutdown()  # leaving saves at once what was not saved yet
    again = panel_for(qtbot, console, "dispatcher1", keep_layout=True)
    state = again.wall.state
    assert state.layout == "3x3" and state.tiles[:3] == ["CAM-02", "CAM-05", "CAM-06"]
    assert state.tour_s == 20
    other = panel_for(qtbot, console, "dispatcher2", keep_layout=True)
    assert other.wall.state.tiles == [None] * 4  # the default, not someone else's
    again.shutdown()
    other.shutdown()


def test_a_leader_arranges_a_wall_display_and_the_wall_reads_it(db_url, console, cams):
    from db.engine import make_engine, role_url
    from db.errors import Forbidden
    from db.video_layouts import load_video_layout, save_wall_layout, wall_logins

    assert "wall1" in wall_logins(console)
    leader = authenticate(console, "leader1", PASSWORD, "ws-lead")
    state = WallState("1+5", ["CAM-00", "CAM-01", None, None, None, None]).to_json()
    save_wall_layout(console, leader, "wall1", state)
    wall_engine = make_engine(role_url(db_url, "grid_wall"))
    try:
        wall = authenticate(wall_engine, "wall1", PASSWORD, "hall-screen-1")
        assert load_video_layout(wall_engine, wall) == state
    finally:
        wall_engine.dispose()
    dispatcher = authenticate(console, "dispatcher1", PASSWORD, "ws-d")
    with pytest.raises(Forbidden):
        save_wall_layout(console, dispatcher, "wall1", {"layout": "1", "tiles": [None]})


def test_the_selected_case_offers_its_nearby_cameras_those_that_see_it_first(
        qtbot, console, cams):
    panel = panel_for(qtbot, console, "dispatcher1")
    panel.case_shown({"id": 1, "number": "20261201-00001", "lon": LON, "lat": LAT})
    wall = panel.wall
    qtbot.waitUntil(lambda: wall.nearby_list.count() > 0, timeout=10_000)
    codes = [wall.nearby_list.item(i).data(Qt.ItemDataRole.UserRole)
             for i in range(wall.nearby_list.count())]
    # All ten lie within 300 m: CAM-00 (20 m, looking west at the point) first, then the
    # others by distance (they look east, away), nine at most: CAM-09 is left out.
    assert codes == ["CAM-00", *[f"CAM-{i:02d}" for i in range(1, 9)]]
    wall.load_nearby()
    assert wall.state.layout == "3x3" and wall.state.tiles == codes
    panel.shutdown()


def test_an_emergency_report_loads_its_cameras_on_the_console_at_once(qtbot, db_url, tmp_path,
                                                                        console, cams):
    """Every console: the new emergency arrives by the change feed, its cameras go up."""
    from console.config import Settings
    from db.case_actions import perform
    from tests.flows import REPORT
    from widgets.app import make_app
    from widgets.main_window import MainWindow

    make_app()
    actor = authenticate(console, "dispatcher1", PASSWORD, "ws-emergency")
    win = MainWindow(console, actor, Settings(database_url=db_url, data_dir=tmp_path),
                     keep_layout=False)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    try:
        qtbot.waitUntil(lambda: win.store.is_loaded and win.live.feed.online, timeout=15_000)
        intake = authenticate(console, "intake1", PASSWORD, "ws-intake")
        perform(console, intake, "report", **{**REPORT, "lon": LON, "lat": LAT,
                                               "severity": "emergency"})
        qtbot.waitUntil(lambda: "CAM-00" in win.video.wall.state.tiles, timeout=15_000)
        assert win.video.wall.state.tiles[0] == "CAM-00"  # the one that sees it, first
        assert win.video.wall.restore_button.isVisible()  # and the way back is offered
    finally:
        win.shutdown()
        win.close()


def test_after_cameras_are_put_up_the_operators_own_layout_comes_back(qtbot, console, cams):
    """An emergency (or 附近摄像头全部上墙) replaces the wall; 恢复原布局 restores what the
    operator had, however many times it was replaced meanwhile, and is then gone."""
    panel = panel_for(qtbot, console, "dispatcher1")
    wall = panel.wall
    assert not wall.restore_button.isVisible()
    wall.set_layout("3x3")
    wall.show_camera("CAM-07")
    wall.show_camera("CAM-08")
    own = wall.state.to_json()
    wall.show_cameras(["CAM-00", "CAM-01"])  # what an emergency does
    assert wall.state.tiles[:2] == ["CAM-00", "CAM-01"] and wall.restore_button.isVisible()
    wall.show_cameras(["CAM-02"])  # a second emergency: still back to the operator's own
    wall.restore_button.click()
    assert wall.state.to_json() == own
    assert wall.state.layout == "3x3" and wall.state.tiles[:2] == ["CAM-07", "CAM-08"]
    assert not wall.restore_button.isVisible()
    panel.shutdown()


def test_a_camera_clicked_or_dragged_from_the_map_goes_on_the_wall(qtbot, db_url, tmp_path,
                                                                   console, cams):
    from console.config import Settings
    from widgets.app import make_app
    from widgets.main_window import MainWindow

    make_app()
    actor = authenticate(console, "dispatcher1", PASSWORD, "ws-map")
    win = MainWindow(console, actor, Settings(database_url=db_url, data_dir=tmp_path),
                     start_feed=False, keep_layout=False)
    qtbot.addWidget(win)
    win.show()
    try:
        qtbot.waitUntil(lambda: win.map.data.cameras.is_loaded, timeout=15_000)
        cam_id = next(i for i, m in win.map.data.cameras.meta.items() if m["code"] == "CAM-06")
        win.map.click_item(("camera", cam_id))
        assert "CAM-06" in win.video.wall.state.tiles
        assert win.video_dock.isVisible()
        # Dragged from the map instead: a left drag that starts on a camera carries it.
        layer = win.map.data.cameras.layer
        target = next(i for i, m in win.map.data.cameras.meta.items() if m["code"] == "CAM-08")
        row = int(np.flatnonzero(layer.ids == target)[0])
        win.map.set_center_zoom(LON, LAT, 18)
        mime = win.map.camera_drag_mime(float(layer.x[row]), float(layer.y[row]))
        assert mime is not None and mime.hasFormat(CAMERA_MIME)
        code, origin = bytes(mime.data(CAMERA_MIME)).decode().split("\n")
        drop(win.video.wall.tiles[3], code, int(origin))
        assert win.video.wall.state.tiles[3] == "CAM-08"
        assert win.map.camera_drag_mime(float(layer.x[row]) + 500, float(layer.y[row])) is None
    finally:
        win.shutdown()
        win.close()


def test_layouts_are_what_the_readme_lists():
    assert set(LAYOUTS) == {"1", "2x2", "3x3", "4x4", "1+5", "1+7"}
    assert [len(LAYOUTS[k][1]) for k in ("1", "2x2", "3x3", "4x4", "1+5", "1+7")] == \
        [1, 4, 9, 16, 6, 8]
    bad = WallState.from_json({"layout": "5x5", "tiles": "x", "tour_s": -1})
    assert bad.layout == "2x2" and bad.tiles == [None] * 4 and bad.tour_s == 0


def test_screenshot_of_the_video_view_shows_live_tiles(db_url, tmp_path, engine):
    """``screenshot OUT.png --view video --layout 2x2``: the wall once its tiles are live."""
    from PySide6.QtGui import QColor, QImage

    from tests.cli_runner import cli
    from tests.video_support import MjpegTestServer, colour_frame

    # Cameras slow to start (their first frame 4 s after the connection): the picture is
    # taken once they are live, not after a fixed wait.
    cameras = [MjpegTestServer(fps=10, first_frame_delay_s=4.0) for _ in range(4)]
    for i, cam in enumerate(cameras):
        add_camera(engine, None, code=f"SHOT-{i}", name=f"截图{i}", lon=LON, lat=LAT,
                   url=cam.url, sub_url=cam.url)
    out = tmp_path / "wall.png"
    try:
        r = cli(db_url, f"screenshot {out} --view video --layout 2x2 --size 1280x720 "
                "--user dispatcher1", PASSWORD)
    finally:
        for cam in cameras:
            cam.stop()
    assert r.returncode == 0, r.stderr
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1280, 720)
    palette = {colour_frame(k, (1, 1))[0, 0].tobytes() for k in range(8)}

    def near_palette(c: QColor) -> bool:
        return any(max(abs(c.red() - p[0]), abs(c.green() - p[1]), abs(c.blue() - p[2])) <= 30
                   for p in palette)

    # The clips' flat colours fill the tiles: sample the right part of the window (the
    # camera list is on the left) on a grid; most samples are a clip colour.
    samples = [QColor(image.pixel(x, y)) for x in range(400, 1280, 40) for y in range(80, 720, 40)]
    assert sum(map(near_palette, samples)) > len(samples) // 2


def test_the_large_tile_shows_the_main_stream_the_small_ones_the_sub_stream(qtbot, console, cams):
    panel = panel_for(qtbot, console, "dispatcher1")
    wall = panel.wall
    wall.show_cameras(["CAM-01", "CAM-02", "CAM-03", "CAM-04", "CAM-05", "CAM-06"], "1+5")
    big, small = wall.tiles[0], wall.tiles[1]
    qtbot.waitUntil(lambda: big.current is not None and small.current is not None,
                    timeout=15_000)
    assert big.current.source_size == (640, 360) and big.focus
    assert small.current.source_size == (320, 180) and not small.focus
    panel.shutdown()
