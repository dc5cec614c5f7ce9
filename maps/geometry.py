"""Small, dependency-free planar geometry on GeoJSON coordinates.

Exact point-in-polygon is needed wherever a position is placed in a grid;
these functions take GeoJSON ``Polygon``/``MultiPolygon`` geometries as
stored in the database and answer in degrees (small areas, so planar tests
on lon/lat are exact enough for containment).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Ring = Sequence[Sequence[float]]


def point_in_ring(lon: float, lat: float, ring: Ring) -> bool:
    """Even-odd ray casting; points exactly on an edge may fall either way."""
    inside = False
    n = len(ring)
    j = n - 1
    for i in range(n):
        xi, yi = ring[i][0], ring[i][1]
        xj, yj = ring[j][0], ring[j][1]
        if (yi > lat) != (yj > lat):
            x_cross = xi + (lat - yi) * (xj - xi) / (yj - yi)
            if lon < x_cross:
                inside = not inside
        j = i
    return inside


def polygons_of(geometry: dict) -> Iterable[Sequence[Ring]]:
    """The polygons (outer ring, then holes) of a Polygon or MultiPolygon."""
    kind = geometry.get("type")
    if kind == "Polygon":
        yield geometry["coordinates"]
    elif kind == "MultiPolygon":
        yield from geometry["coordinates"]
    else:
        raise ValueError(f"not a polygon geometry: {kind!r}")


def point_in_geometry(lon: float, lat: float, geometry: dict) -> bool:
    """True when the point lies in the polygon(s), outside every hole."""
    for rings in polygons_of(geometry):
        if rings and point_in_ring(lon, lat, rings[0]):
            if not any(point_in_ring(lon, lat, hole) for hole in rings[1:]):
                return True
    return False


def bbox_of(geometry: dict) -> tuple[float, float, float, float]:
    """(min_lon, min_lat, max_lon, max_lat) of a polygon geometry."""
    xs: list[float] = []
    ys: list[float] = []
    for rings in polygons_of(geometry):
        for x, y, *_ in rings[0]:
            xs.append(x)
            ys.append(y)
    return min(xs), min(ys), max(xs), max(ys)
