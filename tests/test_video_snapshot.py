"""A snapshot of a tile is attached to the case as evidence and reads back as the same image.

README (Video wall, "Snapshots"): the frame the tile shows, at the resolution it was
decoded in, as a lossless PNG; the case's version rises by one and its log gets an
``attach_snapshot`` entry naming the camera and the frame's time, with the image's
SHA-256, so the hash chain covers the evidence.  Hall operators may; a wall, an
administrator, a department on another's case, a closed case may not.  Every write
goes through a console's own login (``grid_console``) and ``grid_attach_snapshot``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import text

from console.video.decoder import Decoder
from console.video.images import decode_image, encode_png, frame_rgb
from db.cameras import add_camera
from db.errors import BadInput, Forbidden, NotFound
from db.snapshots import attach_snapshot, attachment_data
from db.users import authenticate
from tests.conftest import PASSWORD, table_counts
from tests.flows import REPORT
from tests.video_support import make_h264_file


@pytest.fixture
def console(db_url):
    import os

    from db.engine import make_engine, role_url

    if os.environ.get("GRID_DATABASE_URL"):
        pytest.skip("a shared server's grid_console needs its password")
    eng = make_engine(role_url(db_url, "grid_console"))
    yield eng
    eng.dispose()


@pytest.fixture
def logins(console):
    names = ("intake1", "dispatcher1", "dept_huanwei", "dept_shizheng", "verifier1",
             "leader1", "admin1", "wall1")
    return {n: authenticate(console, n, PASSWORD, f"ws-{n}") for n in names}


@pytest.fixture
def camera(engine):
    return add_camera(engine, None, code="CAM-T1", name="东四北大街测试口", lon=116.41,
                      lat=39.92, heading=90, view_angle=60)


def _report(console, logins):
    from db.case_actions import perform

    return perform(console, logins["intake1"], "report", **REPORT)


def _frame(qtbot, tmp_path, size=(320, 180)):
    path = tmp_path / "cam.mp4"
    make_h264_file(path, frames=30, size=size)
    dec = Decoder(str(path), "snap", target_size=(160, 90))
    got = []
    dec.frame_ready.connect(lambda: got.append(dec.mailbox.take()))
    dec.start()
    qtbot.waitUntil(lambda: len(got) >= 3, timeout=15_000)
    frame = dec.with_source(got[-1])
    dec.shutdown()
    return frame


def test_a_snapshot_is_attached_and_reads_back_as_the_same_image(qtbot, tmp_path, engine,
                                                                 console, logins, camera):
    from db.audit import verify

    case = _report(console, logins)
    frame = _frame(qtbot, tmp_path)
    rgb = frame_rgb(frame.source)
    assert rgb.shape == (180, 320, 3)  # the decoded resolution, not the tile's 160×90
    png = encode_png(rgb)
    taken = datetime.fromtimestamp(frame.wall_time, UTC)
    result = attach_snapshot(console, logins["dispatcher1"], case.number, "CAM-T1", taken, png)

    back = attachment_data(console, result.attachment_id)
    assert back["data"] == png
    assert back["mime"] == "image/png"
    assert back["sha256"] == hashlib.sha256(png).hexdigest() == result.sha256
    assert np.array_equal(decode_image(back["data"]), rgb)  # the same image, pixel for pixel
    assert back["uploaded_by"] == "王伟"
    # It is history: its own log entry, the version one up, the camera and the time in it.
    assert back["action"] == "attach_snapshot" and back["log_seq"] == result.seq
    assert result.version == case.version + 1
    with engine.connect() as conn:
        entry = conn.execute(text(
            "SELECT actor_name, actor_role, from_status, to_status, case_version, payload "
            "FROM case_log WHERE seq = :s"), {"s": result.seq}).one()
        version = conn.execute(text('SELECT version FROM "case" WHERE number = :n'),
                               {"n": case.number}).scalar_one()
    assert (entry.actor_name, entry.actor_role) == ("王伟", "dispatcher")
    assert entry.from_status == entry.to_status == "reported"
    assert entry.case_version == version == case.version + 1
    assert entry.payload["camera"] == "CAM-T1"
    assert entry.payload["camera_name"] == "东四北大街测试口"
    assert datetime.fromisoformat(entry.payload["taken_at"]) == taken
    assert entry.payload["sha256"] == result.sha256
    assert verify(engine, 0, tmp_path / "anchors.jsonl").ok  # the chain holds, evidence in it


def test_the_case_goes_on_after_a_snapshot(tmp_path, console, logins, camera):
    """The next action expects the version the snapshot left (it is one more change)."""
    from db.case_actions import perform
    from db.errors import Conflict

    case = _report(console, logins)
    png = encode_png(np.full((8, 8, 3), 99, np.uint8))
    snap = attach_snapshot(console, logins["intake1"], case.number, "CAM-T1",
                           datetime.now(UTC), png)
    with pytest.raises(Conflict) as err:
        perform(console, logins["intake1"], "accept", case.number, case.version)
    assert "附加视频截图" in err.value.zh
    done = perform(console, logins["intake1"], "accept", case.number, snap.version)
    assert done.status == "accepted"


@pytest.mark.parametrize("who", ["wall1", "admin1"])
def test_a_wall_or_an_administrator_attaches_nothing(engine, console, logins, camera, who):
    case = _report(console, logins)
    png = encode_png(np.zeros((8, 8, 3), np.uint8))
    before = table_counts(engine)
    with pytest.raises(Forbidden):
        attach_snapshot(console, logins[who], case.number, "CAM-T1", datetime.now(UTC), png)
    assert table_counts(engine) == before


def test_the_database_refuses_a_role_the_console_would_let_through(engine, console, logins,
                                                                   camera):
    """Past the console's own check, grid_attach_snapshot decides (the wall's token)."""
    case = _report(console, logins)
    png = encode_png(np.zeros((8, 8, 3), np.uint8))
    before = table_counts(engine)
    wall = logins["wall1"]
    with console.connect() as conn:
        conn.execute(text("SELECT set_config('grid.session', :t, false)"), {"t": wall.token})
        with pytest.raises(Exception) as err:
            conn.execute(text("SELECT * FROM grid_attach_snapshot(:c, 'CAM-T1', now(), :d, "
                              "'x.png', 'ws')"), {"c": case.number, "d": png})
    assert "may not attach evidence" in str(err.value)
    assert table_counts(engine) == before


def test_an_attachment_cannot_be_written_around_the_function(engine, console, logins, camera):
    case = _report(console, logins)
    before = table_counts(engine)
    with console.connect() as conn:
        conn.execute(text("SELECT set_config('grid.session', :t, false), "
                          "set_config('grid.action', 'attach_snapshot', false)"),
                     {"t": logins["intake1"].token})
        with pytest.raises(Exception) as err:
            conn.execute(text(
                "INSERT INTO attachment (case_id, filename, mime, size, sha256, data, "
                "uploaded_by) VALUES (:i, 'x.png', 'image/png', 1, 'x', '\\x00', 'me')"),
                {"i": case.case_id})
    assert "refused by the database" in str(err.value) and "attach" in str(err.value)
    assert table_counts(engine) == before


def test_a_department_attaches_only_to_its_own_cases(engine, console, logins, camera):
    from db.case_actions import perform

    intake, disp = logins["intake1"], logins["dispatcher1"]
    r = _report(console, logins)
    r = perform(console, intake, "accept", r.number, r.version)
    r = perform(console, intake, "file", r.number, r.version)
    r = perform(console, disp, "dispatch", r.number, r.version, department="huanwei")
    png = encode_png(np.zeros((8, 8, 3), np.uint8))
    before = table_counts(engine)
    with pytest.raises(Forbidden):
        attach_snapshot(console, logins["dept_shizheng"], r.number, "CAM-T1",
                        datetime.now(UTC), png)
    assert table_counts(engine) == before
    ok = attach_snapshot(console, logins["dept_huanwei"], r.number, "CAM-T1",
                         datetime.now(UTC), png)
    assert ok.version == r.version + 1


def test_bad_snapshots_change_nothing(engine, console, logins, camera):
    from db.case_actions import perform

    case = _report(console, logins)
    png = encode_png(np.zeros((8, 8, 3), np.uint8))
    now = datetime.now(UTC)
    before = table_counts(engine)
    with pytest.raises(BadInput):  # not an image
        attach_snapshot(console, logins["intake1"], case.number, "CAM-T1", now, b"GIF? no")
    with pytest.raises(NotFound):
        attach_snapshot(console, logins["intake1"], case.number, "NO-SUCH", now, png)
    with pytest.raises(NotFound):
        attach_snapshot(console, logins["intake1"], "20990101-99999", "CAM-T1", now, png)
    with pytest.raises(Forbidden):  # a frame from tomorrow is no evidence
        attach_snapshot(console, logins["intake1"], case.number, "CAM-T1",
                        now + timedelta(days=1), png)
    assert table_counts(engine) == before
    r = perform(console, logins["intake1"], "reject", case.number, case.version,
                reason="重复上报")
    before = table_counts(engine)
    with pytest.raises(Forbidden):  # evidence goes to open cases
        attach_snapshot(console, logins["intake1"], r.number, "CAM-T1", now, png)
    assert table_counts(engine) == before


def test_the_wall_attaches_the_frame_its_tile_shows(qtbot, tmp_path, engine, console, logins,
                                                    camera):
    """The window's path: a tile's snapshot button → the selected case."""
    from db.cameras import edit_camera
    from widgets.video.panel import VideoPanel

    clip = tmp_path / "wall.mp4"
    make_h264_file(clip, frames=50, size=(320, 180))
    edit_camera(engine, None, "CAM-T1", url=str(clip), sub_url=str(clip))
    case = _report(console, logins)
    panel = VideoPanel(console, logins["dispatcher1"], "zh", lambda: {"number": case.number},
                       keep_layout=False)
    qtbot.addWidget(panel)
    panel.resize(900, 500)
    panel.show()
    panel.start()
    qtbot.waitUntil(lambda: "CAM-T1" in panel.directory.cameras, timeout=10_000)
    panel.wall.show_cameras(["CAM-T1"], "1")
    tile = panel.wall.tiles[0]
    qtbot.waitUntil(lambda: tile.current is not None, timeout=15_000)
    landed = []
    panel.snapshot_attached.connect(landed.append)
    sent = []  # the frame the button sent: the one on the tile at that moment
    panel.wall.snapshot_requested.connect(lambda code, frame: sent.append((code, frame)))
    panel.wall.select_tile(0)
    panel.wall.snapshot_button.click()
    qtbot.waitUntil(lambda: landed == [case.number], timeout=15_000)
    assert [code for code, _ in sent] == ["CAM-T1"]
    shown = sent[0][1]
    with engine.connect() as conn:
        att = conn.execute(text(
            'SELECT a.id FROM attachment a JOIN "case" c ON c.id = a.case_id '
            "WHERE c.number = :n"), {"n": case.number}).scalar_one()
    back = attachment_data(engine, att)
    assert np.array_equal(decode_image(back["data"]), frame_rgb(shown.source))
    panel.shutdown()
