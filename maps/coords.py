"""WGS-84 ↔ GCJ-02, and the metric helpers the territory is built with.

GPS terminals report WGS-84; Chinese basemaps and the district files in
``resources/districts`` are GCJ-02, offset from WGS-84 by a few hundred
metres by an obfuscation formula published with the standard.  The database
stores WGS-84 only; every coordinate that crosses to or from a GCJ-02 source
goes through these functions, never silently.

The forward transform is the public formula; the inverse has no closed form
and is solved by fixed-point iteration to well under a centimetre.
Functions accept floats or numpy arrays alike.
"""

from __future__ import annotations

import math

import numpy as np

_A = 6378245.0  # Krasovsky 1940 semi-major axis used by the GCJ-02 formula
_EE = 0.00669342162296594323  # its first eccentricity squared
EARTH_RADIUS_M = 6371008.8  # mean Earth radius, for local metric approximations


def out_of_china(lon, lat):
    """True where GCJ-02 does not apply (the formula leaves such points unchanged)."""
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    result = (lon < 72.004) | (lon > 137.8347) | (lat < 0.8293) | (lat > 55.8271)
    return bool(result) if result.ndim == 0 else result


def _transform_lat(x, y):
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    ret += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    ret += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    ret += (160.0 * np.sin(y / 12.0 * np.pi) + 320 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    return ret


def _transform_lon(x, y):
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    ret += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    ret += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    ret += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    return ret


def _offset(lon, lat):
    dlat = _transform_lat(lon - 105.0, lat - 35.0)
    dlon = _transform_lon(lon - 105.0, lat - 35.0)
    radlat = lat / 180.0 * np.pi
    magic = 1 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    return dlon, dlat


def _scalar_or_array(lon, lat, out_lon, out_lat):
    if np.ndim(lon) == 0 and np.ndim(lat) == 0:
        return float(out_lon), float(out_lat)
    return out_lon, out_lat


def wgs84_to_gcj02(lon, lat):
    """GCJ-02 coordinates of a WGS-84 point (unchanged outside China)."""
    x = np.asarray(lon, dtype=float)
    y = np.asarray(lat, dtype=float)
    dlon, dlat = _offset(x, y)
    outside = out_of_china(x, y)
    gx = np.where(outside, x, x + dlon)
    gy = np.where(outside, y, y + dlat)
    return _scalar_or_array(lon, lat, gx, gy)


def gcj02_to_wgs84(lon, lat, tolerance_deg: float = 1e-10, max_iter: int = 30):
    """WGS-84 coordinates of a GCJ-02 point, by iterating the forward transform."""
    gx = np.asarray(lon, dtype=float)
    gy = np.asarray(lat, dtype=float)
    x, y = gx.copy(), gy.copy()
    for _ in range(max_iter):
        fx, fy = wgs84_to_gcj02(x, y)
        ex, ey = np.asarray(fx) - gx, np.asarray(fy) - gy
        x, y = x - ex, y - ey
        if np.all(np.abs(ex) < tolerance_deg) and np.all(np.abs(ey) < tolerance_deg):
            break
    return _scalar_or_array(lon, lat, x, y)


def geometry_gcj02_to_wgs84(geometry: dict) -> dict:
    """A GeoJSON Polygon/MultiPolygon converted from GCJ-02 to WGS-84."""
    return _map_geometry(geometry, gcj02_to_wgs84)


def geometry_wgs84_to_gcj02(geometry: dict) -> dict:
    """A GeoJSON Polygon/MultiPolygon converted from WGS-84 to GCJ-02 (for basemaps)."""
    return _map_geometry(geometry, wgs84_to_gcj02)


def _map_geometry(geometry: dict, fn) -> dict:
    def ring(coords):
        arr = np.asarray([c[:2] for c in coords], dtype=float)
        x, y = fn(arr[:, 0], arr[:, 1])
        return [[float(a), float(b)] for a, b in zip(x, y, strict=True)]

    kind = geometry["type"]
    if kind == "Polygon":
        return {"type": kind, "coordinates": [ring(r) for r in geometry["coordinates"]]}
    if kind == "MultiPolygon":
        return {
            "type": kind,
            "coordinates": [[ring(r) for r in poly] for poly in geometry["coordinates"]],
        }
    raise ValueError(f"not a polygon geometry: {kind!r}")


def haversine_m(lon1, lat1, lon2, lat2):
    """Great-circle distance in metres (floats or arrays)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    d = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(h))
    return float(d) if np.ndim(d) == 0 else d


class LocalEqualArea:
    """Lambert azimuthal equal-area projection centred on a district, in metres.

    Areas measured in it are true areas (to the sphere), so cell areas and the
    district's area can be compared directly; distances near the centre are
    true to a fraction of a percent over a county-sized area.
    """

    def __init__(self, lon0: float, lat0: float):
        self.lon0 = math.radians(lon0)
        self.lat0 = math.radians(lat0)
        self.sin0 = math.sin(self.lat0)
        self.cos0 = math.cos(self.lat0)

    def forward(self, lon, lat):
        lam = np.radians(lon) - self.lon0
        phi = np.radians(lat)
        sinp, cosp = np.sin(phi), np.cos(phi)
        cosl = np.cos(lam)
        k = np.sqrt(2.0 / (1.0 + self.sin0 * sinp + self.cos0 * cosp * cosl))
        x = EARTH_RADIUS_M * k * cosp * np.sin(lam)
        y = EARTH_RADIUS_M * k * (self.cos0 * sinp - self.sin0 * cosp * cosl)
        return x, y

    def transform_coords(self, coords: np.ndarray) -> np.ndarray:
        """(n, 2) lon/lat array → (n, 2) metres: the signature shapely.transform expects."""
        x, y = self.forward(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])
