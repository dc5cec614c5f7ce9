"""The map's replay mode on tracks and case logs made in the test, answers worked by hand.

Worker A walks east 10 m a minute for ten minutes (fixes each minute, 6 km/h), stands
from minute 10 to 22 (reported 0 km/h), then walks on to minute 30: one stop of 12
minutes.  Worker B reports at minutes 0, 5 and 35 (a 30-minute silence: B is absent at
T more than 10 minutes after a fix).  Worker C reported only before the window.  The
cases go through the workflow now, so the window reaches from three hours ago to a
minute from now.  References are plain queries: the newest fix at or before T within
the staleness bound, the newest log entry at or before T of each case.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import pytest
from sqlalchemy import text

from console.case_store import CaseStore
from console.map_stores import MapData
from console.replay_store import SPEEDS
from db.clock import hall_timezone
from db.engine import make_engine
from maps.layers import CASE_STATUSES
from maps.replay import DEFAULT_STALE_S
from tests.field_support import add_worker, open_cases_at, positions_at, put_fixes, territory
from tests.flows import report as report_case
from tests.flows import step as step_case
from tests.map_support import canvas_pixel, near
from widgets.app import make_app
from widgets.map.map_widget import MapWidget
from widgets.map.replay_items import STOP_COLOUR
from widgets.map.replay_timeline import MARK_COLOURS

NS = {"g": "http://www.topografix.com/GPX/1/1"}


@pytest.fixture
def world(engine, actors):
    place = territory(engine)
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    cell = place.own_cells[0]
    lon0, lat0 = cell.at(0.1, 0.5)
    step_deg = 100.0 / (111_320.0 * np.cos(np.radians(lat0)))  # about 100 m east
    _, a = add_worker(engine, "RA", place.own_grid, device="RP-A")
    _, b = add_worker(engine, "RB", place.own_grid, device="RP-B")
    _, c = add_worker(engine, "RC", place.own_grid, device="RP-C")
    fixes = []
    for k in range(31):
        if k <= 10:
            lon, v = lon0 + k * step_deg / 10, 6.0 if k < 10 else 0.0
        elif k <= 22:
            lon, v = lon0 + step_deg, 0.0 if k < 22 else 6.0
        else:
            lon, v = lon0 + step_deg + (k - 22) * step_deg / 10, 6.0
        fixes.append((base + timedelta(minutes=k), lon, lat0, v, place.own_grid))
    put_fixes(engine, a, fixes)
    bx, by = place.own_cells[1].at()
    put_fixes(engine, b, [(base + timedelta(minutes=m), bx, by, 2.0, place.own_grid)
                          for m in (0, 5, 35)])
    put_fixes(engine, c, [(base - timedelta(minutes=30), *place.own_cells[2].at(), 1.0,
                           place.own_grid)])
    one = report_case(engine, actors)
    two = report_case(engine, actors)
    for action in ("accept", "file", "dispatch", "acknowledge"):
        one = step_case(engine, actors, one, action)
    two = step_case(engine, actors, two, "reject")
    report_case(engine, actors)
    return {"base": base, "a": a, "b": b, "c": c, "lon0": lon0, "lat0": lat0,
            "step": step_deg, "t1": datetime.now(UTC) + timedelta(minutes=1)}


@pytest.fixture
def replay_map(qtbot, db_url, world):
    make_app()
    engine = make_engine(db_url)
    store = CaseStore(engine)
    data = MapData(engine, store, listen=False)
    m = MapWidget(data, "zh", None)  # closed below, after its renders (not by qtbot first)
    m.resize(1400, 900)
    m.show()
    store.load()
    data.start()
    qtbot.waitUntil(m.ready, timeout=20_000)
    m.set_replay(True, t0=world["base"], t1=world["t1"],
                 at=world["base"] + timedelta(minutes=3))
    r = m.replay
    qtbot.waitUntil(lambda: r.data is not None and r.ready(), timeout=20_000)
    yield m
    m.set_replay(False)
    # The static layers' last renders land here, not in the next test after their items
    # are gone (the follow and the views above keep them rendering).
    qtbot.waitUntil(lambda: m.boundaries.ready and m.choropleth.ready, timeout=20_000)
    m.shutdown()
    qtbot.wait(50)
    store.stop()
    m.close()
    m.deleteLater()
    qtbot.wait(50)
    engine.dispose()


def _settle(qtbot, m):
    r = m.replay
    qtbot.waitUntil(r.ready, timeout=10_000)
    qtbot.wait(20)


def test_replay_at_t_shows_what_positions_and_the_log_hold(qtbot, replay_map, engine, world):
    m, r = replay_map, replay_map.replay
    base = world["base"]
    proj = m.data.projector
    with engine.connect() as conn:
        log_times = conn.execute(text("SELECT at FROM case_log ORDER BY seq")).scalars().all()
    instants = [base, base + timedelta(minutes=3), base + timedelta(seconds=5 * 60 + 30),
                base + timedelta(minutes=15, seconds=1),  # B's fix of minute 5 is > 10 min old
                base + timedelta(minutes=29, seconds=59), base + timedelta(minutes=30),
                base + timedelta(minutes=40, seconds=1), world["t1"] - timedelta(seconds=61)]
    instants += log_times + [s + (u - s) / 2 for s, u in pairwise(log_times)]
    seen = set()
    for when in instants:
        r.clock.seek(when.timestamp())
        want = positions_at(engine, when, DEFAULT_STALE_S)
        layer = r.worker_layer
        assert sorted(layer.ids.tolist()) == sorted(want), when
        for did, (lon, lat) in want.items():
            x, y = proj.forward(lon, lat)
            assert layer.position(did) == pytest.approx((float(x), float(y)), abs=1e-6)
        seen.add(tuple(sorted(want)))
        cases = {int(i): CASE_STATUSES[int(s)] for i, s in zip(
            r.case_layer.ids.tolist(), r.case_layer.status.tolist(), strict=True)}
        assert cases == open_cases_at(engine, when), when
    # Everyone, only A, only B, nobody: each was met.
    a, b = world["a"], world["b"]
    assert {(a, b), (a,), (b,), ()} <= seen
    assert world["c"] not in r.data.devices  # no fix in the window: nowhere at any T
    assert len(open_cases_at(engine, log_times[-1])) == 2  # one dispatched + acknowledged, one new


def test_play_advances_t_by_speed_times_elapsed_and_steps(qtbot, replay_map, world):
    r = replay_map.replay
    base = world["base"].timestamp()
    fake = [100.0]
    r.clock.monotonic = lambda: fake[0]
    r.bar.speed_combo.setCurrentIndex(SPEEDS.index(20))
    start = r.t
    r.bar.play_button.click()
    assert r.clock.playing
    fake[0] += 3.0
    r.clock.tick()
    assert r.t == pytest.approx(start + 20 * 3.0, abs=1e-6)
    r.bar.speed_combo.setCurrentIndex(SPEEDS.index(60))
    fake[0] += 0.5
    r.clock.tick()
    assert r.t == pytest.approx(start + 60.0 + 60 * 0.5, abs=1e-6)
    r.bar.play_button.click()
    assert not r.clock.playing
    fake[0] += 10.0
    r.clock.tick()
    assert r.t == pytest.approx(start + 90.0, abs=1e-6)  # paused: T stays
    # Step without a selected worker: a minute; with one: to their next / previous fix.
    r.clock.seek(base + 190.0)
    r.bar.step_button.click()
    assert r.t == pytest.approx(base + 250.0, abs=1e-6)
    r.select(world["a"])
    r.clock.seek(base + 190.0)
    r.bar.step_button.click()
    assert r.t == pytest.approx(base + 240.0, abs=1e-6)  # A's fix of minute 4
    r.bar.back_button.click()
    assert r.t == pytest.approx(base + 180.0, abs=1e-6)  # and of minute 3
    # Real play on the real clock: T moves forward by itself.
    r.clock.monotonic = time.monotonic
    before = r.t
    r.toggle_play()
    qtbot.waitUntil(lambda: r.t > before, timeout=5000)
    r.toggle_play()


def test_timeline_marks_at_their_fractions(qtbot, replay_map, engine, world):
    r = replay_map.replay
    t0, t1 = world["base"].timestamp(), world["t1"].timestamp()
    with engine.connect() as conn:
        reports = conn.execute(text(
            "SELECT extract(epoch FROM at)::float8 FROM case_log WHERE action = 'report' "
            "ORDER BY at")).scalars().all()
        dispatches = conn.execute(text(
            "SELECT extract(epoch FROM at)::float8 FROM case_log WHERE action = 'dispatch'"
        )).scalars().all()
    tl = r.bar.timeline
    assert tl.fractions("report") == pytest.approx([(a - t0) / (t1 - t0) for a in reports])
    assert tl.fractions("dispatch") == pytest.approx([(a - t0) / (t1 - t0)
                                                      for a in dispatches])
    assert tl.fractions("close") == []
    # Drawn where they lie: the report row of the strip at the first report's fraction.
    r.clock.seek(t0)  # T's line at the far left, away from the marks
    qtbot.wait(20)
    image = tl.strip.grab().toImage()
    left, width = tl.groove()
    x = round(left + tl.fractions("report")[0] * width)
    dpr = image.devicePixelRatio()
    colours = [image.pixelColor(int((x + dx) * dpr), int(4 * dpr)) for dx in (-1, 0, 1)]
    assert any(near(c, MARK_COLOURS["report"].name(), 30) for c in colours)
    mid = round(left + 0.5 * width)
    assert not near(image.pixelColor(int(mid * dpr), int(4 * dpr)),
                    MARK_COLOURS["report"].name(), 30)


def test_follow_recentres_on_the_selected_worker(qtbot, replay_map, world):
    m, r = replay_map, replay_map.replay
    base = world["base"]
    r.select(world["a"])
    for minute in (2, 8, 27):
        r.clock.seek((base + timedelta(minutes=minute)).timestamp())
        cx, cy = m.canvas.centre()
        assert (cx, cy) == pytest.approx(r.worker_layer.position(world["a"]), abs=0.5)
    # Panning by hand stops following; T moving no longer recentres.
    m.canvas.user_moved.emit()
    assert not r.following and not r.bar.follow_box.isChecked()
    centre = m.canvas.centre()
    r.clock.seek((base + timedelta(minutes=29)).timestamp())
    assert m.canvas.centre() == pytest.approx(centre)


def test_stops_drawn_with_their_duration(qtbot, replay_map, world):
    m, r = replay_map, replay_map.replay
    base, a = world["base"], world["a"]
    trip = r.data.totals[a]
    assert [(s["start"] - base.timestamp(), s["seconds"]) for s in trip["stops"]] == [
        (600.0, 720.0)]  # minute 10 to 22
    r.side.scope.setCurrentIndex(r.side.scope.findData("window"))  # the whole window's
    row = r.side.row_of(a)
    assert r.side.cell_text(row, 6) == "1"
    assert r.side.cell_text(row, 3) == "0:12"  # stopped 12 minutes
    r.clock.seek((base + timedelta(minutes=14)).timestamp())
    assert [s for s in r.stop_labels() if s[0] == a] == []  # standing 4 minutes: no stop yet
    r.clock.seek((base + timedelta(minutes=17)).timestamp())
    assert [s for s in r.stop_labels() if s[0] == a] == [(a, "7分")]
    r.clock.seek((base + timedelta(minutes=40)).timestamp())
    assert [s for s in r.stop_labels() if s[0] == a] == [(a, "12分")]
    # Drawn on the map at the standing point.
    x, y = m.data.projector.forward(world["lon0"] + world["step"], world["lat0"])
    m.canvas.set_view(float(x), float(y), 1.0)
    _settle(qtbot, m)
    # The marker's corners (the "P" is in its middle) are the stop's colour.
    corners = [canvas_pixel(m, float(x) + dx, float(y) + dy)
               for dx in (-5.0, 5.0) for dy in (-5.0, 5.0)]
    assert sum(near(c, STOP_COLOUR.name(), 40) for c in corners) >= 3, [
        c.name() for c in corners]
    # A shorter threshold finds no more stops here; a longer one none at all.
    r.side.stop_spin.setValue(15)
    qtbot.waitUntil(lambda: r.data.stop_min_s == 900.0, timeout=10_000)
    assert r.data.totals[a]["stops"] == []
    assert [s for s in r.stop_labels() if s[0] == a] == []


def test_gpx_export_written_and_read_back(qtbot, replay_map, world, tmp_path):
    r = replay_map.replay
    r.select(world["a"])
    assert r.bar.gpx_button.isEnabled()
    r.bar.gpx_button.click()
    dialog = r.dialog
    assert dialog is not None and dialog.isVisible()  # open, and the loop still turns
    out = tmp_path / "a.gpx"
    with qtbot.waitSignal(r.gpx_written, timeout=10_000) as got:
        dialog.selectFile(str(out))
        dialog.accept()
    assert got.args == [str(out)]
    doc = ET.parse(out).getroot()
    pts = doc.findall(".//g:trkpt", NS)
    assert len(pts) == 31  # minutes 0…30
    assert pts[0].find("g:time", NS).text == world["base"].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert float(pts[10].get("lon")) == pytest.approx(world["lon0"] + world["step"], abs=1e-7)
    assert doc.find(".//g:trk/g:name", NS).text.endswith("RA")


def test_clicking_a_replayed_point_shows_its_time(qtbot, replay_map, world):
    m, r = replay_map, replay_map.replay
    when = world["base"] + timedelta(minutes=8, seconds=20)
    r.clock.seek(when.timestamp())
    x, y = r.worker_layer.position(world["a"])
    m.canvas.set_view(x, y, 1.0)
    _settle(qtbot, m)
    found = r.hit(x, y)
    assert found == ("worker", world["a"])
    r.click(x, y)
    fix_time = (world["base"] + timedelta(minutes=8)).astimezone(hall_timezone())
    assert r.info.isVisible()
    assert f"{fix_time:%H:%M:%S}" in r.info.text() and "6.0 km/h" in r.info.text()
    assert r.selected == world["a"]
    # Leaving replay returns to live: the live items back, the replay's hidden.
    m.replay_button.click()
    assert not m.in_replay
    assert m.workers.isVisible() and m.trails.isVisible()
    assert not r.workers.isVisible() and not r.bar.isVisible()


def test_totals_table_up_to_t_and_for_the_whole_window(qtbot, replay_map, world):
    """A walks 10 m a minute for 10 minutes (reported 6 km/h), stands from minute 10 to
    22, walks on to 30; by hand: at minute 17, 100 m, moving 0:10, stopped 0:07, top
    6.0 km/h, average 100 m in 10 min = 0.6 km/h, one stop (5 minutes stood by 15);
    at minute 14 no stop yet; the whole window 180 m, 0:18 moving, 0:12 stopped."""
    r = replay_map.replay
    base, a, side = world["base"], world["a"], replay_map.replay.side
    assert side.scope.currentData() == "at_t"  # what the map shows at T, by default

    def row_at(minute: float) -> list[str]:
        r.clock.seek((base + timedelta(minutes=minute)).timestamp())
        qtbot.waitUntil(lambda: not side.pending, timeout=5000)
        row = side.row_of(a)
        return [side.cell_text(row, c) for c in range(1, 7)]

    assert row_at(17) == ["0.10", "0:10", "0:07", "6.0", "0.6", "1"]
    assert "截至" in side.caption.text() or "up to" in side.caption.text().lower()
    assert row_at(14) == ["0.10", "0:10", "0:04", "6.0", "0.6", "0"]
    assert row_at(2) == ["0.02", "0:02", "0:00", "6.0", "0.6", "0"]
    # B stands still, reporting 2 km/h at minutes 0, 5 and 35: 0→5 is five minutes of
    # moving (300 s, within the 5-minute hole bound), 5→35 a hole that counts nothing.
    row_at(17)
    row = side.row_of(world["b"])
    assert [side.cell_text(row, c) for c in range(1, 7)] == [
        "0.00", "0:05", "0:00", "2.0", "0.0", "0"]
    r.clock.seek((base + timedelta(minutes=40)).timestamp())
    qtbot.waitUntil(lambda: not side.pending, timeout=5000)
    row = side.row_of(world["b"])
    assert [side.cell_text(row, c) for c in range(1, 7)] == [
        "0.00", "0:05", "0:00", "2.0", "0.0", "0"]
    # The longest way first, as T moves: A (100 m by minute 17) above B (standing still).
    row_at(17)
    assert side.row_of(a) == 0 and side.row_of(world["b"]) == 1
    # The selection stays on its worker when the rows reorder.
    r.select(world["b"])
    row_at(17.5)
    assert side.table.selectionModel().selectedRows()[0].row() == side.row_of(world["b"])
    side.scope.setCurrentIndex(side.scope.findData("window"))
    row = side.row_of(a)
    assert [side.cell_text(row, c) for c in range(1, 7)] == [
        "0.18", "0:18", "0:12", "6.0", "0.6", "1"]


def test_replay_trail_as_long_as_the_panels_minutes(qtbot, replay_map, world):
    """At T = 20½ minutes with 30 minutes of trail: A's fixes 0…20 (20 segments) and
    B's 0→5 (one); with 10 minutes, only A's fixes from minute 11 (9 segments)."""
    m, r = replay_map, replay_map.replay
    r.clock.seek((world["base"] + timedelta(minutes=20, seconds=30)).timestamp())
    qtbot.waitUntil(lambda: not r.trails.pending, timeout=5000)
    assert sum(r.trails.segment_counts) == 21
    m.panel.trail_spin.setValue(10)
    qtbot.waitUntil(lambda: not r.trails.pending, timeout=5000)
    assert r.trail.span_s == 600.0
    assert sum(r.trails.segment_counts) == 9


def test_trails_drawn_where_the_worker_walked(qtbot, replay_map, world):
    """At minute 8 A's last metres are drawn in the trail colour, the selected worker's
    whole trail on top in the highlight's; a point 30 m off the line is neither."""
    from widgets.map.trail_item import HIGHLIGHT_COLOUR, TRAIL_COLOUR

    m, r = replay_map, replay_map.replay
    r.clock.seek((world["base"] + timedelta(minutes=8)).timestamp())
    proj = m.data.projector
    x, y = proj.forward(world["lon0"] + 2.5 * world["step"] / 10, world["lat0"])
    m.canvas.set_view(float(x), float(y), 1.0)
    _settle(qtbot, m)
    assert near(canvas_pixel(m, float(x), float(y)), TRAIL_COLOUR.name(), 40)
    assert not near(canvas_pixel(m, float(x), float(y) + 30.0), TRAIL_COLOUR.name(), 40)
    r.select(world["a"])
    r.set_following(False)
    m.canvas.set_view(float(x), float(y), 1.0)
    _settle(qtbot, m)
    assert near(canvas_pixel(m, float(x), float(y)), HIGHLIGHT_COLOUR.name(), 40)
    assert not near(canvas_pixel(m, float(x), float(y) + 30.0), HIGHLIGHT_COLOUR.name(), 40)
