"""The demo's cameras (README: Video wall, "The demo"): generated scenes, made once and
cached, served live as MJPEG over HTTP on loopback by the simulator's video server.
"""

from __future__ import annotations

from sqlalchemy import text

from console.video.decoder import Decoder, TileState
from console.video.demo import DemoVideo, current, resolve, wait_until_prepared
from console.video.scene import MAIN_SIZE, SUB_SIZE, scene_paths


def frames_of(decoder: Decoder) -> list:
    got = []
    decoder.frame_ready.connect(lambda: got.append(decoder.mailbox.take()))
    return got


def test_a_demo_camera_plays_its_scene_over_http_and_the_scene_is_made_once(qtbot, tmp_path):
    demo = DemoVideo(tmp_path / "video-demo", {"CAM001": "王府井1号路口"},
                     prepare_all=False).start()
    try:
        assert current() is demo
        url = resolve("demo://CAM001/sub")
        assert url == f"http://127.0.0.1:{demo.server.port}/cam/CAM001/sub.mjpg"
        assert resolve("rtsp://10.0.0.5/main") == "rtsp://10.0.0.5/main"  # others as they are
        assert wait_until_prepared(demo, ["CAM001"], 120)
        scene = scene_paths(demo.root, "CAM001")
        made = scene.main.stat().st_mtime_ns, scene.sub.stat().st_mtime_ns
        subs, mains = Decoder(url, "demo-sub"), Decoder(resolve("demo://CAM001/main"), "main")
        got_sub, got_main = frames_of(subs), frames_of(mains)
        for d in (subs, mains):
            d.set_target_size(2000, 2000)  # no scaling: the stream's own size comes out
            d.start()
        qtbot.waitUntil(lambda: len(got_sub) >= 5 and len(got_main) >= 5, timeout=20_000)
        assert subs.status().state == mains.status().state == TileState.LIVE
        assert got_sub[-1].source_size == SUB_SIZE and got_main[-1].source_size == MAIN_SIZE
        assert demo.server.clients >= 2  # each tile its own HTTP connection
        # Movement: the pictures change from frame to frame.
        assert (got_main[0].image != got_main[-1].image).any()
        subs.shutdown()
        mains.shutdown()
        assert demo.prepare("CAM001").is_set()  # made already: not made again
        assert (scene.main.stat().st_mtime_ns, scene.sub.stat().st_mtime_ns) == made
    finally:
        demo.stop()
    assert current() is None and resolve("demo://CAM001/sub") is None


def test_a_camera_the_demo_does_not_have_is_an_error_on_its_tile(qtbot, tmp_path):
    demo = DemoVideo(tmp_path / "video-demo", {"CAM001": "x"}, prepare_all=False).start()
    dec = Decoder(resolve("demo://CAM999/sub"), "missing")
    dec.start()
    try:
        qtbot.waitUntil(lambda: dec.status().state == TileState.ERROR, timeout=15_000)
        assert "404" in dec.status().reason
    finally:
        dec.shutdown()
        demo.stop()


def test_the_simulator_starts_and_stops_the_demo_video(engine, tmp_path):
    from console.simulator import Simulator

    demo = DemoVideo(tmp_path / "video-demo", {}, prepare_all=False)
    sim = Simulator(engine, tick_s=0.05, video=demo).start()
    try:
        assert current() is demo
    finally:
        sim.stop()
    assert current() is None


def test_demo_cameras_get_their_scenes_by_the_migration(engine):
    """An embedded demo seeded before 0007 had cameras without streams: 0007 gives them
    ``demo://CODE/main`` and ``/sub``; a database that is not the demo is left alone."""
    from alembic import command

    from db import migrate

    def to(rev: str, down: bool) -> None:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL ROLE grid_owner"))
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(cfg, rev)

    to("0006", down=True)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO camera (code, name, lon, lat) VALUES "
                          "('CAM001', '旧摄像头', 116.41, 39.92)"))
    to("head", down=False)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT url FROM camera")).scalar_one() == ""  # not the demo
    to("0006", down=True)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO grid_meta (key, value) VALUES ('demo', 'dongcheng') "
                          "ON CONFLICT (key) DO NOTHING"))
    to("head", down=False)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT url, sub_url FROM camera")).one()
    assert tuple(row) == ("demo://CAM001/main", "demo://CAM001/sub")
