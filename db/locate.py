"""Place a WGS-84 point in the territory: inside the district? which grid?

The bounding-box columns narrow the search in SQL; the exact polygon test
runs in Python.  District outlines are cached per database for a short
time, since every report needs them and they change only on import.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Connection, and_, select

from db.models import District, Grid
from maps.geometry import point_in_geometry

_CACHE_SECONDS = 30.0
_cache: dict[str, tuple[float, list[tuple[tuple[float, float, float, float], dict]]]] = {}
_cache_lock = threading.Lock()
_D = District.__table__
_G = Grid.__table__


def _districts(conn: Connection) -> list[tuple[tuple[float, float, float, float], dict]]:
    key = str(conn.engine.url)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit and now - hit[0] < _CACHE_SECONDS:
            return hit[1]
    rows = conn.execute(
        select(_D.c.min_lon, _D.c.min_lat, _D.c.max_lon, _D.c.max_lat, _D.c.geometry)
    ).all()
    value = [((r[0], r[1], r[2], r[3]), r[4]) for r in rows]
    with _cache_lock:
        _cache[key] = (now, value)
    return value


def forget_territory() -> None:
    """Drop cached outlines (after an import)."""
    with _cache_lock:
        _cache.clear()


def in_territory(conn: Connection, lon: float, lat: float) -> bool:
    """True when the point is inside an imported district, or none is imported yet."""
    districts = _districts(conn)
    if not districts:
        return True
    for (x0, y0, x1, y1), geometry in districts:
        if x0 <= lon <= x1 and y0 <= lat <= y1 and point_in_geometry(lon, lat, geometry):
            return True
    return False


def grid_at(conn: Connection, lon: float, lat: float) -> int | None:
    """The id of the management grid containing the point, if any."""
    rows = conn.execute(
        select(_G.c.id, _G.c.geometry).where(
            and_(_G.c.min_lon <= lon, _G.c.max_lon >= lon, _G.c.min_lat <= lat, _G.c.max_lat >= lat)
        )
    ).all()
    for gid, geometry in rows:
        if point_in_geometry(lon, lat, geometry):
            return gid
    return None


def locate_grids(conn: Connection, points: list[tuple[float, float]]) -> list[int | None]:
    """Grid ids for many WGS-84 (lon, lat) points, None where no grid contains one.

    This is the bulk entry point the gateway and the simulator use; it will be
    served by the lattice locator of ``maps/`` without changing its signature.
    """
    return [grid_at(conn, lon, lat) for lon, lat in points]
