"""Who was at a place at a time, everyone at T from the database, a worker's GPX.

Hand-made fixes around a point P (the middle of an own cell) on 2 November 2026, placed
by metres north or east of P with the sphere ``maps.coords`` measures on, so each
distance is known here:

* X: 16:00 50 m east, 16:01 150 m east, 16:02 250 m east (out), 16:10 10 m north,
  16:20 199 m east (in), 16:21 201 m east (out).
* Y: 16:05 300 m north, 16:06 205 m east: never within 200 m.
* Z: at P at 15:00 and at 17:30, outside the window 15:30–17:00.

So within 200 m in 15:30–17:00: X only, first 16:00, last 16:20, four fixes, closest 10 m
at 16:10.  From 15:00: Z too (first = last = 15:00, 0 m), listed first.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import text

from db.errors import BadInput
from db.field import load_replay, positions_at, who_was_at
from maps.coords import EARTH_RADIUS_M
from tests.cli_runner import cli
from tests.field_support import add_worker, local, put_fixes, territory
from tests.kpi_support import console_engine

DEG = math.pi / 180.0


def _moved(lon, lat, east_m=0.0, north_m=0.0):
    """The point ``east_m`` east along the parallel and ``north_m`` north of (lon, lat)."""
    dlat = north_m / EARTH_RADIUS_M / DEG
    # Along a parallel the great-circle distance d satisfies sin(d/2R) = cos φ sin(Δλ/2).
    dlon = 2 * math.asin(math.sin(east_m / (2 * EARTH_RADIUS_M)) / math.cos(lat * DEG)) / DEG
    return lon + dlon, lat + dlat


@pytest.fixture
def place(engine):
    p = territory(engine)
    lon, lat = p.own_cells[0].at(0.5, 0.5)
    devices = {}
    for code in ("X", "Y", "Z"):
        _, devices[code] = add_worker(engine, f"W{code}", p.own_grid, device=f"T{code}")
    fixes = {
        "X": [(16, 0, 50, 0), (16, 1, 150, 0), (16, 2, 250, 0), (16, 10, 0, 10),
              (16, 20, 199, 0), (16, 21, 201, 0)],
        "Y": [(16, 5, 0, 300), (16, 6, 205, 0)],
        "Z": [(15, 0, 0, 0), (17, 30, 0, 0)],
    }
    for code, rows in fixes.items():
        put_fixes(engine, devices[code], [
            (local(2026, 11, 2, h, m), *_moved(lon, lat, e, n), 4.0, p.own_grid)
            for h, m, e, n in rows])
    return lon, lat, devices


def test_who_was_within_the_radius_in_the_window(place, db_url):
    lon, lat, devices = place
    engine = console_engine(db_url)
    found = who_was_at(engine, lon, lat, 200.0, local(2026, 11, 2, 15, 30),
                       local(2026, 11, 2, 17, 0))
    assert [h["worker"] for h in found] == ["WX"]
    x = found[0]
    assert (x["first"], x["last"]) == (local(2026, 11, 2, 16, 0), local(2026, 11, 2, 16, 20))
    assert x["fixes"] == 4
    assert x["closest_m"] == pytest.approx(10.0, abs=0.05)
    assert x["closest_at"] == local(2026, 11, 2, 16, 10)
    assert (x["device"], x["device_id"], x["name"]) == ("TX", devices["X"], "员WX")
    wider = who_was_at(engine, lon, lat, 200.0, local(2026, 11, 2, 15, 0),
                       local(2026, 11, 2, 17, 0))
    assert [(h["worker"], h["fixes"]) for h in wider] == [("WZ", 1), ("WX", 4)]
    assert wider[0]["closest_m"] == pytest.approx(0.0, abs=1e-6)
    # 251 m takes X's 250 m and 201 m fixes and Y's 205 m one (not its 300 m).
    far = {h["worker"]: h["fixes"] for h in who_was_at(
        engine, lon, lat, 251.0, local(2026, 11, 2, 15, 30), local(2026, 11, 2, 17, 0))}
    assert far == {"WX": 6, "WY": 1}
    assert who_was_at(engine, lon, lat, 5.0, local(2026, 11, 2, 15, 30),
                      local(2026, 11, 2, 17, 0)) == []


@pytest.mark.parametrize("args", [
    (116.4, 39.9, 0.0), (116.4, 39.9, -5.0), (116.4, 39.9, 20_000.0), (200.0, 39.9, 100.0),
    (116.4, float("nan"), 100.0)])
def test_bad_places_are_one_clear_message(engine, args):
    with pytest.raises(BadInput):
        who_was_at(engine, *args, local(2026, 11, 2, 15, 0), local(2026, 11, 2, 16, 0))
    with pytest.raises(BadInput):  # and a window that ends before it starts
        who_was_at(engine, 116.4, 39.9, 100.0, local(2026, 11, 2, 16, 0),
                   local(2026, 11, 2, 15, 0))


def test_everyone_at_t_from_the_database_equals_the_replay(place, engine):
    _, _, devices = place
    replay, *_ = load_replay(engine, local(2026, 11, 2, 14, 0), local(2026, 11, 2, 18, 0))
    for h, m, s in [(16, 0, 0), (16, 5, 30), (16, 10, 0), (16, 15, 0), (16, 31, 0),
                    (16, 30, 59), (15, 9, 59), (15, 10, 0), (15, 10, 1), (16, 16, 0), (17, 30, 0),
                    (12, 0, 0)]:  # 15:10 and 16:16: exactly ten minutes after a fix
        when = local(2026, 11, 2, h, m, s)
        got = positions_at(engine, when, 600.0)
        frame = replay.at(when.timestamp())
        assert dict(zip(got.device.tolist(), zip(got.lon.tolist(), got.lat.tolist(),
                                                  strict=True), strict=True)) == dict(
            zip(frame.device.tolist(), zip(frame.lon.tolist(), frame.lat.tolist(), strict=True),
                strict=True)), when
    assert positions_at(engine, local(2026, 11, 2, 15, 10), 600.0).device.tolist() == [
        devices["Z"]]  # a fix exactly as old as the bound still counts
    # 16:10: X's fix of 16:10, Y's of 16:06, Z silent since 15:00 (older than 10 minutes).
    at = positions_at(engine, local(2026, 11, 2, 16, 10), 600.0)
    assert sorted(at.device.tolist()) == sorted([devices["X"], devices["Y"]])
    assert at.t[at.device.tolist().index(devices["X"])] == local(2026, 11, 2, 16, 10).timestamp()
    only = positions_at(engine, local(2026, 11, 2, 16, 10), 600.0, devices=[devices["Y"]])
    assert only.device.tolist() == [devices["Y"]]


def test_field_at_and_gpx_on_the_command_line(place, db_url, tmp_path):
    lon, lat, _ = place
    base = f"field at --lon {lon!r} --lat {lat!r} --radius 200"
    out = cli(db_url, f"{base} --from 2026-11-02T15:30 --to 2026-11-02T17:00 --json", "x")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert [(w["worker"], w["fixes"]) for w in rep["workers"]] == [("WX", 4)]
    assert rep["workers"][0]["first"] == "2026-11-02T16:00:00+08:00"
    table = cli(db_url, f"{base} --from 2026-11-02T15:00 --to 2026-11-02T17:00 --lang en", "x")
    assert table.returncode == 0 and "WX" in table.stdout and "WZ" in table.stdout
    for bad, words in [(f"{base} --from yesterday --to 2026-11-02T17:00", "ISO time"),
                       (f"{base} --from 2026-11-02T17:00 --to 2026-11-02T15:00", "after"),
                       (f"field at --lon {lon} --lat {lat} --radius -3 --from 2026-11-02T15:00 "
                        "--to 2026-11-02T17:00", "radius"),
                       (f"field at --lon 500 --lat {lat} --from 2026-11-02T15:00 "
                        "--to 2026-11-02T17:00", "longitude")]:
        res = cli(db_url, bad + " --lang en", "x")
        assert res.returncode == 2, (bad, res.stderr)
        assert res.stderr.count("\n") == 1 and words in res.stderr and "Traceback" not in res.stderr
        zh = cli(db_url, bad, "x")  # Chinese by default
        assert zh.returncode == 2 and any("\u4e00" <= ch <= "\u9fff" for ch in zh.stderr)
    gpx = tmp_path / "x.gpx"
    made = cli(db_url, f"field gpx WX --from 2026-11-02T16:00 --to 2026-11-02T16:10 {gpx}", "x")
    assert made.returncode == 0, made.stderr
    ns = {"g": "http://www.topografix.com/GPX/1/1"}
    pts = ET.parse(gpx).getroot().findall(".//g:trkpt", ns)
    assert [p.find("g:time", ns).text for p in pts] == [
        "2026-11-02T08:00:00Z", "2026-11-02T08:01:00Z", "2026-11-02T08:02:00Z",
        "2026-11-02T08:10:00Z"]
    unknown = cli(db_url, f"field gpx NOBODY --from 2026-11-02T16:00 --to 2026-11-02T17:00 "
                          f"{gpx} --lang en", "x")
    assert unknown.returncode == 2 and "Unknown worker" in unknown.stderr
    with engine_of(db_url) as conn:
        assert conn.execute(text("SELECT count(*) FROM positions")).scalar_one() == 10


def engine_of(db_url):
    from db.engine import make_engine

    return make_engine(db_url).connect()
