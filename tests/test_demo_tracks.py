"""``python main.py demo tracks --hours H`` on a seeded demo: what the README and the
command's own description promise, worked out from them, not read back from the code.

The demo has one worker with a terminal per grid (``demo seed``: devices = grids); each
is walked through the last H hours as the simulator walks (inside the own grid, cell to
cell — so a grid without one whole unit cell has no walk: such a worker is left out),
reporting every 30 s; a second run right after adds nothing.  Three minutes:
6 fixes a worker (give or take one at the ends), 30 s apart.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from itertools import pairwise

from sqlalchemy import text

from db.engine import make_engine
from db.locate import locate_grids
from tests.cli_runner import cli
from tests.conftest import PASSWORD

HOURS = 0.05  # three minutes
REPORT_S = 30.0
LINE = re.compile(r"^(\d+) fixes of (\d+) workers, (\S+) – (\S+)$")


def _run(db_url: str, line: str):
    out = cli(db_url, line, PASSWORD)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    return out


def test_demo_tracks_walks_everyone_in_their_own_grid_once(db_url):
    seeded = json.loads(_run(db_url, "demo seed --force --days 1 --per-day 5 --json").stdout)
    first = LINE.match(_run(db_url, f"demo tracks --hours {HOURS}").stdout.strip())
    assert first, "one summary line"
    fixes, workers = int(first[1]), int(first[2])
    start, end = datetime.fromisoformat(first[3]), datetime.fromisoformat(first[4])
    engine = make_engine(db_url)
    with engine.connect() as conn:
        walkable = conn.execute(text(
            "SELECT count(*) FROM device d JOIN worker w ON w.id = d.worker_id "
            "WHERE w.active AND EXISTS (SELECT 1 FROM unit_cell c WHERE c.grid_id = w.grid_id "
            "AND NOT c.clipped)")).scalar_one()
    # Every terminal of the demo whose grid has a cell to walk in: nearly all of them.
    assert workers == walkable >= seeded["devices"] - 5
    span = (end - start).total_seconds()
    assert abs(span - HOURS * 3600) < 60
    per_worker = span / REPORT_S
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT p.device_id, extract(epoch FROM p.ts)::float8 AS at, p.lon, p.lat, "
                "w.grid_id AS own FROM positions p JOIN device d ON d.id = p.device_id "
                "JOIN worker w ON w.id = d.worker_id WHERE p.ts >= :a AND p.ts < :b "
                "ORDER BY p.device_id, p.ts"), {"a": start, "b": end}).all()
            located = locate_grids(conn, [(r.lon, r.lat) for r in rows])
        assert len(rows) == fixes  # what it said it stored is what the table holds
        by_device: dict[int, list[float]] = {}
        for r in rows:
            by_device.setdefault(r.device_id, []).append(r.at)
        assert len(by_device) == workers
        for times in by_device.values():
            assert per_worker - 1 <= len(times) <= per_worker + 1
            gaps = {round(b - a, 3) for a, b in pairwise(times)}
            assert gaps == {REPORT_S}
        # Walked inside the own grid: nearly every fix lies in the worker's own grid.
        own = sum(g == r.own for g, r in zip(located, rows, strict=True))
        assert own >= 0.9 * len(rows), (own, len(rows))
        # A second run right after: the span is already covered, nothing is added.
        second = LINE.match(_run(db_url, f"demo tracks --hours {HOURS}").stdout.strip())
        assert second and int(second[1]) == 0
        with engine.connect() as conn:
            total = conn.execute(text("SELECT count(*) FROM positions")).scalar_one()
        assert total == fixes
    finally:
        engine.dispose()
