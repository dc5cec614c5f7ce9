"""Replay: "everyone at T" equals what ``positions`` holds for T, cases' statuses at T equal
the case log replayed to T; trip totals and stops on a track worked out by hand; GPX.

The references are plain queries a reader can check by eye: the newest fix at or before
T of each device not older than the staleness bound; the newest log entry at or before T
of each case.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta
from itertools import pairwise

import numpy as np
import pytest
from sqlalchemy import text

from db.field import load_replay
from maps.replay import gpx
from tests.field_support import (
    add_worker,
    local,
    open_cases_at,
    positions_at,
    put_fixes,
    territory,
)
from tests.flows import report as report_case
from tests.flows import step
from tests.kpi_support import console_engine

STALE = 600.0
T0, T1 = local(2026, 11, 2, 8, 0), local(2026, 11, 2, 12, 0)


@pytest.fixture
def tracks(engine):
    place = territory(engine)
    rng = np.random.default_rng(12)
    devices = []
    for k in range(4):
        _, did = add_worker(engine, f"RW{k}", place.own_grid, device=f"TR{k}")
        devices.append(did)
        # Irregular fixes, 5 s – 15 min apart (so some T fall in a silence longer than
        # the staleness bound), from 07:50 (before the window) to 12:10 (after it).
        t, fixes = local(2026, 11, 2, 7, 50), []
        while t < local(2026, 11, 2, 12, 10):
            lon, lat = place.own_cells[k].at(*rng.uniform(0.1, 0.9, 2))
            fixes.append((t, lon, lat, float(rng.uniform(0, 6)), place.own_grid))
            t += timedelta(seconds=float(rng.choice([5, 30, 60, 400, 900])))
        put_fixes(engine, did, fixes)
    return devices


def test_everyone_at_t_equals_positions(tracks, engine, db_url):
    replay, *_ = load_replay(console_engine(db_url), T0, T1, stale_s=STALE)
    rng = np.random.default_rng(3)
    instants = [T0, T1, T0 + timedelta(seconds=0.5)] + [
        T0 + timedelta(seconds=float(s)) for s in rng.uniform(0, 4 * 3600, 60)]
    # Exactly at a fix, and just after the staleness bound of one.
    with engine.connect() as conn:
        some = conn.execute(text("SELECT ts FROM positions WHERE ts BETWEEN :a AND :b "
                                 "ORDER BY ts LIMIT 5"), {"a": T0, "b": T1}).scalars().all()
    instants += some + [s + timedelta(seconds=STALE) for s in some] + [
        s + timedelta(seconds=STALE + 0.001) for s in some]
    seen_empty = seen_full = False
    for when in instants:
        frame = replay.at(when.timestamp())
        got = {int(d): (lo, la) for d, lo, la in zip(frame.device, frame.lon, frame.lat,
                                                      strict=True)}
        want = positions_at(engine, when, STALE)
        assert got.keys() == want.keys(), when
        for d in want:
            assert got[d] == pytest.approx(want[d], abs=1e-12)
        seen_empty |= len(want) < len(tracks)
        seen_full |= len(want) == len(tracks)
    assert seen_empty and seen_full  # both silences and everyone were met
    one = replay.at(T1.timestamp(), devices=[tracks[1]])
    assert list(one.device) == [tracks[1]] or one.device.size == 0


def test_cases_at_t_equal_the_log_replayed(engine, actors):
    territory(engine)
    a = report_case(engine, actors)
    b = report_case(engine, actors)
    c = report_case(engine, actors)
    for action in ("accept", "file", "dispatch", "acknowledge", "feedback", "verify_pass"):
        a = step(engine, actors, a, action)
    b = step(engine, actors, b, "reject")
    c = step(engine, actors, c, "accept")
    with engine.connect() as conn:
        times = conn.execute(text("SELECT at FROM case_log ORDER BY seq")).scalars().all()
    start, end = times[0] - timedelta(seconds=1), times[-1] + timedelta(seconds=1)
    # The window starts in the middle, so the state before it comes from older entries.
    mid = times[len(times) // 2]
    _, cases, _, marks = load_replay(engine, mid, end)
    instants = [start, mid, end] + times + [t + (u - t) / 2 for t, u in pairwise(times)]
    for when in instants:
        if when < mid:
            continue  # before the window the model knows only what was open at its start
        ids, statuses = cases.at_time(when.timestamp())
        assert dict(zip(ids.tolist(), statuses.tolist(), strict=True)) == \
            open_cases_at(engine, when), when
    kinds = {m["kind"] for m in marks}
    assert kinds <= {"report", "dispatch", "close", "left_grid", "returned_to_grid",
                     "offline", "online"}
    _, whole, _, _ = load_replay(engine, start, end)
    assert dict(zip(*[x.tolist() for x in whole.at_time(end.timestamp())], strict=True)) == {
        c.case_id: "accepted"}


def test_trip_totals_and_stops_worked_by_hand(engine):
    place = territory(engine)
    _, did = add_worker(engine, "RW9", place.own_grid, device="TR9")
    cell = place.own_cells[0]
    lon0, lat0 = cell.at(0.1, 0.5)
    step_deg = 100.0 / (111_320.0 * np.cos(np.radians(lat0)))  # about 100 m east
    t = local(2026, 11, 2, 9, 0)
    # 09:00–09:09 moving (reported 6 km/h), 10 m a minute; at 09:10 arrived and standing.
    fixes = [(t + timedelta(minutes=k), lon0 + k * step_deg / 10, lat0,
              6.0 if k < 10 else 0.0, place.own_grid) for k in range(11)]
    fixes += [(t + timedelta(minutes=10 + k), lon0 + step_deg, lat0, 0.0, place.own_grid)
              for k in range(1, 11)]  # standing 09:10–09:20 (first stopped interval 09:10)
    fixes += [(t + timedelta(minutes=50), lon0, lat0, 3.0, place.own_grid)]  # after a hole
    put_fixes(engine, did, fixes)
    replay, *_ = load_replay(engine, t, t + timedelta(hours=1))
    trip = replay.trip(did, t.timestamp(), (t + timedelta(hours=1)).timestamp())
    from maps.coords import haversine_m

    hundred = float(haversine_m(lon0, lat0, lon0 + step_deg, lat0))
    assert trip["distance_m"] == pytest.approx(hundred, rel=1e-6)  # the hole adds nothing
    assert trip["moving_s"] == 600.0
    assert trip["stopped_s"] == 600.0  # 09:10→09:20 (the 09:10 fix already stands)
    assert trip["max_kmh"] == 6.0
    assert trip["avg_kmh"] == pytest.approx(hundred / 600.0 * 3.6)
    assert [(s["start"] - t.timestamp(), s["seconds"]) for s in trip["stops"]] == [
        (600.0, 600.0)]
    sl = replay.trail(did, t.timestamp(), (t + timedelta(minutes=5)).timestamp())
    doc = ET.fromstring(gpx("RW9", replay.t[sl], replay.lon[sl], replay.lat[sl]))
    ns = {"g": "http://www.topografix.com/GPX/1/1"}
    pts = doc.findall(".//g:trkpt", ns)
    assert len(pts) == 6
    assert pts[0].find("g:time", ns).text == "2026-11-02T01:00:00Z"
    assert float(pts[-1].get("lon")) == pytest.approx(lon0 + 5 * step_deg / 10)
