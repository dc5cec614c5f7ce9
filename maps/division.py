"""Divide a district into streets, communities, management grids and coded unit cells.

The hierarchy is built top-down so that every level is balanced at once:
the number of grids each community gets is fixed first (the counts differ
by at most one), a community's target weight grows with the square root of
its grid count (see COMMUNITY_EXPONENT), and a street's target is the sum of
its communities'.  Then
streets are cut from the district, communities from each street and grids
from each community (``maps.partition``).  With 2 or 3 grids per community
that keeps communities within 1.30 and grids within 1.15 of each other before
the granularity of whole cells; a final pass trades single boundary cells
between neighbouring siblings to even out what straight cuts leave.

Generated names are short and unique ("第5街道", "5-9社区", "5-9-2网格"),
flagged as generated so an administrator can replace them with real ones.

Codes follow CJ/T 213: a unit cell is adcode (6) + street (3) + community
(3) + sequence (3), numbered west→east, north→south inside its community.
Streets, communities and grids are numbered north→south, west→east by their
centre.  A management grid's code is its community's code and a 3-digit
sequence: a separate namespace from the cells'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from maps.cells import CellSet, build_cells
from maps.partition import partition, rebalance

# The seeds' Dongcheng, the model of a well-run urban district.
MODEL_AREA_KM2 = 41.84
MODEL_COUNTS = (17, 205, 589)
MAX_PER_LEVEL = 999  # three digits of the code
# A community with n grids aims at a weight ∝ n^0.65: between equal communities
# (0) and equal grids (1), leaning to even communities where cells are coarse
# enough to even the grids out; with 2–3 grids per community it leaves
# 1.5^0.65 ≈ 1.30 between communities and 1.5^0.35 ≈ 1.15 between grids.
COMMUNITY_EXPONENT = 0.65


@dataclass
class Unit:
    """A street, community or grid: its code, name, cells and outline."""

    code: str
    name: str
    cells: np.ndarray
    parent: int | None = None  # index of the unit one level up
    geometry: BaseGeometry | None = None
    area_m2: float = 0.0
    weight: float = 0.0


@dataclass
class Division:
    adcode: str
    name: str
    boundary: BaseGeometry
    cells: CellSet
    weights: np.ndarray
    streets: list[Unit] = field(default_factory=list)
    communities: list[Unit] = field(default_factory=list)
    grids: list[Unit] = field(default_factory=list)
    cell_codes: list[str] = field(default_factory=list)
    cell_community: np.ndarray | None = None
    cell_grid: np.ndarray | None = None

    @property
    def area_km2(self) -> float:
        return self.cells.district_area_m2 / 1e6

    def balance(self, level: str) -> float:
        """Largest over smallest weight among the units of a level."""
        units = getattr(self, level)
        w = [u.weight for u in units]
        return max(w) / min(w)


def default_counts(area_km2: float) -> tuple[int, int, int]:
    """Streets, communities and grids for a district of this size.

    Scaled from the seeds' Dongcheng (17 / 205 / 589 on 41.8 km²) with
    exponents below one, because larger, less dense districts have larger
    units: the grid count grows slowest of the three in density terms.
    """
    ratio = max(area_km2, 0.05) / MODEL_AREA_KM2
    s = max(1, round(MODEL_COUNTS[0] * ratio**0.5))
    c = max(s, round(MODEL_COUNTS[1] * ratio**0.6))
    g = max(c, round(MODEL_COUNTS[2] * ratio**0.75))
    return s, c, g


def check_counts(streets: int, communities: int, grids: int, n_cells: int) -> None:
    """Refuse counts the codes or the cells cannot carry, with the reason."""
    if not (1 <= streets <= MAX_PER_LEVEL):
        raise ValueError(f"streets must be 1–{MAX_PER_LEVEL} (3-digit code), not {streets}")
    if communities < streets:
        raise ValueError("there must be at least as many communities as streets")
    if grids < communities:
        raise ValueError("there must be at least as many grids as communities")
    if math.ceil(communities / streets) > MAX_PER_LEVEL:
        raise ValueError("more than 999 communities in a street: add streets")
    if grids > n_cells:
        raise ValueError(f"{grids} grids but only {n_cells} unit cells: use fewer or smaller")
    if n_cells / communities > MAX_PER_LEVEL * 0.8:
        raise ValueError(
            f"about {n_cells // communities} cells per community, but a community's cells "
            f"are numbered with 3 digits: use more communities"
        )


def divide(
    boundary: BaseGeometry,
    adcode: str,
    name: str = "",
    cell_m: float = 100.0,
    streets: int | None = None,
    communities: int | None = None,
    grids: int | None = None,
    weights: np.ndarray | None = None,
    cells: CellSet | None = None,
) -> Division:
    """Build cells and the whole hierarchy for one district (WGS-84 boundary)."""
    cells = cells or build_cells(boundary, cell_m)
    w = cells.areas.copy() if weights is None else np.asarray(weights, dtype=float)
    if len(w) != len(cells) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be one finite, non-negative number per cell")
    # A cell of zero weight still belongs somewhere: give it a trace of weight.
    w = np.maximum(w, w[w > 0].min() * 1e-3)
    ds, dc, dg = default_counts(cells.district_area_m2 / 1e6)
    # A count given is used as given (0 is refused below, not taken for "the default").
    s = ds if streets is None else streets
    c = max(s, round(dc * s / ds)) if communities is None else communities
    g = max(c, round(dg * c / dc)) if grids is None else grids
    check_counts(s, c, g, len(cells))
    div = Division(adcode, name, boundary, cells, w)
    grids_per_comm = _spread(g, c)
    comms_per_street = _spread(c, s)
    # Interleave the larger communities across streets so streets stay even.
    order = np.argsort(-np.array(grids_per_comm), kind="stable")
    buckets: list[list[int]] = [[] for _ in range(s)]
    fill = [0] * s
    street_cycle = 0
    for ci in order:
        while fill[street_cycle % s] >= comms_per_street[street_cycle % s]:
            street_cycle += 1
        buckets[street_cycle % s].append(grids_per_comm[ci])
        fill[street_cycle % s] += 1
        street_cycle += 1
    comm_target = [[n**COMMUNITY_EXPONENT for n in b] for b in buckets]
    street_t = [sum(t) for t in comm_target]
    street_parts = rebalance(
        cells, partition(cells, np.arange(len(cells)), street_t, w), street_t, w
    )
    street_parts = _ordered(cells, street_parts)
    for si, (sc, st) in enumerate(street_parts):
        street = Unit(f"{adcode}{si + 1:03d}", f"第{si + 1}街道", sc)
        div.streets.append(street)
        sizes = buckets[st]
        comm_parts = rebalance(cells, partition(cells, sc, comm_target[st], w), comm_target[st], w)
        for ci, (cc, ct) in enumerate(_ordered(cells, comm_parts)):
            community = Unit(
                f"{street.code}{ci + 1:03d}", f"{si + 1}-{ci + 1}社区", cc, parent=si
            )
            div.communities.append(community)
            n_grids = sizes[ct]
            ones = [1.0] * n_grids
            grid_parts = rebalance(cells, partition(cells, cc, ones, w), ones, w)
            for gi, (gc, _) in enumerate(_ordered(cells, grid_parts)):
                div.grids.append(
                    Unit(
                        f"{community.code}{gi + 1:03d}",
                        f"{si + 1}-{ci + 1}-{gi + 1}网格",
                        gc,
                        parent=len(div.communities) - 1,
                    )
                )
    _even_grids_across_communities(div)
    _code_cells(div)
    _outline(div)
    return div


def _even_grids_across_communities(div: Division) -> None:
    """A last pass over each street's grids, letting cells cross community lines.

    Inside one community the grids can only be as even as its land allows;
    a community that is partly island, or whose count of grids fits its land
    badly, leaves one grid large.  Trading border cells with the grids of
    neighbouring communities (without splitting any community) evens that out.
    """
    cells = div.cells
    for si in range(len(div.streets)):
        comm_ids = [ci for ci, c in enumerate(div.communities) if c.parent == si]
        grid_ids = [gi for gi, g in enumerate(div.grids) if g.parent in comm_ids]
        n_of = {ci: sum(1 for gi in grid_ids if div.grids[gi].parent == ci) for ci in comm_ids}
        targets = [
            n_of[div.grids[gi].parent] ** COMMUNITY_EXPONENT / n_of[div.grids[gi].parent]
            for gi in grid_ids
        ]
        parts = rebalance(
            cells,
            [div.grids[gi].cells for gi in grid_ids],
            targets,
            div.weights,
            outer=[div.grids[gi].parent for gi in grid_ids],
        )
        for gi, part in zip(grid_ids, parts, strict=True):
            div.grids[gi].cells = part
        for ci in comm_ids:
            div.communities[ci].cells = np.concatenate(
                [div.grids[gi].cells for gi in grid_ids if div.grids[gi].parent == ci]
            )


def _spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers that differ by at most one."""
    base, extra = divmod(total, parts)
    return [base + 1 if i < extra else base for i in range(parts)]


