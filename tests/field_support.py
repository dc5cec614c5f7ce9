"""Hand-made tracks for the field-force tests: a small district, workers, fixes by hand.

Fixes go straight into ``positions`` on the owner's connection with the grid the
territory gives their cell, so each test decides exactly which fix lies where and when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text

from tests.map_support import small_district

TZ = ZoneInfo("Asia/Shanghai")  # the hall's default zone (db.clock)


@dataclass
class Cell:
    code: str
    grid_id: int
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def at(self, fx: float = 0.5, fy: float = 0.5) -> tuple[float, float]:
        """A point at fractions of the cell's box (0.5, 0.5: the middle)."""
        return (self.min_lon + fx * (self.max_lon - self.min_lon),
                self.min_lat + fy * (self.max_lat - self.min_lat))


@dataclass
class Place:
    own_grid: int
    other_grid: int
    own_cells: list[Cell]  # whole (unclipped) cells of the own grid
    other_cell: Cell
    n_own_cells: int


def territory(engine: Engine) -> Place:
    small_district(engine)
    with engine.connect() as conn:
        grids = conn.execute(text("SELECT id FROM grid ORDER BY code LIMIT 2")).scalars().all()

        def cells(g):
            return [Cell(*r) for r in conn.execute(text(
                "SELECT code, grid_id, min_lon, min_lat, max_lon, max_lat FROM unit_cell "
                "WHERE grid_id = :g AND NOT clipped ORDER BY code"), {"g": g})]

        n = conn.execute(text("SELECT count(*) FROM unit_cell WHERE grid_id = :g"),
                         {"g": grids[0]}).scalar_one()
        own, other = cells(grids[0]), cells(grids[1])
    assert len(own) >= 4 and other
    return Place(grids[0], grids[1], own, other[0], n)


def add_worker(engine: Engine, code: str, grid_id: int, role: str = "full_time",
               device: str | None = None) -> tuple[int, int | None]:
    """A worker of ``grid_id`` (with a terminal when ``device``): (worker id, device id)."""
    with engine.begin() as conn:
        wid = conn.execute(text(
            "INSERT INTO worker (code, name, grid_id, roster_role, status) "
            "VALUES (:c, :n, :g, :r, 'on_duty') RETURNING id"),
            {"c": code, "n": f"员{code}", "g": grid_id, "r": role}).scalar_one()
        did = None
        if device:
            did = conn.execute(text(
                "INSERT INTO device (identifier, worker_id) VALUES (:i, :w) RETURNING id"),
                {"i": device, "w": wid}).scalar_one()
    return wid, did


def put_fixes(engine: Engine, device_id: int,
              fixes: list[tuple[datetime, float, float, float | None, int | None]]) -> None:
    """Insert fixes (time, lon, lat, speed km/h or None, grid id or None) as stored rows."""
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO positions (device_id, ts, lon, lat, speed_kmh, grid_id) "
            "VALUES (:d, :t, :lon, :lat, :v, :g)"),
            [{"d": device_id, "t": t, "lon": float(lon), "lat": float(lat),
              "v": None if v is None else float(v), "g": g}
             for t, lon, lat, v, g in fixes])


def local(y: int, mo: int, d: int, h: int, mi: int, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=TZ)


def positions_at(engine: Engine, when, stale_s: float) -> dict[int, tuple[float, float]]:
    """What ``positions`` holds for T, asked plainly: each terminal's latest fix at or
    before T, if it is at most ``stale_s`` old (the replay's answers are checked by it)."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT DISTINCT ON (device_id) device_id, lon, lat FROM positions "
            "WHERE ts <= :t AND ts >= :t - make_interval(secs => :s) "
            "ORDER BY device_id, ts DESC"), {"t": when, "s": stale_s}).all()
    return {r.device_id: (r.lon, r.lat) for r in rows}


def open_cases_at(engine: Engine, when) -> dict[int, str]:
    """The log replayed to T, asked plainly: each case's newest entry at or before T, the
    cases whose status then was not final (DOMAIN: closed, archived, rejected, merged)."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT DISTINCT ON (case_id) case_id, to_status FROM case_log WHERE at <= :t "
            "ORDER BY case_id, seq DESC"), {"t": when}).all()
    final = {"closed", "archived", "rejected", "merged"}
    return {r.case_id: r.to_status for r in rows if r.to_status not in final}
