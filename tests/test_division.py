"""Dividing the two real districts: coverage, codes, contiguity, balance, islands."""

from __future__ import annotations

import re
from importlib import resources

import numpy as np
import pytest
import shapely

from maps.boundary import read_boundary
from maps.division import Division, divide
from maps.partition import components

DISTRICTS = ["110101", "331004"]


def boundary_path(adcode: str):
    return resources.files("resources").joinpath(f"districts/{adcode}.geojson")


@pytest.fixture(scope="module", params=DISTRICTS)
def division(request) -> Division:
    b = read_boundary(boundary_path(request.param), "gcj02")
    return divide(b.geometry, b.adcode, b.name)


def test_cells_cover_the_district_exactly(division):
    cells = division.cells
    total = cells.areas.sum()
    assert abs(total - cells.district_area_m2) / cells.district_area_m2 < 0.005
    union = shapely.coverage_union_all(cells.geoms)
    gap = division.boundary.difference(union).area
    extra = union.difference(division.boundary).area
    assert gap / division.boundary.area < 1e-6  # no gaps
    assert extra / division.boundary.area < 1e-6  # nothing outside
    # No overlaps: the union's area equals the sum of the parts' areas.
    parts = shapely.area(cells.geoms).sum()
    assert abs(parts - union.area) / union.area < 1e-6
    # Cells are about 100 m: whole boxes are 100 m × 100 m to within a percent.
    whole = cells.areas[~cells.clipped]
    assert np.all(np.abs(whole - 10_000) < 150)


def test_codes_are_unique_and_follow_cjt_213(division):
    codes = division.cell_codes
    assert len(set(codes)) == len(codes) == len(division.cells)
    assert all(re.fullmatch(r"\d{15}", c) for c in codes)
    for comm in division.communities:
        street = division.streets[comm.parent]
        assert comm.code.startswith(street.code) and len(comm.code) == 12
        assert street.code.startswith(division.adcode) and len(street.code) == 9
        members = comm.cells
        mine = sorted(codes[i] for i in members)
        assert all(c.startswith(comm.code) for c in mine)
        # West→east, north→south: sequence order is row-major order.
        by_seq = sorted(members, key=lambda i: codes[i])
        keys = [(division.cells.rows[i], division.cells.cols[i]) for i in by_seq]
        assert keys == sorted(keys)
        assert [int(codes[i][-3:]) for i in by_seq] == list(range(1, len(members) + 1))
    grid_codes = [g.code for g in division.grids]
    assert len(set(grid_codes)) == len(grid_codes)
    for g in division.grids:
        assert g.code.startswith(division.communities[g.parent].code) and len(g.code) == 15


def test_levels_nest_and_every_cell_has_one_grid(division):
    n = len(division.cells)
    owner = np.full(n, -1)
    for gi, g in enumerate(division.grids):
        assert np.all(owner[g.cells] == -1)  # no cell in two grids
        owner[g.cells] = gi
    assert np.all(owner >= 0)
    for ci, comm in enumerate(division.communities):
        grids = [g for g in division.grids if g.parent == ci]
        assert grids, "every community has grids"
        assert sorted(np.concatenate([g.cells for g in grids])) == sorted(comm.cells)


def test_units_are_contiguous_except_for_islands(division):
    cells = division.cells
    district_pieces = components(cells, np.arange(len(cells)))
    island_of = {}
    for k, piece in enumerate(district_pieces[1:], start=1):
        for c in piece:
            island_of[int(c)] = k
    for level in ("streets", "communities", "grids"):
        for unit in getattr(division, level):
            pieces = components(cells, unit.cells)
            # A unit is one connected stretch of land (which may be part of an
            # island), plus any whole islands attached to it.
            partial = 0
            for piece in pieces:
                ks = {island_of.get(int(c)) for c in piece}
                whole_island = (
                    len(ks) == 1
                    and None not in ks
                    and len(piece) == len(district_pieces[next(iter(ks))])
                )
                partial += not whole_island
            assert partial <= 1, (level, unit.code)


@pytest.mark.parametrize("level", ["streets", "communities", "grids"])
def test_workload_is_balanced(division, level):
    assert division.balance(level) <= 1.5


# The seeds' Dongcheng (README, "Territory"): 17 streets, 205 communities, 589 grids on 41.84 km².
MODEL = {"streets": 17, "communities": 205, "grids": 589}
MODEL_KM2 = 41.84


def test_default_counts_follow_the_model_district(division):
    counts = {level: len(getattr(division, level)) for level in MODEL}
    if division.adcode == "110101":
        assert counts["streets"] == 17
        assert counts["communities"] == 205
        assert abs(counts["grids"] - 589) <= 2
        assert abs(division.area_km2 - 41.84) / 41.84 < 0.01
        return
    # Any other district: "counts default from the area, scaled from the seeds'
    # Dongcheng".  Luqiao is several times larger, so each level has more units
    # than Dongcheng, but not more than in proportion to the area (a less dense
    # district does not get smaller units than the city centre).
    assert division.adcode == "331004"
    scale = division.area_km2 / MODEL_KM2
    assert scale > 2, division.area_km2  # the premise: Luqiao is the larger one
    for level, model in MODEL.items():
        assert model < counts[level] <= model * scale, (level, counts[level], scale)
    assert counts["streets"] <= counts["communities"] <= counts["grids"]


def test_luqiao_islands_are_in_the_territory():
    b = read_boundary(boundary_path("331004"), "gcj02")
    assert b.parts == 3
    islands = sorted(b.geometry.geoms, key=lambda p: p.area)[:2]
    d = divide(b.geometry, b.adcode, streets=10, communities=60, grids=300)
    union = shapely.coverage_union_all(d.cells.geoms)
    for island in islands:
        assert island.difference(union).area / island.area < 1e-6
    for level in ("streets", "communities", "grids"):
        assert d.balance(level) <= 1.5


def test_counts_can_be_given(division):
    communities = max(20, len(division.cells) // 400)  # ≤ 999 cells each (3-digit codes)
    d = divide(
        division.boundary,
        division.adcode,
        streets=5,
        communities=communities,
        grids=2 * communities,
        cells=division.cells,
    )
    assert (len(d.streets), len(d.communities), len(d.grids)) == (5, communities, 2 * communities)
    for level in ("streets", "communities", "grids"):
        assert d.balance(level) <= 1.5


def test_counts_the_codes_cannot_carry_are_refused(division):
    with pytest.raises(ValueError, match=r"3 digits|3-digit|more communities"):
        divide(
            division.boundary,
            division.adcode,
            streets=1,
            communities=1,
            grids=1,
            cells=division.cells,
        )
    with pytest.raises(ValueError, match="streets must be"):
        divide(division.boundary, division.adcode, streets=1000, cells=division.cells)


def test_weights_shift_the_division():
    """With a per-cell weight (say households), busy areas get smaller grids."""
    b = read_boundary(boundary_path("110101"), "gcj02")
    plain = divide(b.geometry, b.adcode, streets=4, communities=12, grids=36)
    cells = plain.cells
    # Ten times the households in the northern half.
    north = cells.rows < np.median(cells.rows)
    weights = cells.areas * np.where(north, 10.0, 1.0)
    weighted = divide(
        b.geometry, b.adcode, streets=4, communities=12, grids=36, weights=weights, cells=cells
    )
    north_grids = sum(1 for g in weighted.grids if north[g.cells].mean() > 0.5)
    assert north_grids > 36 * 0.75
    assert weighted.balance("grids") <= 1.5
