"""Which cameras see a point: distance, bearing and the view wedge, with no Qt and no SQL.

A camera has a position, a view direction (``heading``, degrees clockwise from
north) and a horizontal view angle.  It *covers* a point when the point lies
within its range and inside the wedge ``heading ± angle / 2``; a camera
without a heading (a dome that turns, or not surveyed) covers nothing by
direction and is ranked by distance only.  The console offers the nearest
cameras of a case with the covering ones first (README: Video wall).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from maps.coords import haversine_m

DEFAULT_VIEW_ANGLE = 60.0  # degrees: a fixed street camera's usual lens


def bearing_deg(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Initial bearing from point 1 to point 2, degrees clockwise from north, in [0, 360)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return (math.degrees(math.atan2(x, y)) + 360.0) % 360.0


def angle_between(a: float, b: float) -> float:
    """The smaller angle between two directions, in [0, 180]."""
    d = abs((a - b) % 360.0)
    return 360.0 - d if d > 180.0 else d


def covers(heading: float | None, view_angle: float | None, bearing: float) -> bool:
    """Does a camera looking along ``heading`` with ``view_angle`` see along ``bearing``?"""
    if heading is None:
        return False
    angle = DEFAULT_VIEW_ANGLE if view_angle is None else view_angle
    if angle >= 360.0:
        return True
    return angle_between(heading, bearing) <= angle / 2.0


@dataclass(frozen=True)
class Candidate:
    """One camera near a point: how far, in which direction, and whether it looks there."""

    code: str
    distance_m: float
    bearing_deg: float
    covers: bool


def rank_cameras(
    lon: float, lat: float, cameras: Iterable[dict], radius_m: float, limit: int | None = None
) -> list[Candidate]:
    """Cameras within ``radius_m`` of the point: those whose view covers it first, then the
    rest, each group nearest first.  ``cameras`` are dicts with code, lon, lat, heading and
    view_angle (None where unknown)."""
    out = []
    for cam in cameras:
        d = float(haversine_m(cam["lon"], cam["lat"], lon, lat))
        if d > radius_m:
            continue
        b = bearing_deg(cam["lon"], cam["lat"], lon, lat)
        # A point under the camera (within a few metres) is seen whatever the direction.
        seen = d < 5.0 or covers(cam.get("heading"), cam.get("view_angle"), b)
        out.append(Candidate(cam["code"], d, b, seen))
    out.sort(key=lambda c: (not c.covers, c.distance_m, c.code))
    return out if limit is None else out[:limit]
