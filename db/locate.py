"""Place a WGS-84 point in the territory: inside a district? which grid?

Backed by ``maps.locator.TerritoryIndex`` (lattice arithmetic, exact tests
only on border cells), built once from the database and kept per database.
Each process re-checks cheaply every few seconds whether a district was
imported or replaced since, and rebuilds the index if so; an import in this
process drops it at once (``forget_territory``).
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Connection, text

from maps.locator import TerritoryIndex, district_index

_RECHECK_SECONDS = 5.0
_cache: dict[str, tuple[tuple, float, TerritoryIndex]] = {}
_lock = threading.Lock()


def _version(conn: Connection) -> tuple:
    row = conn.execute(text("SELECT count(*), max(imported_at) FROM district")).one()
    return (row[0], row[1])


def territory(conn: Connection) -> TerritoryIndex:
    """The territory index of the database ``conn`` is connected to."""
    key = conn.engine.url.render_as_string(hide_password=False)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
    if hit and now - hit[1] < _RECHECK_SECONDS:
        return hit[2]
    version = _version(conn)
    if hit and hit[0] == version:
        with _lock:
            _cache[key] = (version, now, hit[2])
        return hit[2]
    index = load_index(conn)
    with _lock:
        _cache[key] = (version, now, index)
    return index


def load_index(conn: Connection) -> TerritoryIndex:
    """Build the index of every imported district from the database."""
    districts = []
    for d in conn.execute(
        text(
            "SELECT adcode, name, origin_lon, origin_lat, dlon, dlat, n_cols, n_rows, cell_m, "
            "min_lon, min_lat, max_lon, max_lat FROM district WHERE n_cols > 0 ORDER BY adcode"
        )
    ):
        cells = conn.execute(
            text(
                "SELECT code, grid_id, col, row, clipped, "
                "CASE WHEN clipped THEN geometry::text END AS geometry "
                "FROM unit_cell WHERE adcode = :a"
            ),
            {"a": d.adcode},
        ).all()
        districts.append(district_index(d, cells))
    return TerritoryIndex(districts)


def forget_territory() -> None:
    """Drop cached indexes (after an import in this process)."""
    with _lock:
        _cache.clear()


def in_territory(conn: Connection, lon: float, lat: float) -> bool:
    """True when the point is inside an imported district, or none is imported yet."""
    index = territory(conn)
    return not index or index.cell(lon, lat) is not None


def grid_at(conn: Connection, lon: float, lat: float) -> int | None:
    """The id of the management grid containing the point, if any."""
    return locate_grids(conn, [(lon, lat)])[0]


def locate_grids(conn: Connection, points: list[tuple[float, float]]) -> list[int | None]:
    """Grid ids for many WGS-84 (lon, lat) points, None where no grid contains one.

    The bulk entry point of the gateway and the simulator.
    """
    if not points:
        return []
    index = territory(conn)
    if not index:
        return [None] * len(points)
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    return index.grid_ids(lons, lats)