def _ordered(cells: CellSet, parts: list[np.ndarray]) -> list[tuple[np.ndarray, int]]:
    """Parts sorted north→south, west→east by centre, each with its original index."""
    lat = cells.lattice

    def key(i: int):
        p = parts[i]
        row = np.mean(cells.rows[p])
        col = np.mean(cells.cols[p])
        band = lat.n_rows / max(1, round(len(parts) ** 0.5))  # rows of roughly equal bands
        return (int(row // max(band, 1)), col, row)

    return [(parts[i], i) for i in sorted(range(len(parts)), key=key)]


def _code_cells(div: Division) -> None:
    cells = div.cells
    n = len(cells)
    div.cell_community = np.full(n, -1, dtype=np.int64)
    div.cell_grid = np.full(n, -1, dtype=np.int64)
    for ci, comm in enumerate(div.communities):
        div.cell_community[comm.cells] = ci
    for gi, grid in enumerate(div.grids):
        div.cell_grid[grid.cells] = gi
    codes = [""] * n
    for comm in div.communities:
        members = comm.cells[np.lexsort((cells.cols[comm.cells], cells.rows[comm.cells]))]
        if len(members) > MAX_PER_LEVEL:
            raise ValueError(f"community {comm.code} has {len(members)} cells (more than 999)")
        for k, cell in enumerate(members):
            codes[cell] = f"{comm.code}{k + 1:03d}"
    div.cell_codes = codes


def _outline(div: Division) -> None:
    """Outlines, areas and weights of every unit, built from their cells."""
    cells = div.cells
    for unit in div.grids:
        unit.geometry = shapely.coverage_union_all(cells.geoms[unit.cells])
    for ci, comm in enumerate(div.communities):
        parts = [g.geometry for g in div.grids if g.parent == ci]
        comm.geometry = shapely.coverage_union_all(parts)
    for si, street in enumerate(div.streets):
        parts = [c.geometry for c in div.communities if c.parent == si]
        street.geometry = shapely.coverage_union_all(parts)
    for unit in (*div.streets, *div.communities, *div.grids):
        unit.area_m2 = float(cells.areas[unit.cells].sum())
        unit.weight = float(div.weights[unit.cells].sum())
