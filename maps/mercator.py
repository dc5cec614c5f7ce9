"""Web Mercator metres for the map canvas, in the datum the basemap is drawn in.

The canvas works in Web Mercator metres (EPSG:3857), so XYZ tiles lie on it as
squares and a view is a plain rectangle.  Everything the database holds is
WGS-84 (docs/DOMAIN.md "Coordinates"); a Chinese basemap is drawn in GCJ-02,
so a :class:`Projector` for the ``gcj02`` datum shifts WGS-84 positions by the
GCJ-02 formula (``maps.coords``) before projecting, and back after inverting.
Never mixed silently: every position on the canvas goes through one projector.

Functions take floats or numpy arrays alike.
"""

from __future__ import annotations

import math

import numpy as np

from maps.coords import gcj02_to_wgs84, wgs84_to_gcj02

R = 6378137.0  # WGS-84 semi-major axis, the sphere of Web Mercator
HALF_WORLD = math.pi * R  # the world spans [-HALF_WORLD, HALF_WORLD] in x and y
MAX_LAT = 85.05112877980659  # where Web Mercator is cut so the world is a square
DATUMS = ("wgs84", "gcj02")


def to_mercator(lon, lat):
    """Web Mercator metres of lon/lat degrees (latitude clamped to the square world)."""
    lon_a = np.asarray(lon, dtype=float)
    lat_a = np.clip(np.asarray(lat, dtype=float), -MAX_LAT, MAX_LAT)
    x = np.radians(lon_a) * R
    y = np.log(np.tan(np.pi / 4.0 + np.radians(lat_a) / 2.0)) * R
    if x.ndim == 0 and y.ndim == 0:
        return float(x), float(y)
    return x, y


def from_mercator(x, y):
    """Lon/lat degrees of Web Mercator metres."""
    x_a = np.asarray(x, dtype=float)
    y_a = np.asarray(y, dtype=float)
    lon = np.degrees(x_a / R)
    lat = np.degrees(2.0 * np.arctan(np.exp(y_a / R)) - np.pi / 2.0)
    if lon.ndim == 0 and lat.ndim == 0:
        return float(lon), float(lat)
    return lon, lat


def metres_per_pixel(zoom: float) -> float:
    """Mercator metres one 256-pixel-tile pixel spans at a web zoom level."""
    return 2.0 * HALF_WORLD / (256.0 * 2.0**zoom)


def zoom_of(mercator_m_per_px: float) -> float:
    """The web zoom level that shows ``mercator_m_per_px`` mercator metres per pixel."""
    return math.log2(2.0 * HALF_WORLD / (256.0 * max(mercator_m_per_px, 1e-9)))


def ground_scale(lat: float) -> float:
    """Ground metres per mercator metre at a latitude (Web Mercator stretches by 1/cos)."""
    return math.cos(math.radians(max(-MAX_LAT, min(MAX_LAT, lat))))


class Projector:
    """WGS-84 lon/lat ↔ canvas metres, in the datum the basemap is drawn in."""

    def __init__(self, datum: str = "wgs84"):
        if datum not in DATUMS:
            raise ValueError(f"unknown datum {datum!r}")
        self.datum = datum

    def forward(self, lon, lat):
        """Canvas metres of WGS-84 positions (shifted to GCJ-02 first for a GCJ-02 basemap)."""
        if self.datum == "gcj02":
            lon, lat = wgs84_to_gcj02(lon, lat)
        return to_mercator(lon, lat)

    def inverse(self, x, y):
        """WGS-84 lon/lat of canvas metres."""
        lon, lat = from_mercator(x, y)
        if self.datum == "gcj02":
            lon, lat = gcj02_to_wgs84(lon, lat)
        return lon, lat

    def forward_geometry(self, geometry: dict) -> list[list[np.ndarray]]:
        """A WGS-84 GeoJSON Polygon/MultiPolygon as polygons of rings of (n, 2) metres."""
        from maps.geometry import polygons_of

        out = []
        for rings in polygons_of(geometry):
            polygon = []
            for ring in rings:
                arr = np.asarray([c[:2] for c in ring], dtype=float)
                if len(arr) < 3:
                    continue
                x, y = self.forward(arr[:, 0], arr[:, 1])
                polygon.append(np.column_stack([x, y]))
            if polygon:
                out.append(polygon)
        return out
