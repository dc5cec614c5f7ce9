"""What the case detail shows around a case: possible duplicates, nearest workers and cameras.

Everything is placed by hand at known distances from one point, so the
expected answers are worked out here and not read back from the code:
points are moved along the meridian (north or south), where the great-circle
distance is exactly ``R × Δφ``, and the distances are checked against a
haversine written in this file.  The rules come from README ("possible
duplicates (same category within 50 m and 24 h)", "the nearest workers and
cameras") and the gateway's "silence before a terminal counts as offline
(default 10)" minutes.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from db.case_context import case_view, nearest_cameras, nearest_workers, possible_duplicates
from tests.flows import report

R = 6371008.8  # mean Earth radius in metres (IUGG)
LON0, LAT0 = 116.4100, 39.9200  # the case everything is measured from (东四北大街)


def north(metres: float) -> tuple[float, float]:
    """The point ``metres`` due north of the origin (negative: south)."""
    return LON0, LAT0 + math.degrees(metres / R)


def east(metres: float) -> tuple[float, float]:
    """The point ``metres`` due east along the great circle through the origin, to < 1 mm."""
    # On a sphere, the point at distance d on the great circle heading east:
    lat = math.asin(math.sin(math.radians(LAT0)) * math.cos(metres / R))
    dlon = math.atan2(
        math.sin(metres / R) * math.cos(math.radians(LAT0)),
        math.cos(metres / R) - math.sin(math.radians(LAT0)) * math.sin(lat),
    )
    return LON0 + math.degrees(dlon), math.degrees(lat)


def haversine(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * R * math.asin(math.sqrt(h))


def test_the_hand_made_points_are_where_they_claim():
    # The test's own geometry first, so a wrong expectation cannot hide a bug.
    for d in (10.0, 30.0, 49.0, 51.0, 80.0, 200.0):
        assert haversine(LON0, LAT0, *north(d)) == pytest.approx(d, abs=1e-6)
        assert haversine(LON0, LAT0, *north(-d)) == pytest.approx(d, abs=1e-6)
        assert haversine(LON0, LAT0, *east(d)) == pytest.approx(d, abs=1e-3)


def _place(
    engine, actors, where: tuple[float, float], category: str = "S0102", hours_ago: float = 0.0
):
    made = report(engine, actors, lon=where[0], lat=where[1], category=category)
    if hours_ago:
        # The test's own database: move the report back in time as if it came earlier.
        with engine.begin() as conn:
            conn.execute(
                text(
                    'UPDATE "case" SET reported_at = reported_at - make_interval(secs => :s) '
                    "WHERE id = :i"
                ),
                {"s": hours_ago * 3600, "i": made.case_id},
            )
    return made


def test_possible_duplicates_are_same_category_within_50_m_and_24_h(engine, actors):
    me = _place(engine, actors, (LON0, LAT0))
    near = _place(engine, actors, north(30))  # same category, 30 m: a duplicate
    edge_in = _place(engine, actors, east(49))  # 49 m east: still within 50 m
    edge_out = _place(engine, actors, north(-51))  # 51 m south: not
    far = _place(engine, actors, north(85))  # 85 m: not
    other_kind = _place(engine, actors, north(10), category="S0201")  # 10 m, another category
    yesterday = _place(engine, actors, north(20), hours_ago=23)  # 23 h earlier: a duplicate
    too_old = _place(engine, actors, north(20), hours_ago=25)  # 25 h earlier: not

    found = possible_duplicates(engine, me.case_id)
    by_number = {d["number"]: d["metres"] for d in found}
    assert set(by_number) == {near.number, edge_in.number, yesterday.number}
    assert by_number[near.number] == pytest.approx(30.0, abs=0.01)
    assert by_number[edge_in.number] == pytest.approx(49.0, abs=0.01)
    assert by_number[yesterday.number] == pytest.approx(20.0, abs=0.01)
    assert me.number not in by_number  # a case is not its own duplicate
    for excluded in (edge_out, far, other_kind, too_old):
        assert excluded.number not in by_number

    # The relation looks both ways.  From the one 30 m north: this case (30 m) and
    # the one of 23 h ago (20 m north, so 10 m away); the 49 m east one is
    # sqrt(30² + 49²) ≈ 57 m away and the 85 m north one 55 m: not.
    assert haversine(*north(30), *east(49)) > 55
    seen_from_near = {d["number"]: d["metres"] for d in possible_duplicates(engine, near.case_id)}
    assert set(seen_from_near) == {me.number, yesterday.number}
    assert seen_from_near[me.number] == pytest.approx(30.0, abs=0.01)
    assert seen_from_near[yesterday.number] == pytest.approx(10.0, abs=0.01)

    # The window is 24 h either side of each case: the one of 25 h ago is 2 h before
    # the one of 23 h ago and at the same spot, so from there it is a possible duplicate.
    seen_from_yesterday = {d["number"] for d in possible_duplicates(engine, yesterday.case_id)}
    assert seen_from_yesterday == {me.number, near.number, too_old.number}

    # What the detail panel shows is the same list.
    view = case_view(engine, me.case_id)
    assert {d["number"] for d in view["duplicates"]} == set(by_number)


def _worker(
    conn, code: str, name: str, where: tuple[float, float], minutes_ago: float, active: bool = True
) -> None:
    """A field worker with a terminal whose latest fix is at ``where``, ``minutes_ago`` old."""
    wid = conn.execute(
        text(
            "INSERT INTO worker (code, name, status, active) VALUES (:c, :n, 'patrolling', :a) "
            "RETURNING id"
        ),
        {"c": code, "n": name, "a": active},
    ).scalar_one()
    did = conn.execute(
        text("INSERT INTO device (identifier, worker_id) VALUES (:d, :w) RETURNING id"),
        {"d": f"phone-{code}", "w": wid},
    ).scalar_one()
    ts = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    conn.execute(
        text(
            "INSERT INTO latest_position (device_id, ts, lon, lat, received_at) "
            "VALUES (:d, :ts, :lon, :lat, :ts)"
        ),
        {"d": did, "ts": ts, "lon": where[0], "lat": where[1]},
    )


def _camera(conn, code: str, where: tuple[float, float], active: bool = True) -> None:
    conn.execute(
        text("INSERT INTO camera (code, name, lon, lat, active) VALUES (:c, :n, :lon, :lat, :a)"),
        {"c": code, "n": f"摄像机{code}", "lon": where[0], "lat": where[1], "a": active},
    )


@pytest.fixture
def field(engine):
    """Workers and cameras hand-placed around the origin (metres and minutes by hand)."""
    with engine.begin() as conn:
        _worker(conn, "W080S", "南八十", north(-80), minutes_ago=1)
        _worker(conn, "W030N", "北三十", north(30), minutes_ago=2)
        _worker(conn, "W200N", "北二百", north(200), minutes_ago=11)  # silent 11 min: offline
        _worker(conn, "W120E", "东一百二", east(120), minutes_ago=0.5)
        _worker(conn, "W500S", "南五百", north(-500), minutes_ago=5)
        _worker(conn, "W900N", "北九百", north(900), minutes_ago=5)
        _worker(conn, "W005N", "离职", north(5), minutes_ago=1, active=False)  # not a worker now
        _camera(conn, "C060E", east(60))
        _camera(conn, "C015S", north(-15))
        _camera(conn, "C300N", north(300))
        _camera(conn, "C040N", north(40))
        _camera(conn, "C700S", north(-700))
        _camera(conn, "C001N", north(1), active=False)  # switched off


def test_nearest_workers_in_order_with_distance_and_online(engine, field):
    got = nearest_workers(engine, LON0, LAT0, limit=5)
    assert [w["code"] for w in got] == ["W030N", "W080S", "W120E", "W200N", "W500S"]
    for w, metres in zip(got, (30, 80, 120, 200, 500), strict=True):
        assert w["metres"] == pytest.approx(metres, abs=0.01)
    assert [w["online"] for w in got] == [True, True, True, False, True]
    # Asked from another point, the order follows that point: 1 km north of the origin
    # the one at 900 m north is 100 m away, then 200 m north (800 m), then 30 m north (970 m).
    from_north = nearest_workers(engine, *north(1000), limit=3)
    assert [w["code"] for w in from_north] == ["W900N", "W200N", "W030N"]
    assert [round(w["metres"], 2) for w in from_north] == [100.0, 800.0, 970.0]


def test_nearest_cameras_in_order_with_distance(engine, field):
    got = nearest_cameras(engine, LON0, LAT0, limit=4)
    assert [c["code"] for c in got] == ["C015S", "C040N", "C060E", "C300N"]
    for c, metres in zip(got, (15, 40, 60, 300), strict=True):
        assert c["metres"] == pytest.approx(metres, abs=0.01)


def test_case_detail_lists_what_is_nearest_to_the_case(engine, actors, field):
    # The case is 100 m south of the origin; worked out by hand from there:
    where = north(-100)
    workers = [
        ("W080S", 20.0),
        ("W030N", 130.0),
        ("W120E", haversine(*where, *east(120))),  # sqrt(100² + 120²) ≈ 156.2 m
        ("W200N", 300.0),
        ("W500S", 400.0),
        ("W900N", 1000.0),
    ]
    cameras = [
        ("C015S", 85.0),
        ("C060E", haversine(*where, *east(60))),  # sqrt(100² + 60²) ≈ 116.6 m
        ("C040N", 140.0),
        ("C300N", 400.0),
        ("C700S", 600.0),
    ]
    made = report(engine, actors, lon=where[0], lat=where[1])
    view = case_view(engine, made.case_id)
    for shown, expected in ((view["workers"], workers), (view["cameras"], cameras)):
        # However many the panel lists, they are the nearest ones, nearest first.
        assert len(shown) >= 3
        assert [x["code"] for x in shown] == [c for c, _ in expected[: len(shown)]]
        for x, (_, metres) in zip(shown, expected, strict=False):
            assert x["metres"] == pytest.approx(metres, abs=0.01)
