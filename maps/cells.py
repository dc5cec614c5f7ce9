"""Unit cells (万米单元网格): a ~100 m lattice clipped exactly to a district.

The lattice is aligned to longitude and latitude (cells are lon/lat boxes of
about ``cell_m`` metres at the district's centre), so a point finds its cell
by arithmetic.  Cells crossed by the boundary are clipped to it; the rest
are whole boxes, kept or dropped by their centre.  Which cells the boundary
crosses is found by sampling it densely and checking every candidate box
exactly, so no sliver is lost and the areas add up to the district's.

Adjacency is the lattice's four neighbours, except that two clipped cells
count as neighbours only if their clipped shapes share an edge (a narrow
inlet between them is not a street they share).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from maps.coords import EARTH_RADIUS_M, LocalEqualArea


@dataclass(frozen=True)
class Lattice:
    """A lon/lat lattice: column 0 starts at ``origin_lon``, row 0 at ``origin_lat`` (north)."""

    origin_lon: float
    origin_lat: float
    dlon: float
    dlat: float
    n_cols: int
    n_rows: int
    cell_m: float

    @classmethod
    def covering(cls, bounds: tuple[float, float, float, float], cell_m: float) -> Lattice:
        min_lon, min_lat, max_lon, max_lat = bounds
        lat0 = (min_lat + max_lat) / 2
        dlat = math.degrees(cell_m / EARTH_RADIUS_M)
        dlon = dlat / math.cos(math.radians(lat0))
        n_cols = max(1, math.ceil((max_lon - min_lon) / dlon))
        n_rows = max(1, math.ceil((max_lat - min_lat) / dlat))
        return cls(min_lon, max_lat, dlon, dlat, n_cols, n_rows, cell_m)

    def col_row(self, lon, lat):
        """Lattice column and row of points (ties go east and south).

        The division alone can land a hair short of an edge for a point that
        lies exactly on it (``(x0 + k·d − x0) / d`` may be ``k − ε``), which
        would give the point to the cell west or north of the line; so the
        answer is checked against the edges themselves, computed as
        ``box_bounds`` computes them.
        """
        lon = np.asarray(lon, dtype=float)
        lat = np.asarray(lat, dtype=float)
        col = np.floor((lon - self.origin_lon) / self.dlon)
        row = np.floor((self.origin_lat - lat) / self.dlat)
        col += (lon >= self.origin_lon + (col + 1) * self.dlon).astype(float)
        col -= (lon < self.origin_lon + col * self.dlon).astype(float)
        row += (lat <= self.origin_lat - (row + 1) * self.dlat).astype(float)
        row -= (lat > self.origin_lat - row * self.dlat).astype(float)
        return col.astype(np.int64), row.astype(np.int64)

    def col_row_one(self, lon: float, lat: float) -> tuple[int, int]:
        """``col_row`` for one point in plain arithmetic (the gateway's single lookups)."""
        col = math.floor((lon - self.origin_lon) / self.dlon)
        row = math.floor((self.origin_lat - lat) / self.dlat)
        if lon >= self.origin_lon + (col + 1) * self.dlon:
            col += 1
        elif lon < self.origin_lon + col * self.dlon:
            col -= 1
        if lat <= self.origin_lat - (row + 1) * self.dlat:
            row += 1
        elif lat > self.origin_lat - row * self.dlat:
            row -= 1
        return col, row

    def box_bounds(self, col, row):
        """(min_lon, min_lat, max_lon, max_lat) arrays of the lattice boxes."""
        col = np.asarray(col, dtype=float)
        row = np.asarray(row, dtype=float)
        # Each edge from its own index, so neighbours share bit-identical edges
        # and unions of cells dissolve cleanly.
        return (
            self.origin_lon + col * self.dlon,
            self.origin_lat - (row + 1) * self.dlat,
            self.origin_lon + (col + 1) * self.dlon,
            self.origin_lat - row * self.dlat,
        )

    def centres(self, col, row):
        x0, y0, x1, y1 = self.box_bounds(col, row)
        return (x0 + x1) / 2, (y0 + y1) / 2


@dataclass
class CellSet:
    """The cells of one district, in lattice row-major order."""

    lattice: Lattice
    cols: np.ndarray  # int64
    rows: np.ndarray  # int64
    geoms: np.ndarray  # shapely geometries (whole boxes or clipped pieces)
    clipped: np.ndarray  # bool
    areas: np.ndarray  # m², true areas (equal-area projection)
    x: np.ndarray  # metric centre of each cell's box (for ordering and cuts)
    y: np.ndarray
    index_at: np.ndarray  # (n_rows, n_cols) int64, -1 where no cell
    no_link_right: np.ndarray  # bool: a clipped cell whose shape misses its east neighbour's
    no_link_down: np.ndarray  # bool: … or its south neighbour's
    district_area_m2: float

    def __len__(self) -> int:
        return len(self.cols)

    def neighbours(self, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Edges (as positions into ``members``) between the given cells."""
        members = np.asarray(members, dtype=np.int64)
        pos = self._scratch()
        pos[members] = np.arange(len(members))
        us, vs = [], []
        for dc, dr, blocked in ((1, 0, self.no_link_right), (0, 1, self.no_link_down)):
            c = self.cols[members] + dc
            r = self.rows[members] + dr
            ok = (c < self.lattice.n_cols) & (r < self.lattice.n_rows)
            other = np.full(len(members), -1, dtype=np.int64)
            other[ok] = self.index_at[r[ok], c[ok]]
            has = other >= 0
            has[has] &= pos[other[has]] >= 0
            has &= ~blocked[members]
            src = np.nonzero(has)[0]
            us.append(src)
            vs.append(pos[other[src]])
        pos[members] = -1  # leave the scratch array clean for the next call
        return np.concatenate(us), np.concatenate(vs)

    def _scratch(self) -> np.ndarray:
        """A reusable all -1 array of one slot per cell (allocating it per call is O(n))."""
        scratch = getattr(self, "_pos", None)
        if scratch is None or len(scratch) != len(self):
            scratch = np.full(len(self), -1, dtype=np.int64)
            object.__setattr__(self, "_pos", scratch)
        return scratch

    def linked(self, a: int, b: int) -> bool:
        """True when cells ``a`` and ``b`` are lattice neighbours sharing an edge."""
        dc = self.cols[b] - self.cols[a]
        dr = self.rows[b] - self.rows[a]
        if dc == 1 and dr == 0:
            return not self.no_link_right[a]
        if dc == -1 and dr == 0:
            return not self.no_link_right[b]
        if dr == 1 and dc == 0:
            return not self.no_link_down[a]
        if dr == -1 and dc == 0:
            return not self.no_link_down[b]
        return False


def build_cells(boundary: BaseGeometry, cell_m: float = 100.0) -> CellSet:
    """Cover ``boundary`` (WGS-84 lon/lat) with lattice cells clipped to it."""
    if boundary.is_empty:
        raise ValueError("empty boundary")
    lattice = Lattice.covering(boundary.bounds, cell_m)
    shapely.prepare(boundary)
    # 1. Candidate border boxes: every box a dense sample of the boundary falls
    #    in, and their eight neighbours.
    step = min(lattice.dlon, lattice.dlat) / 4
    sample = shapely.segmentize(boundary.boundary, step)
    pts = shapely.get_coordinates(sample)
    bc, br = lattice.col_row(pts[:, 0], pts[:, 1])
    border = np.zeros((lattice.n_rows + 2, lattice.n_cols + 2), dtype=bool)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            border[
                np.clip(br + dr, -1, lattice.n_rows) + 1, np.clip(bc + dc, -1, lattice.n_cols) + 1
            ] = True
    border = border[1:-1, 1:-1]
    # 2. Boxes away from the boundary are wholly in or out: test their centres.
    rows, cols = np.nonzero(~border)
    cx, cy = lattice.centres(cols, rows)
    inside = shapely.contains_xy(boundary, cx, cy)
    whole_cols, whole_rows = cols[inside], rows[inside]
    # 3. Candidate boxes are clipped exactly.
    rows, cols = np.nonzero(border)
    x0, y0, x1, y1 = lattice.box_bounds(cols, rows)
    boxes = shapely.box(x0, y0, x1, y1)
    pieces = shapely.intersection(boxes, boundary)
    keep = ~shapely.is_empty(pieces) & (shapely.area(pieces) > 0)
    pieces, cols, rows, boxes = pieces[keep], cols[keep], rows[keep], boxes[keep]
    whole_piece = np.abs(shapely.area(pieces) - shapely.area(boxes)) <= 1e-12 * shapely.area(boxes)
    pieces = np.where(whole_piece, boxes, pieces)
    pieces = np.array([_polygonal(p) for p in pieces], dtype=object)
    # 4. Together, in row-major order.
    all_cols = np.concatenate([whole_cols, cols]).astype(np.int64)
    all_rows = np.concatenate([whole_rows, rows]).astype(np.int64)
    wx0, wy0, wx1, wy1 = lattice.box_bounds(whole_cols, whole_rows)
    geoms = np.concatenate([shapely.box(wx0, wy0, wx1, wy1), pieces])
    clipped = np.concatenate([np.zeros(len(whole_cols), bool), ~whole_piece])
    order = np.lexsort((all_cols, all_rows))
    all_cols, all_rows = all_cols[order], all_rows[order]
    geoms, clipped = geoms[order], clipped[order]
    # 5. True areas and metric centres in an equal-area projection on the centre.
    cx0, cy0 = boundary.centroid.x, boundary.centroid.y
    proj = LocalEqualArea(cx0, cy0)
    areas = shapely.area(shapely.transform(geoms, proj.transform_coords))
    district_area = float(shapely.area(shapely.transform(boundary, proj.transform_coords)))
    mx, my = lattice.centres(all_cols, all_rows)
    x, y = proj.forward(mx, my)
    index_at = np.full((lattice.n_rows, lattice.n_cols), -1, dtype=np.int64)
    index_at[all_rows, all_cols] = np.arange(len(all_cols))
    n = len(all_cols)
    cells = CellSet(
        lattice,
        all_cols,
        all_rows,
        geoms,
        clipped,
        np.asarray(areas),
        x,
        y,
        index_at,
        np.zeros(n, bool),
        np.zeros(n, bool),
        district_area,
    )
    _cut_false_links(cells)
    return cells


def _polygonal(geom):
    """Keep only the areal part of an intersection (drop stray lines and points)."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    polys = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(polys) if polys else geom


def _cut_false_links(cells: CellSet) -> None:
    """Clipped neighbours that do not share an edge are not adjacent."""
    clipped_idx = np.nonzero(cells.clipped)[0]
    lat = cells.lattice
    for i in clipped_idx:
        c, r = cells.cols[i], cells.rows[i]
        for dc, dr, blocked in ((1, 0, cells.no_link_right), (0, 1, cells.no_link_down)):
            if c + dc >= lat.n_cols or r + dr >= lat.n_rows:
                continue
            j = cells.index_at[r + dr, c + dc]
            if j < 0 or not cells.clipped[j]:
                continue
            shared = cells.geoms[i].intersection(cells.geoms[j])
            if shared.length <= 1e-3 * min(lat.dlon, lat.dlat):
                blocked[i] = True
