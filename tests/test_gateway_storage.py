"""The bulk path: store_positions, its grid location, events, notification and partitions."""

from __future__ import annotations

import select
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from sqlalchemy import text

from db.errors import BadInput
from db.feed import dsn_of
from db.positions import (
    CHANNEL,
    PositionReport,
    latest_since,
    maintain,
    parse_watermark,
    store_positions,
    sweep_offline,
)
from tests.gateway_support import add_devices, count_positions, position_rows

NOW = datetime.now(UTC).replace(microsecond=0)
# A 4 × 2 lattice of 0.005° cells, north-west corner at (116.40, 39.91):
# grid A is the west half (columns 0-1), grid B the east half (columns 2-3).
ORIGIN, STEP, COLS, ROWS = (116.40, 39.91), 0.005, 4, 2
SQUARE_A = (116.40, 39.90, 116.41, 39.91)
SQUARE_B = (116.41, 39.90, 116.42, 39.91)
IN_A = (116.4025, 39.9075)  # centre of cell (0, 0)
IN_B = (116.4175, 39.9025)  # centre of cell (3, 1)
NOWHERE = (116.50, 39.95)


def polygon(box):
    x0, y0, x1, y1 = box
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def _bbox(box) -> dict:
    return dict(zip(("x0", "y0", "x1", "y1"), box, strict=True))


@pytest.fixture
def territory(engine):
    """Two adjacent grids on a unit-cell lattice; worker W1 patrols grid A with phone ``w1``.

    Both the grid outlines and the lattice (district lattice columns, unit
    cells with their grid) are written, so any locator of ``db.locate`` finds them.
    """
    whole = (116.40, 39.90, 116.42, 39.91)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO district (adcode, name, geometry, area_km2, min_lon, min_lat, "
                "max_lon, max_lat, origin_lon, origin_lat, dlon, dlat, n_cols, n_rows, cell_m) "
                "VALUES ('999001', '测试区', CAST(:g AS jsonb), 2, :x0, :y0, :x1, :y1, "
                ":ox, :oy, :d, :d, :nc, :nr, 500)"
            ),
            {
                "g": _json(polygon(whole)),
                **_bbox(whole),
                "ox": ORIGIN[0],
                "oy": ORIGIN[1],
                "d": STEP,
                "nc": COLS,
                "nr": ROWS,
            },
        )
        street = conn.execute(
            text(
                "INSERT INTO street (code, adcode, name, geometry, min_lon, min_lat, max_lon, "
                "max_lat) VALUES ('999001001', '999001', '测试街道', CAST(:g AS jsonb), "
                ":x0, :y0, :x1, :y1) RETURNING id"
            ),
            {"g": _json(polygon(whole)), **_bbox(whole)},
        ).scalar_one()
        community = conn.execute(
            text(
                "INSERT INTO community (code, street_id, name, geometry, min_lon, min_lat, "
                "max_lon, max_lat) VALUES ('999001001001', :s, '测试社区', CAST(:g AS jsonb), "
                ":x0, :y0, :x1, :y1) RETURNING id"
            ),
            {"s": street, "g": _json(polygon(whole)), **_bbox(whole)},
        ).scalar_one()
        grids = {}
        for name, box in (("A", SQUARE_A), ("B", SQUARE_B)):
            grids[name] = conn.execute(
                text(
                    "INSERT INTO grid (code, community_id, name, geometry, min_lon, min_lat, "
                    "max_lon, max_lat) VALUES (:code, :c, :name, CAST(:g AS jsonb), "
                    ":x0, :y0, :x1, :y1) RETURNING id"
                ),
                {
                    "code": f"G{name}",
                    "c": community,
                    "name": f"网格{name}",
                    "g": _json(polygon(box)),
                    **_bbox(box),
                },
            ).scalar_one()
        for row in range(ROWS):
            for col in range(COLS):
                box = (
                    ORIGIN[0] + col * STEP,
                    ORIGIN[1] - (row + 1) * STEP,
                    ORIGIN[0] + (col + 1) * STEP,
                    ORIGIN[1] - row * STEP,
                )
                conn.execute(
                    text(
                        "INSERT INTO unit_cell (code, community_id, grid_id, geometry, area_m2, "
                        "min_lon, min_lat, max_lon, max_lat, adcode, col, row, clipped) VALUES "
                        "(:code, :c, :g, CAST(:geom AS jsonb), 1, :x0, :y0, :x1, :y1, "
                        "'999001', :col, :row, false)"
                    ),
                    {
                        "code": f"999001001001{row * COLS + col + 1:03d}",
                        "c": community,
                        "g": grids["A" if col < 2 else "B"],
                        "geom": _json(polygon(box)),
                        **_bbox(box),
                        "col": col,
                        "row": row,
                    },
                )
        worker = conn.execute(
            text(
                "INSERT INTO worker (code, name, grid_id) VALUES ('W1', '张网格', :g) RETURNING id"
            ),
            {"g": grids["A"]},
        ).scalar_one()
        conn.execute(
            text("INSERT INTO device (identifier, worker_id) VALUES ('w1', :w)"), {"w": worker}
        )
    return {"grids": grids, "worker": worker}


