"""A point on the line between two unit cells belongs to the cell east or south of it.

README (Territory): "a point on a line between two cells belongs to the cell
east or south of it".  The lines are where the lattice itself puts the cells'
edges (``Lattice.box_bounds``), so a point given exactly there must go east
(or south) in both the single lookup (CLI, console) and the bulk one
(gateway, simulator).  Found by ``tests/test_cli_commands.py``: the division
``(x0 + k·d − x0) / d`` came out as ``k − ε`` and the point went west.
"""

from __future__ import annotations

import math

import numpy as np

from maps.cells import Lattice

# The lattice of a real import: ~100 m cells, an origin with many decimals.
LATTICE = Lattice.covering((116.400, 39.900, 116.412, 39.906), 100.0)


def test_points_on_vertical_lines_go_east_and_on_horizontal_lines_go_south():
    lat_ = LATTICE
    wrong = []
    for k in range(1, lat_.n_cols):
        for j in range(lat_.n_rows):
            x0, y0, x1, y1 = (float(v) for v in lat_.box_bounds(k, j))
            point = (x0, (y0 + y1) / 2)  # on the west edge of cell (k, j)
            if lat_.col_row_one(*point) != (k, j):
                wrong.append(("one", "vertical", k, j))
    for j in range(1, lat_.n_rows):
        for k in range(lat_.n_cols):
            x0, y0, x1, y1 = (float(v) for v in lat_.box_bounds(k, j))
            point = ((x0 + x1) / 2, y1)  # on the north edge of cell (k, j)
            if lat_.col_row_one(*point) != (k, j):
                wrong.append(("one", "horizontal", k, j))
    assert wrong == []


def test_bulk_and_single_lookups_agree_on_lines_and_corners():
    lat_ = LATTICE
    kk, jj = np.meshgrid(np.arange(lat_.n_cols), np.arange(lat_.n_rows))
    kk, jj = kk.ravel(), jj.ravel()
    x0, y0, x1, y1 = lat_.box_bounds(kk, jj)
    for lons, lats in (
        (x0, (y0 + y1) / 2),  # west edges
        ((x0 + x1) / 2, y1),  # north edges
        (x0, y1),  # north-west corners: the cell itself (east of one line, south of the other)
    ):
        col, row = lat_.col_row(lons, lats)
        assert (col == kk).all() and (row == jj).all()
        single = [lat_.col_row_one(float(a), float(b)) for a, b in zip(lons, lats, strict=True)]
        assert single == list(zip(kk.tolist(), jj.tolist(), strict=True))


def test_points_just_off_a_line_stay_on_their_side():
    lat_ = LATTICE
    k, j = 4, 3
    x0, y0, x1, y1 = (float(v) for v in lat_.box_bounds(k, j))
    mid_lat = (y0 + y1) / 2
    assert lat_.col_row_one(math.nextafter(x0, -math.inf), mid_lat) == (k - 1, j)
    assert lat_.col_row_one((x0 + x1) / 2, math.nextafter(y1, math.inf)) == (k, j - 1)
    col, row = lat_.col_row(np.array([math.nextafter(x0, -math.inf)]), np.array([mid_lat]))
    assert (int(col[0]), int(row[0])) == (k - 1, j)
