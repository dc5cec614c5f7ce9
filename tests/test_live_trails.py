"""Live trails: the last N minutes of every worker, fading, drawn by ONE item.

Fixes are stored by hand (``tests.field_support.put_fixes``) a known number of minutes
ago; the map reads the window's history when it opens and appends what the positions
store reads afterwards.  Expected segments are counted by hand: a trail of k fixes inside
the window has k − 1 segments; a segment's age level is ``floor(age / window · 4)``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from maps.trails import TrailLayer
from tests.field_support import add_worker, put_fixes, territory
from tests.map_support import report_at
from tests.test_map_live import maps  # noqa: F401 (fixture)


@pytest.fixture
def live_map(maps):  # noqa: F811 (the fixture imported above)
    """A stand-alone map (``tests.test_map_live.maps``) reading positions by its poll."""
    return lambda: maps(listen=False)


def _walk(place, k: int, now: datetime, minutes_ago: list[float]):
    cell = place.own_cells[k % len(place.own_cells)]
    return [(now - timedelta(minutes=m), *cell.at(0.1 + 0.8 * i / len(minutes_ago), 0.5),
             3.0, place.own_grid) for i, m in enumerate(minutes_ago)]


def test_trails_window_fading_and_a_fix_leaving(qtbot, live_map, engine):
    place = territory(engine)
    now = datetime.now(UTC)
    _, a = add_worker(engine, "LT1", place.own_grid, device="LT-1")
    _, b = add_worker(engine, "LT2", place.own_grid, device="LT-2")
    # A: 40, 29, 20, 12, 2 minutes ago — the first is outside the 30-minute window.
    put_fixes(engine, a, _walk(place, 0, now, [40, 29, 20, 12, 2]))
    # B: 25 and 5 minutes ago (20 minutes apart: more than the 10-minute silence bound,
    # so not joined), then 4 and 3 minutes ago.
    put_fixes(engine, b, _walk(place, 1, now, [25, 5, 4, 3]))
    m = live_map()
    trails = m.data.trails
    layer = trails.layer
    qtbot.waitUntil(lambda: trails.is_loaded and not m.trails.pending, timeout=10_000)
    # Held: A's four fixes inside the window, B's four.
    assert sorted(np.round((trails.clock() - layer.t[layer.device == a]) / 60).tolist()) == [
        2, 12, 20, 29]
    assert len(layer) == 8
    # Segments by age level (window 30 min, 4 levels of 7.5 min), the newer end's age:
    # A: 29→20 (20 min: level 2), 20→12 (12: level 1), 12→2 (2: level 0);
    # B: 5→4 (4: level 0), 4→3 (3: level 0); B's 25→5 crosses a 20-minute silence.
    assert m.trails.segment_counts == [3, 1, 1, 0]
    # Two minutes later (the store's clock moved on) A's fix of 29 minutes ago is older
    # than the window: it leaves, and so does the segment from it.
    later = trails.clock() + 120.0
    trails.clock = lambda: later
    trails._ager.timeout.emit()
    qtbot.waitUntil(lambda: not m.trails.pending, timeout=5000)
    assert len(layer) == 7
    # 20→12 now 14 min old (level 1); 12→2 (4 min), 5→4 (6) and 4→3 (5) level 0.
    assert m.trails.segment_counts == [3, 1, 0, 0]
    assert sum(m.trails.segment_counts) == 4


def test_new_fixes_from_the_positions_store_extend_the_trail(qtbot, live_map, engine):
    place = territory(engine)
    now = datetime.now(UTC)
    _, a = add_worker(engine, "LT3", place.own_grid, device="LT-3")
    put_fixes(engine, a, _walk(place, 0, now, [6, 4]))
    m = live_map()
    trails = m.data.trails
    qtbot.waitUntil(lambda: trails.is_loaded and not m.trails.pending, timeout=10_000)
    assert sum(m.trails.segment_counts) == 1
    lon, lat = place.own_cells[0].at(0.95, 0.95)
    report_at(engine, "LT-3", lon, lat, ts=now - timedelta(seconds=30))
    m.data.positions._request()  # what a NOTIFY from the gateway does
    qtbot.waitUntil(lambda: sum(m.trails.segment_counts) == 2 and not m.trails.pending,
                    timeout=10_000)
    # Only the selected: nobody selected, nothing drawn; the worker's card open, theirs.
    m.panel.trail_only.setChecked(True)
    qtbot.waitUntil(lambda: not m.trails.pending, timeout=5000)
    assert sum(m.trails.segment_counts) == 0
    m.show_worker(a)
    qtbot.waitUntil(lambda: not m.trails.pending, timeout=5000)
    assert sum(m.trails.segment_counts) == 2
    # The layer panel's toggle hides the one item.
    m.set_layer_visible("trails", False)
    assert not m.trails.isVisible()


def test_one_item_however_many_workers(qtbot, live_map, engine):
    place = territory(engine)
    now = datetime.now(UTC)
    for k in range(3):
        _, d = add_worker(engine, f"LN{k}", place.own_grid, device=f"LN-{k}")
        put_fixes(engine, d, _walk(place, k, now, [9, 6, 3]))
    m = live_map()
    trails = m.data.trails
    qtbot.waitUntil(lambda: trails.is_loaded and not m.trails.pending, timeout=10_000)
    assert sum(m.trails.segment_counts) == 3 * 2
    items_before = len(m.canvas.scene().items())
    for k in range(3, 63):
        _, d = add_worker(engine, f"LN{k}", place.own_grid, device=f"LN-{k}")
        put_fixes(engine, d, _walk(place, k, now, [9, 6, 3]))
    trails.is_loaded = False
    trails.load()
    qtbot.waitUntil(lambda: trails.is_loaded and not m.trails.pending, timeout=10_000)
    assert sum(m.trails.segment_counts) == 63 * 2
    assert len(m.canvas.scene().items()) == items_before


def test_the_layer_model_alone():
    layer = TrailLayer(window_s=600.0)
    seen = []
    layer.changed.connect(lambda: seen.append(layer.version))
    layer.replace([1, 1, 2], [0.0, 100.0, 50.0], [0, 1, 5], [0, 1, 5], now=100.0)
    layer.append([2, 1], [160.0, 100.0], [6, 1], [6, 1], now=160.0)  # 1@100 twice: once
    levels = layer.segments()
    assert [len(s) for s in levels] == [2, 0, 0, 0]  # 1: 0→100 (age 60), 2: 50→160 (0)
    assert len(layer) == 4  # the duplicate dropped when sorted
    layer.set_now(640.0)  # 1@0 is 640 s old: out of the 600 s window
    assert [len(s) for s in layer.segments()] == [0, 0, 0, 1]  # 2: 50→160 (480 s: level 3)
    assert seen and seen == sorted(seen)


def test_a_moving_view_moves_the_kept_raster_and_rasterises_once_settled(qtbot, live_map,
                                                                         engine):
    """At 10,000 workers every trail rasterised again on every pan frame took the live
    map from 11 to 120 ms a frame: while the view moves, the raster made for the last
    view is drawn moved with it; once the view stands still the trails are drawn anew."""
    from widgets.map.trail_item import SETTLE_MS

    place = territory(engine)
    now = datetime.now(UTC)
    _, a = add_worker(engine, "LT7", place.own_grid, device="LT-7")
    put_fixes(engine, a, _walk(place, 0, now, [20, 12, 2]))
    m = live_map()
    qtbot.waitUntil(lambda: m.data.trails.is_loaded and not m.trails.pending, timeout=10_000)
    m.zoom_to_worker(a)
    qtbot.wait(3 * SETTLE_MS)
    m.canvas.grab()  # drawn for this view
    stamps = m.trails.stamps
    blits = m.trails.moving_blits
    vb = m.canvas.vb
    for step in range(5):  # a pan: five frames, each a new view, well within SETTLE_MS
        vb.translateBy(x=20.0 * (step + 1), y=0.0)
        m.canvas.grab()
    assert m.trails.stamps == stamps  # nothing rasterised while moving
    assert m.trails.moving_blits >= blits + 5  # the kept raster drawn, moved, each frame
    qtbot.waitUntil(lambda: not m.trails._settle.isActive(), timeout=5000)
    m.canvas.grab()
    assert m.trails.stamps == stamps + 1  # once, for the view it came to rest at