def _json(value) -> str:
    import json

    return json.dumps(value)


def rep(device: str, seconds: int, where=IN_A, **kw) -> PositionReport:
    return PositionReport(device, NOW + timedelta(seconds=seconds), where[0], where[1], **kw)


def events(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT e.kind, e.grid_id, e.at FROM worker_event e "
                    "JOIN device d ON d.id = e.device_id ORDER BY e.id"
                )
            )
        ]


def test_counts_duplicates_and_unknown_devices(engine):
    add_devices(engine, ["a", "b"])
    batch = [rep("a", 0), rep("a", 1), rep("b", 0), rep("nobody", 0), rep("a", 0)]
    result = store_positions(engine, batch)
    assert (result.stored, result.duplicates, result.unknown) == (3, 1, 1)
    assert result.unknown_devices == ["nobody"]
    # The same batch again (a replayed queue): nothing new, all duplicates.
    again = store_positions(engine, [*batch[:3], rep("a", 2)])
    assert (again.stored, again.duplicates) == (1, 3)
    assert count_positions(engine) == 4


def test_register_unknown_adds_an_unassigned_device(engine):
    result = store_positions(engine, [rep("newphone", 0)], register_unknown=True)
    assert (result.stored, result.registered, result.unknown) == (1, 1, 0)
    with engine.connect() as conn:
        worker = conn.execute(
            text("SELECT worker_id FROM device WHERE identifier = 'newphone'")
        ).one()
    assert worker.worker_id is None


def test_bad_report_is_refused_before_the_database(engine):
    add_devices(engine, ["a"])
    with pytest.raises(BadInput):
        store_positions(engine, [rep("a", 0), PositionReport("a", NOW, 116.4, 91.0)])
    with pytest.raises(BadInput):
        store_positions(engine, [rep("a", 0, attributes={"x": "nul\x00"})])
    with pytest.raises(BadInput):
        store_positions(engine, [PositionReport("a", NOW + timedelta(days=2), 116.4, 39.9)])
    assert count_positions(engine) == 0


def test_positions_are_located_to_their_grid(engine, territory):
    grids = territory["grids"]
    add_devices(engine, ["v"])
    store_positions(engine, [rep("v", 0, IN_A), rep("v", 1, IN_B), rep("v", 2, NOWHERE)])
    assert [r["grid_id"] for r in position_rows(engine, "v")] == [grids["A"], grids["B"], None]
    with engine.connect() as conn:
        latest = conn.execute(text("SELECT grid_id, lon FROM latest_position")).one()
    assert latest.grid_id is None and latest.lon == NOWHERE[0]


def test_leaving_and_returning_to_the_own_grid(engine, territory):
    grids = territory["grids"]
    # In one batch: inside, to grid B (left), nowhere (still out), back (returned).
    store_positions(
        engine, [rep("w1", 0, IN_A), rep("w1", 10, IN_B), rep("w1", 20, NOWHERE), rep("w1", 30)]
    )
    assert events(engine) == [
        ("left_grid", grids["B"], NOW + timedelta(seconds=10)),
        ("returned_to_grid", grids["A"], NOW + timedelta(seconds=30)),
    ]
    # Across batches, and a late report of an old fix changes nothing.
    store_positions(engine, [rep("w1", 40, NOWHERE)])
    store_positions(engine, [rep("w1", 35, IN_A)])
    store_positions(engine, [rep("w1", 50, IN_A)])
    kinds = [e[0] for e in events(engine)]
    assert kinds == ["left_grid", "returned_to_grid", "left_grid", "returned_to_grid"]
    with engine.connect() as conn:
        detail = conn.execute(
            text("SELECT worker_id, detail FROM worker_event ORDER BY id LIMIT 1")
        ).one()
    assert detail.worker_id == territory["worker"]
    assert detail.detail == {"own_grid": grids["A"], "from_grid": grids["A"]}


def test_first_report_outside_the_own_grid_is_an_event(engine, territory):
    store_positions(engine, [rep("w1", 0, IN_B)])
    assert [e[0] for e in events(engine)] == ["left_grid"]


