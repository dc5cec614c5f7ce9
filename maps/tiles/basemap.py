"""The scene of a home-made basemap: territory outlines in Web Mercator, labels, tiles to draw.

``tiles build`` renders an air-gapped hall's basemap from the territory the
database holds.  This module turns the plain data ``db.basemap_source`` reads
(WGS-84 GeoJSON) into what a painter needs, with no Qt: polygons as rings of
Web Mercator metres in the basemap's datum (GCJ-02 moves every vertex by the
formula of ``maps/coords.py``, so that the positions drawn over it later land
where they were), a label anchor inside each area (the pole of
inaccessibility, so a name never sits outside a crescent-shaped street), a
colour index per street with no two touching streets alike, and the tiles
each zoom needs.  The painter is ``widgets/map/tile_render.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.ops import polylabel

from maps.coords import wgs84_to_gcj02
from maps.geometry import polygons_of
from maps.tiles import DATUMS, TileError
from maps.tiles.xyz import lonlat_to_mercator, tile_of

#: the zooms a hall uses: the whole district (11) down to a few blocks (16)
DEFAULT_ZOOMS = (11, 16)
#: a build larger than this is refused with a hint (a county at z16 is ~20,000)
MAX_TILES = 30_000


@dataclass
class Area:
    """One district, street or community, ready to draw."""

    level: str  # "district" | "street" | "community"
    code: str
    name: str
    rings: list[np.ndarray]  # (n, 2) mercator metres; outer rings and holes alike
    bbox: tuple[float, float, float, float]  # mercator
    anchor: tuple[float, float]  # where the name goes, mercator
    area_m2: float  # in mercator square metres (for ordering labels by size)
    colour: int = 0  # palette index (streets: no two neighbours alike)


@dataclass
class BasemapScene:
    """Everything one basemap shows, in mercator metres of ``datum``."""

    datum: str
    districts: list[Area]
    streets: list[Area]
    communities: list[Area]
    bbox: tuple[float, float, float, float]  # mercator, the territory's
    lonlat_bbox: tuple[float, float, float, float]  # degrees of ``datum``
    name: str = "territory"
    tiles: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)

    @property
    def tile_count(self) -> int:
        return sum(len(t) for t in self.tiles.values())

    def areas(self):
        """Every area, largest level first (the order they are painted in)."""
        yield from self.districts
        yield from self.streets
        yield from self.communities


def _project(geometry: dict, datum: str) -> tuple[list[np.ndarray], MultiPolygon]:
    rings: list[np.ndarray] = []
    polys = []
    for polygon in polygons_of(geometry):
        projected = []
        for ring in polygon:
            arr = np.asarray([c[:2] for c in ring], dtype=float)
            if len(arr) < 3:
                continue
            lon, lat = arr[:, 0], arr[:, 1]
            if datum == "gcj02":
                lon, lat = wgs84_to_gcj02(lon, lat)
            x, y = lonlat_to_mercator(lon, lat)
            projected.append(np.column_stack([x, y]))
        if projected:
            rings.extend(projected)
            polys.append(Polygon(projected[0], projected[1:]))
    return rings, MultiPolygon(polys) if polys else MultiPolygon()


def _area(level: str, code: str, name: str, geometry: dict, datum: str) -> tuple[Area, object]:
    rings, shape = _project(geometry, datum)
    if shape.is_empty:
        raise TileError(
            f"{name}（{code}）的边界为空。", f"The boundary of {name} ({code}) is empty."
        )
    if not shape.is_valid:
        shape = shapely.make_valid(shape)
    largest = max(
        (g for g in getattr(shape, "geoms", [shape]) if isinstance(g, Polygon)),
        key=lambda g: g.area,
    )
    # tolerance of a few metres is plenty for where a name goes
    anchor = polylabel(largest, tolerance=max(2.0, largest.length / 2000))
    return Area(
        level=level,
        code=code,
        name=name,
        rings=rings,
        bbox=tuple(float(v) for v in shape.bounds),  # type: ignore[arg-type]
        anchor=(float(anchor.x), float(anchor.y)),
        area_m2=float(shape.area),
    ), shape


def _colour_streets(streets: list[Area], shapes: list) -> None:
    """Greedy colouring so that no two touching streets share a fill (five colours suffice
    for the maps a hall has; the palette has six)."""
    tree = shapely.STRtree(shapes)
    order = sorted(range(len(streets)), key=lambda i: -streets[i].area_m2)
    for i in order:
        near = tree.query(shapes[i].buffer(1.0), predicate="intersects")
        used = {streets[j].colour for j in near if j != i and streets[j].colour >= 0}
        streets[i].colour = next(c for c in range(64) if c not in used)
    # streets still -1 cannot remain: every index was assigned above


def build_scene(
    territory: dict, datum: str = "gcj02", zooms: tuple[int, int] = DEFAULT_ZOOMS,
    margin_tiles: int = 1, max_tiles: int = MAX_TILES,
) -> BasemapScene:
    """The scene of ``territory`` (as ``db.basemap_source.basemap_territory`` returns it).

    ``zooms`` is (min, max) inclusive; each zoom covers the territory's box and
    ``margin_tiles`` more tiles on every side, so panning a little past the
    border still shows ground.  More than ``max_tiles`` tiles is a
    :class:`TileError` naming the count and the way out (a lower max zoom).
    """
    if datum not in DATUMS:
        raise TileError(
            f"未知的底图坐标系 {datum!r}（应为 wgs84 或 gcj02）。",
            f"Unknown basemap datum {datum!r} (wgs84 or gcj02).",
        )
    lo, hi = int(zooms[0]), int(zooms[1])
    if not (0 <= lo <= hi <= 20):
        raise TileError(
            f"缩放级别须满足 0 ≤ 最小 ≤ 最大 ≤ 20（给出 {lo}–{hi}）。",
            f"Zoom levels must satisfy 0 ≤ min ≤ max ≤ 20 (given {lo}–{hi}).",
        )
    districts = [
        _area("district", d["adcode"], d["name"], d["geometry"], datum)[0]
        for d in territory["districts"]
    ]
    streets, street_shapes = [], []
    for s in territory["streets"]:
        area, shape = _area("street", s["code"], s["name"], s["geometry"], datum)
        area.colour = -1
        streets.append(area)
        street_shapes.append(shape)
    if streets:
        _colour_streets(streets, street_shapes)
    communities = [
        _area("community", c["code"], c["name"], c["geometry"], datum)[0]
        for c in territory["communities"]
    ]
    bbox = (
        min(a.bbox[0] for a in districts),
        min(a.bbox[1] for a in districts),
        max(a.bbox[2] for a in districts),
        max(a.bbox[3] for a in districts),
    )
    west, south, east, north = territory["bbox"]
    if datum == "gcj02":
        west, south = wgs84_to_gcj02(west, south)
        east, north = wgs84_to_gcj02(east, north)
    scene = BasemapScene(
        datum=datum,
        districts=districts,
        streets=streets,
        communities=communities,
        bbox=bbox,
        lonlat_bbox=(west, south, east, north),
        name="、".join(d.name for d in districts),
    )
    for z in range(lo, hi + 1):
        n = 1 << z
        x0, y0 = tile_of(bbox[0], bbox[3], z)
        x1, y1 = tile_of(bbox[2], bbox[1], z)
        x0, y0 = max(0, x0 - margin_tiles), max(0, y0 - margin_tiles)
        x1, y1 = min(n - 1, x1 + margin_tiles), min(n - 1, y1 + margin_tiles)
        scene.tiles[z] = [(z, x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]
    if scene.tile_count > max_tiles:
        raise TileError(
            f"z{lo}–{hi} 共需 {scene.tile_count} 块瓦片，超过上限 {max_tiles}；"
            "请降低 --max-zoom。",
            f"z{lo}–{hi} needs {scene.tile_count} tiles, over the limit of {max_tiles}; "
            "lower --max-zoom.",
        )
    return scene
