"""Import a district's territory into the database: one transaction, bulk loaded.

Geometry is computed first (``maps.division``), outside any transaction;
the write is then a single transaction that either replaces the district's
whole hierarchy or leaves the database as it was.  Unit cells go in by COPY,
since a county has hundreds of thousands of them.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import mapping
from sqlalchemy import Engine, func, select, text

from db.errors import BadInput
from db.locate import forget_territory
from db.models import Case, District, Grid
from db.session import transaction
from db.workflow import OPEN_STATUSES
from maps.boundary import Boundary, BoundaryError, read_boundary
from maps.cells import Lattice
from maps.division import Division, divide

_TERRITORY_LOCK = 0x7465_7272  # "terr": one import at a time


@dataclass
class ImportSummary:
    adcode: str
    name: str
    area_km2: float
    streets: int
    communities: int
    grids: int
    cells: int
    parts: int
    seconds: float
    balance: dict

    def as_json(self) -> dict:
        return {
            "adcode": self.adcode,
            "name": self.name,
            "area_km2": round(self.area_km2, 3),
            "counts": {
                "streets": self.streets,
                "communities": self.communities,
                "grids": self.grids,
                "unit_cells": self.cells,
            },
            "parts": self.parts,
            "balance": self.balance,
            "seconds": round(self.seconds, 2),
        }


def import_district(
    engine: Engine,
    path,
    crs: str = "gcj02",
    cell_m: float = 100.0,
    streets: int | None = None,
    communities: int | None = None,
    grids: int | None = None,
    replace: bool = False,
    adcode: str | None = None,
    name: str | None = None,
    weights: np.ndarray | None = None,
) -> ImportSummary:
    """Read, divide and store a district; see the module doc."""
    started = time.monotonic()
    if not (20.0 <= float(cell_m) <= 1000.0):
        raise BadInput(
            "单元网格边长须在 20–1000 米之间。", "The unit-cell size must be 20–1000 metres."
        )
    try:
        boundary = read_boundary(path, crs, adcode, name)
    except BoundaryError as exc:
        raise BadInput(exc.zh, exc.en) from None
    _check_size(boundary, float(cell_m))
    _check_replace(engine, boundary.adcode, replace)
    try:
        div = divide(
            boundary.geometry,
            boundary.adcode,
            boundary.name,
            cell_m,
            streets,
            communities,
            grids,
            weights,
        )
    except ValueError as exc:
        raise BadInput(f"无法按要求划分网格：{exc}", f"Cannot divide the district: {exc}") from None
    with transaction(engine) as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _TERRITORY_LOCK})
        _check_replace(conn, boundary.adcode, replace)
        if replace:
            _delete(conn, boundary.adcode)
        _write(conn, boundary, div)
        conn.execute(text("SELECT pg_notify('grid_territory', :a)"), {"a": boundary.adcode})
    forget_territory()
    return ImportSummary(
        boundary.adcode,
        boundary.name,
        div.area_km2,
        len(div.streets),
        len(div.communities),
        len(div.grids),
        len(div.cells),
        boundary.parts,
        time.monotonic() - started,
        {level: round(div.balance(level), 3) for level in ("streets", "communities", "grids")},
    )


MAX_LATTICE_CELLS = 3_000_000  # boxes of the lattice over the bounds (~30,000 km² at 100 m)


def _check_size(boundary: Boundary, cell_m: float) -> None:
    """Refuse, from the bounds alone, a division too large to build.

    The division lays a lattice of ``cell_m`` boxes over the boundary's bounds
    and holds several arrays of that size; a 3°×3° area at 20 m would be 233
    million boxes (gigabytes) before anything could say no.
    """
    lattice = Lattice.covering(boundary.geometry.bounds, cell_m)
    boxes = lattice.n_cols * lattice.n_rows
    if boxes > MAX_LATTICE_CELLS:
        least = cell_m * (boxes / MAX_LATTICE_CELLS) ** 0.5
        raise BadInput(
            f"区域过大：按 {cell_m:g} 米单元网格需 {boxes:,} 个格，上限 {MAX_LATTICE_CELLS:,}；"
            f"请用 --cell {least:.0f} 以上或更小的区域。",
            f"The area is too large: {boxes:,} unit cells of {cell_m:g} m, at most "
            f"{MAX_LATTICE_CELLS:,}; use --cell {least:.0f} or more, or a smaller area.",
        )


def _check_replace(engine_or_conn, adcode: str, replace: bool) -> None:
    def check(conn) -> None:
        exists = conn.execute(select(District.adcode).where(District.adcode == adcode)).first()
        if exists and not replace:
            raise BadInput(
                f"辖区 {adcode} 已导入；如需替换请加 --replace。",
                f"District {adcode} is already imported; use --replace to replace it.",
            )
        if exists:
            open_cases = conn.execute(
                select(func.count())
                .select_from(Case.__table__.join(Grid.__table__, Grid.id == Case.grid_id))
                .where(Case.status.in_(OPEN_STATUSES), Grid.code.like(f"{adcode}%"))
            ).scalar_one()
            if open_cases:
                raise BadInput(
                    f"辖区 {adcode} 内还有 {open_cases} 件未办结案件，不能替换。",
                    f"District {adcode} still has {open_cases} open case(s); it cannot be "
                    "replaced until they are closed.",
                )

    if isinstance(engine_or_conn, Engine):
        with engine_or_conn.connect() as conn:
            check(conn)
    else:
        check(engine_or_conn)


def _delete(conn, adcode: str) -> None:
    # Streets, communities, grids and cells go by ON DELETE CASCADE; cases and
    # workers keep their rows with grid_id set to NULL.
    conn.execute(text("DELETE FROM unit_cell WHERE adcode = :a"), {"a": adcode})
    conn.execute(text("DELETE FROM district WHERE adcode = :a"), {"a": adcode})


def _geojson(geom) -> str:
    # Full precision: cell edges must stay bit-identical to the lattice's
    # arithmetic, or a point a millimetre from an edge lands in two cells.
    return json.dumps(mapping(geom), separators=(",", ":"))


def reserve_ids(conn, table: str, n: int) -> list[int]:
    """Reserve ``n`` ids from a table's sequence (so rows can be COPYed with their ids)."""
    if n == 0:
        return []
    return list(
        conn.execute(
            text(
                f"SELECT nextval(pg_get_serial_sequence('\"{table}\"', 'id')) "
                "FROM generate_series(1, :n)"
            ),
            {"n": n},
        ).scalars()
    )


