"""Locate points in the territory by lattice arithmetic: fast enough for the gateway.

A point's lattice column and row name its unit cell directly; only when that
cell was clipped by the district border is the point tested against the
cell's exact shape.  Points exactly on the boundary count as inside (the
boundary belongs to the district); a point on the line between two cells
belongs to the cell east of or south of the line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import shape

from maps.cells import Lattice


@dataclass
class DistrictIndex:
    adcode: str
    name: str
    lattice: Lattice
    bounds: tuple[float, float, float, float]
    cell_at: np.ndarray  # (n_rows, n_cols) int32 → position in the arrays below, -1 none
    codes: np.ndarray  # cell codes (str)
    grid_ids: np.ndarray  # int64
    clipped: dict[int, object]  # position → prepared shapely geometry of a clipped cell

    def locate_many(self, lons, lats) -> np.ndarray:
        """Positions of the cells containing each point, -1 where none does."""
        lons = np.asarray(lons, dtype=float)
        lats = np.asarray(lats, dtype=float)
        col, row = self.lattice.col_row(lons, lats)
        # A point exactly on the east or south edge of the lattice is still on it.
        col = np.where(col == self.lattice.n_cols, col - 1, col)
        row = np.where(row == self.lattice.n_rows, row - 1, row)
        ok = (col >= 0) & (row >= 0) & (col < self.lattice.n_cols) & (row < self.lattice.n_rows)
        out = np.full(len(lons), -1, dtype=np.int64)
        out[ok] = self.cell_at[row[ok], col[ok]]
        for i in np.nonzero(out >= 0)[0]:
            geom = self.clipped.get(int(out[i]))
            if geom is not None and not shapely.intersects_xy(geom, lons[i], lats[i]):
                out[i] = self._neighbour_containing(lons[i], lats[i], int(col[i]), int(row[i]))
        return out

    def locate_one(self, lon: float, lat: float) -> int:
        """``locate_many`` for one point, in plain arithmetic (no array overhead)."""
        lat_ = self.lattice
        col, row = lat_.col_row_one(lon, lat)
        if col == lat_.n_cols:
            col -= 1
        if row == lat_.n_rows:
            row -= 1
        if not (0 <= col < lat_.n_cols and 0 <= row < lat_.n_rows):
            return -1
        pos = int(self.cell_at[row, col])
        if pos >= 0:
            geom = self.clipped.get(pos)
            if geom is not None and not shapely.intersects_xy(geom, lon, lat):
                return self._neighbour_containing(lon, lat, col, row)
        return pos

    def _neighbour_containing(self, lon: float, lat: float, col: int, row: int) -> int:
        """On a clipped cell's edge a point may belong to the neighbour's shape."""
        for dc, dr in ((-1, 0), (0, -1), (1, 0), (0, 1)):
            c, r = col + dc, row + dr
            if 0 <= c < self.lattice.n_cols and 0 <= r < self.lattice.n_rows:
                pos = int(self.cell_at[r, c])
                if pos >= 0:
                    geom = self.clipped.get(pos)
                    if geom is None or shapely.intersects_xy(geom, lon, lat):
                        x0, y0, x1, y1 = self.lattice.box_bounds(c, r)
                        if x0 <= lon <= x1 and y0 <= lat <= y1:
                            return pos
        return -1


class TerritoryIndex:
    """All imported districts; ``locate`` answers (adcode, cell position) or None."""

    def __init__(self, districts: list[DistrictIndex]):
        self.districts = districts

    def __bool__(self) -> bool:
        return bool(self.districts)

    def grid_ids(self, lons, lats) -> list[int | None]:
        """Grid id per point, None outside every district."""
        if len(lons) == 1:  # the common single lookup, without numpy's per-call cost
            lon, lat = float(lons[0]), float(lats[0])
            for d in self.districts:
                x0, y0, x1, y1 = d.bounds
                if x0 <= lon <= x1 and y0 <= lat <= y1:
                    pos = d.locate_one(lon, lat)
                    if pos >= 0:
                        return [int(d.grid_ids[pos])]
            return [None]
        lons = np.asarray(lons, dtype=float)
        lats = np.asarray(lats, dtype=float)
        result: list[int | None] = [None] * len(lons)
        for d in self.districts:
            x0, y0, x1, y1 = d.bounds
            near = np.nonzero((lons >= x0) & (lons <= x1) & (lats >= y0) & (lats <= y1))[0]
            if len(near) == 0:
                continue
            found = d.locate_many(lons[near], lats[near])
            for i, pos in zip(near, found, strict=True):
                if pos >= 0 and result[i] is None:
                    result[i] = int(d.grid_ids[pos])
        return result

    def cell(self, lon: float, lat: float) -> tuple[DistrictIndex, int] | None:
        for d in self.districts:
            x0, y0, x1, y1 = d.bounds
            if x0 <= lon <= x1 and y0 <= lat <= y1:
                pos = d.locate_one(lon, lat)
                if pos >= 0:
                    return d, pos
        return None


def district_index(district, cells) -> DistrictIndex:
    """Build one district's index from its lattice row and its unit cells.

    ``district`` has the lattice attributes (adcode, name, origin_lon, origin_lat,
    dlon, dlat, n_cols, n_rows, cell_m, min/max lon/lat); each of ``cells`` has
    code, grid_id, col, row, clipped and, for clipped cells, the GeoJSON text of
    the clipped shape.  Reading them is the database's business (``db.locate``).
    """
    d = district
    lattice = Lattice(d.origin_lon, d.origin_lat, d.dlon, d.dlat, d.n_cols, d.n_rows, d.cell_m)
    n = len(cells)
    codes = np.empty(n, dtype=object)
    grid_ids = np.empty(n, dtype=np.int64)
    cell_at = np.full((d.n_rows, d.n_cols), -1, dtype=np.int32)
    clipped: dict[int, object] = {}
    for i, r in enumerate(cells):
        codes[i] = r.code
        grid_ids[i] = r.grid_id
        cell_at[r.row, r.col] = i
        if r.clipped:
            geom = shape(json.loads(r.geometry))
            shapely.prepare(geom)
            clipped[i] = geom
    return DistrictIndex(
        d.adcode,
        d.name,
        lattice,
        (d.min_lon, d.min_lat, d.max_lon, d.max_lat),
        cell_at,
        codes,
        grid_ids,
        clipped,
    )
