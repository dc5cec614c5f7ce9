"""The numpy bulk path stores exactly what the per-report path stores."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

import db.positions as positions
from db.errors import BadInput
from db.positions import PositionReport, store_positions
from tests.gateway_support import add_devices

NOW = datetime.now(UTC).replace(microsecond=0)


def batch(prefix: str, n: int = 3000, seed: int = 4) -> list[PositionReport]:
    """Mixed reports: missing values, attributes, repeats, unknown devices, odd types."""
    rng = random.Random(seed)
    now = NOW
    out = []
    for k in range(n):
        device = f"{prefix}{k % 40}" if k % 97 else f"{prefix}-unknown"
        ts = now - timedelta(seconds=k // 2 if k % 50 else 0, microseconds=k % 7)
        opt = [rng.choice([None, rng.uniform(0, 50)]) for _ in range(4)]
        battery = rng.choice([None, float(rng.randint(0, 100))])
        attrs = rng.choice([{}, {"hdop": 1.1}, {"hdop": rng.uniform(0, 3)}, {"event": "motion"}])
        out.append(PositionReport(device, ts, 116.4 + rng.uniform(0, 0.05),
                                  39.9 + rng.uniform(0, 0.05), *opt, battery, attrs))
    out[10] = PositionReport(f"{prefix}3", out[10].ts, 116.41, 39.91, speed_kmh=5)  # an int
    return out


def stored(engine, prefix: str) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT d.identifier, p.ts, p.lon, p.lat, p.speed_kmh, p.course, p.altitude, "
            "p.accuracy, p.battery, p.attributes FROM positions p JOIN device d "
            "ON d.id = p.device_id WHERE d.identifier LIKE :p ORDER BY 1, 2"),
            {"p": prefix + "%"}).all()
    return [(r[0][len(prefix):], *r[1:]) for r in rows]


def test_fast_and_per_report_paths_store_the_same(engine, monkeypatch):
    add_devices(engine, [f"f{k}" for k in range(40)] + [f"s{k}" for k in range(40)])
    monkeypatch.setattr(positions, "FAST_CHUNK", 500)  # several chunks; one has an odd value
    laid_out = []
    real_encode = positions.pgcopy_batch.encode
    monkeypatch.setattr(positions.pgcopy_batch, "encode",
                        lambda *a: laid_out.append(1) or real_encode(*a))
    fast = store_positions(engine, batch("f"))
    assert len(laid_out) == 5  # six chunks: five laid out by numpy, one report by report
    calls = []
    real = positions._fast_rows
    monkeypatch.setattr(positions, "_fast_rows", lambda *a: calls.append(1) or None)
    slow = store_positions(engine, batch("s"))
    monkeypatch.setattr(positions, "_fast_rows", real)
    assert calls  # the second batch really took the per-report path
    assert (fast.stored, fast.duplicates, fast.unknown) == (slow.stored, slow.duplicates,
                                                            slow.unknown)
    assert fast.stored > 2000 and fast.duplicates > 0 and fast.unknown > 0
    assert stored(engine, "f") == stored(engine, "s")
    with engine.connect() as conn:
        latest = conn.execute(text(
            "SELECT substr(d.identifier, 2), l.ts, l.lon, l.lat, l.speed_kmh FROM "
            "latest_position l JOIN device d ON d.id = l.device_id ORDER BY 1, "
            "left(d.identifier, 1)")).all()
    pairs = [latest[i:i + 2] for i in range(0, len(latest), 2)]
    assert all(a[1:] == b[1:] for a, b in pairs)


def test_a_bad_report_anywhere_in_a_big_batch_is_refused(engine):
    add_devices(engine, ["g0"])
    reports = batch("g", n=50_000)
    reports = [PositionReport("g0", r.ts, r.lon, r.lat, r.speed_kmh) for r in reports]
    reports[-3] = PositionReport("g0", reports[-3].ts, 116.4, float("nan"))
    with pytest.raises(BadInput):
        store_positions(engine, reports)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM positions")).scalar_one() == 0