def copy_rows(conn, table: str, columns: list[str], rows, chunk: int = 20_000) -> None:
    """COPY ``rows`` into ``table`` in chunks, so memory stays flat for big tables."""
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
    raw = conn.connection.driver_connection
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    pending = 0

    def flush() -> None:
        buf.seek(0)
        with raw.cursor() as cur:
            cur.copy_expert(sql, buf)
        buf.seek(0)
        buf.truncate()

    for row in rows:
        writer.writerow(["\\N" if v is None else v for v in row])
        pending += 1
        if pending == chunk:
            flush()
            pending = 0
    if pending:
        flush()


def _write(conn, boundary: Boundary, div: Division) -> None:
    lat = div.cells.lattice
    b = boundary.geometry.bounds
    conn.execute(
        text(
            "INSERT INTO district (adcode, name, geometry, area_km2, source, min_lon, min_lat, "
            "max_lon, max_lat, crs_source, cell_m, origin_lon, origin_lat, dlon, dlat, n_cols, "
            "n_rows) VALUES (:adcode, :name, CAST(:geometry AS jsonb), :area, :source, :x0, :y0, "
            ":x1, :y1, :crs, :cell_m, :ox, :oy, :dlon, :dlat, :nc, :nr)"
        ),
        {
            "adcode": boundary.adcode,
            "name": boundary.name,
            "geometry": _geojson(boundary.geometry),
            "area": div.area_km2,
            "source": f"imported from {boundary.crs_source}",
            "x0": b[0],
            "y0": b[1],
            "x1": b[2],
            "y1": b[3],
            "crs": boundary.crs_source,
            "cell_m": lat.cell_m,
            "ox": lat.origin_lon,
            "oy": lat.origin_lat,
            "dlon": lat.dlon,
            "dlat": lat.dlat,
            "nc": lat.n_cols,
            "nr": lat.n_rows,
        },
    )

    def unit_rows(units, ids, parent_ids, extra):
        for unit, uid in zip(units, ids, strict=True):
            x0, y0, x1, y1 = unit.geometry.bounds
            parent = parent_ids[unit.parent] if unit.parent is not None else boundary.adcode
            yield [
                uid,
                unit.code,
                parent,
                unit.name,
                True,
                _geojson(unit.geometry),
                unit.area_m2,
                x0,
                y0,
                x1,
                y1,
                *extra(unit),
            ]

    base = [
        "id",
        "code",
        None,
        "name",
        "name_generated",
        "geometry",
        "area_m2",
        "min_lon",
        "min_lat",
        "max_lon",
        "max_lat",
    ]
    street_ids = reserve_ids(conn, "street", len(div.streets))
    copy_rows(
        conn,
        "street",
        ["adcode" if c is None else c for c in base],
        unit_rows(div.streets, street_ids, [], lambda u: []),
    )
    comm_ids = reserve_ids(conn, "community", len(div.communities))
    copy_rows(
        conn,
        "community",
        ["street_id" if c is None else c for c in base],
        unit_rows(div.communities, comm_ids, street_ids, lambda u: []),
    )
    grid_ids = reserve_ids(conn, "grid", len(div.grids))
    copy_rows(
        conn,
        "grid",
        ["community_id" if c is None else c for c in base] + ["workload"],
        unit_rows(div.grids, grid_ids, comm_ids, lambda u: [round(u.weight, 3)]),
    )
    cells = div.cells
    bounds = shapely.bounds(cells.geoms)
    cell_comm = np.asarray(comm_ids)[div.cell_community]
    cell_grid = np.asarray(grid_ids)[div.cell_grid]

    def cell_rows():
        for i in range(len(cells)):
            x0, y0, x1, y1 = bounds[i]
            yield [
                div.cell_codes[i],
                int(cell_comm[i]),
                int(cell_grid[i]),
                _geojson(cells.geoms[i]),
                round(float(cells.areas[i]), 2),
                round(float(div.weights[i]), 4),
                boundary.adcode,
                int(cells.cols[i]),
                int(cells.rows[i]),
                bool(cells.clipped[i]),
                x0,
                y0,
                x1,
                y1,
            ]

    copy_rows(
        conn,
        "unit_cell",
        [
            "code",
            "community_id",
            "grid_id",
            "geometry",
            "area_m2",
            "weight",
            "adcode",
            "col",
            "row",
            "clipped",
            "min_lon",
            "min_lat",
            "max_lon",
            "max_lat",
        ],
        cell_rows(),
    )