def test_offline_once_per_silence_then_online_again(engine, territory):
    add_devices(engine, ["v"])
    store_positions(engine, [rep("w1", 0), rep("v", 0)])
    assert sweep_offline(engine, timedelta(minutes=10)) == 0  # just reported
    later = datetime.now(UTC) + timedelta(minutes=11)
    assert sweep_offline(engine, timedelta(minutes=10), now=later) == 2
    assert sweep_offline(engine, timedelta(minutes=10), now=later + timedelta(minutes=5)) == 0
    result = store_positions(engine, [rep("w1", 60)])
    assert result.events == 1
    assert [e[0] for e in events(engine)] == ["offline", "offline", "online"]
    # w1 is back; v is still offline and is not reported twice.
    assert sweep_offline(engine, timedelta(minutes=10), now=later + timedelta(minutes=6)) == 0


def test_notification_carries_a_watermark_that_selects_only_changes(engine):
    add_devices(engine, ["a", "b"])
    store_positions(engine, [rep("a", 0), rep("b", 0)])
    with engine.connect() as conn:
        rows, mark = latest_since(conn, None)
    assert len(rows) == 2
    listener = psycopg2.connect(dsn_of(engine))
    listener.autocommit = True
    try:
        listener.cursor().execute(f"LISTEN {CHANNEL}")
        result = store_positions(engine, [rep("b", 5)])
        assert select.select([listener], [], [], 5)[0], "no notification"
        listener.poll()
        payloads = [n.payload for n in listener.notifies if n.channel == CHANNEL]
    finally:
        listener.close()
    assert parse_watermark(payloads[-1]) == result.watermark
    with engine.connect() as conn:
        changed, new_mark = latest_since(conn, mark)
        nothing, _ = latest_since(conn, new_mark)
    assert len(changed) == 1 and changed[0][1] == NOW + timedelta(seconds=5)
    assert new_mark == result.watermark and nothing == []


def partition_of(engine) -> dict:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                text(
                    "SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD'), "
                    "tableoid::regclass::text FROM positions"
                )
            ).all()
        )


def test_day_partitions_are_created_and_retention_drops_old_ones(engine):
    add_devices(engine, ["a"])
    old = [PositionReport("a", NOW - timedelta(days=d), 116.4, 39.9) for d in (0, 3, 40)]
    assert store_positions(engine, old).stored == 3
    where = partition_of(engine)
    assert len(where) == 3 and all(p != "positions_default" for p in where.values())
    with engine.connect() as conn:
        names = set(
            conn.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'positions'::regclass"
                )
            ).scalars()
        )
    # Today and tomorrow exist ahead of any report.
    maintain(engine, retention_days=90)
    dropped = maintain(engine, retention_days=10)
    assert len(dropped) >= 1 and all(name in names for name in dropped)
    assert count_positions(engine) == 2
    # A report of a dropped day is still stored (its partition is made again).
    assert store_positions(engine, [PositionReport("a", NOW - timedelta(days=41), 116.4, 39.9)])
    assert count_positions(engine) == 3


def test_a_day_already_in_the_default_partition_still_stores(engine):
    add_devices(engine, ["a"])
    day = NOW - timedelta(days=20)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO positions (device_id, ts, lon, lat) "
                "SELECT id, :ts, 116.4, 39.9 FROM device WHERE identifier = 'a'"
            ),
            {"ts": day},
        )
    result = store_positions(engine, [PositionReport("a", day + timedelta(seconds=1), 116.4, 39.9)])
    assert result.stored == 1 and count_positions(engine) == 2


def test_a_big_batch_in_one_call(engine):
    devices = [f"d{i}" for i in range(500)]
    add_devices(engine, devices)
    batch = [
        PositionReport(dev, NOW - timedelta(seconds=k), 116.4 + k * 1e-5, 39.9, speed_kmh=5.0)
        for k in range(40)
        for dev in devices
    ]
    result = store_positions(engine, batch)
    assert result.stored == len(batch) == count_positions(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM latest_position")).scalar_one() == 500
        newest = conn.execute(text("SELECT DISTINCT ts FROM latest_position")).scalars().all()
    assert newest == [NOW]


def test_bad_device_ids_are_refused_even_when_registering(engine):
    for device in ("x" * 81, "tab\there", ""):
        report = PositionReport(device, NOW, 116.4, 39.9)
        with pytest.raises(BadInput):
            store_positions(engine, [rep("fine", 0), report], register_unknown=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM device")).scalar_one() == 0
    assert count_positions(engine) == 0
