"""Read a situation for a shareable map: boundaries, open cases, workers' last fixes, cameras.

``python main.py export-map`` and the console's "export the current view" write
a self-contained folium map (``maps/folium_export.py``) from what this returns:
plain dicts and lists, WGS-84, with the Chinese and English labels attached
(``maps/`` cannot import the workflow's label tables).  The scope is the whole
territory, one street, one grid, one case (its surroundings within
``CASE_RADIUS_M``), or a lon/lat box (the console's view).
"""

from __future__ import annotations

import math
from datetime import datetime

from sqlalchemy import Engine, text

from db.clock import hall_timezone
from db.errors import BadInput, NotFound
from db.workflow import (
    ESCALATION_LABELS,
    OPEN_STATUS_ORDER,
    SEVERITY_LABELS,
    SOURCE_LABELS,
    STATUS_LABELS,
)
from maps.coords import haversine_m

#: how far around a case its map reaches (workers and cameras to send or look)
CASE_RADIUS_M = 1000.0
#: a fix older than this is drawn as stale
STALE_MINUTES = 10.0

WORKER_STATUS_LABELS: dict[str, tuple[str, str]] = {
    "on_duty": ("在岗", "on duty"),
    "patrolling": ("巡查中", "patrolling"),
    "handling": ("处置中", "handling"),
    "off_duty": ("下班", "off duty"),
    "offline": ("离线", "offline"),
}

_OPEN = "(" + ", ".join(f"'{s}'" for s in OPEN_STATUS_ORDER) + ")"

_CASES_SQL = f"""
    SELECT c.id, c.number, c.lon, c.lat, c.status, c.severity, c.source, c.address,
           c.description, c.reported_at, c.stage_due_at, c.escalation,
           (c.stage_due_at IS NOT NULL AND c.stage_due_at < now()) AS overdue,
           cat.code AS category_code, cat.name AS category, cat.name_en AS category_en,
           cat.kind AS kind, d.name AS department, d.name_en AS department_en,
           g.code AS grid_code, g.name AS grid_name
    FROM "case" c
    JOIN category cat ON cat.id = c.category_id
    LEFT JOIN department d ON d.id = c.department_id
    LEFT JOIN grid g ON g.id = c.grid_id
    WHERE c.status IN {_OPEN}
"""

_WORKERS_SQL = """
    SELECT w.code, w.name, w.status, w.phone, g.code AS grid_code, g.name AS grid_name,
           lp.lon, lp.lat, lp.ts, lp.course, lp.grid_id AS at_grid_id,
           (lp.ts < now() - CAST(:stale AS float8) * interval '1 minute') AS stale,
           EXISTS (SELECT 1 FROM worker_event e WHERE e.device_id = dv.id
                   AND e.kind = 'offline' AND e.at >= lp.received_at) AS offline
    FROM latest_position lp
    JOIN device dv ON dv.id = lp.device_id
    JOIN worker w ON w.id = dv.worker_id
    LEFT JOIN grid g ON g.id = w.grid_id
    WHERE w.active
"""

_CAMERAS_SQL = """
    SELECT cm.code, cm.name, cm.lon, cm.lat, cm.heading, g.code AS grid_code, cm.grid_id
    FROM camera cm LEFT JOIN grid g ON g.id = cm.grid_id
    WHERE cm.active
"""

_BOUNDARY_SQL = {
    "district": "SELECT 'district' AS level, adcode AS code, name, geometry, NULL AS parent "
    "FROM district",
    "street": "SELECT 'street' AS level, s.code, s.name, s.geometry, s.adcode AS parent "
    "FROM street s",
    "community": "SELECT 'community' AS level, c.code, c.name, c.geometry, s.code AS parent "
    "FROM community c JOIN street s ON s.id = c.street_id",
    "grid": "SELECT 'grid' AS level, g.code, g.name, g.geometry, c.code AS parent "
    "FROM grid g JOIN community c ON c.id = g.community_id",
}
_ALIAS = {"district": "", "street": "s.", "community": "c.", "grid": "g."}


def _labels(table: dict, key) -> dict:
    zh, en = table.get(key, (str(key), str(key)))
    return {"zh": zh, "en": en}


def _case_row(r) -> dict:
    return {
        "number": r.number,
        "lon": float(r.lon),
        "lat": float(r.lat),
        "status": r.status,
        "status_label": _labels(STATUS_LABELS, r.status),
        "severity": r.severity,
        "severity_label": _labels(SEVERITY_LABELS, r.severity),
        "source_label": _labels(SOURCE_LABELS, r.source),
        "kind": r.kind,
        "category_code": r.category_code,
        "category": {"zh": r.category, "en": r.category_en or r.category},
        "department": (
            {"zh": r.department, "en": r.department_en or r.department} if r.department else None
        ),
        "address": r.address or "",
        "description": r.description or "",
        "reported_at": _iso(r.reported_at),
        "stage_due_at": _iso(r.stage_due_at),
        "overdue": bool(r.overdue),
        "escalation": int(r.escalation or 0),
        "escalation_label": _labels(ESCALATION_LABELS, int(r.escalation or 0)),
        "grid_code": r.grid_code,
        "grid_name": r.grid_name,
    }


def _worker_row(r) -> dict:
    status = "offline" if r.offline else r.status
    return {
        "code": r.code,
        "name": r.name,
        "status": status,
        "status_label": _labels(WORKER_STATUS_LABELS, status),
        "phone": r.phone or "",
        "grid_code": r.grid_code,
        "grid_name": r.grid_name,
        "lon": float(r.lon),
        "lat": float(r.lat),
        "ts": _iso(r.ts),
        "course": None if r.course is None else float(r.course),
        "stale": bool(r.stale),
    }


def _camera_row(r) -> dict:
    return {
        "code": r.code,
        "name": r.name,
        "lon": float(r.lon),
        "lat": float(r.lat),
        "heading": None if r.heading is None else float(r.heading),
        "grid_code": r.grid_code,
    }


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(hall_timezone()).isoformat(timespec="seconds")


def _boundaries(conn, level: str, where: str = "", params: dict | None = None) -> list[dict]:
    sql = _BOUNDARY_SQL[level] + (f" WHERE {where}" if where else "") + " ORDER BY 2"
    return [dict(r._mapping) for r in conn.execute(text(sql), params or {})]


def _bbox_where(level: str) -> str:
    a = _ALIAS[level]
    return (
        f"{a}max_lon >= :w AND {a}min_lon <= :e AND {a}max_lat >= :s AND {a}min_lat <= :n"
    )


def check_bounds(bounds) -> tuple[float, float, float, float]:
    """A (west, south, east, north) WGS-84 box, or ``BadInput``."""
    try:
        west, south, east, north = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise BadInput(
            "范围须为 西,南,东,北 四个经纬度。", "Bounds must be west,south,east,north degrees."
        ) from None
    if not all(math.isfinite(v) for v in (west, south, east, north)) or not (
        -180 <= west < east <= 180 and -90 <= south < north <= 90
    ):
        raise BadInput(
            "范围无效：须满足 西 < 东、南 < 北，且在经纬度范围内。",
            "Invalid bounds: west < east and south < north, within range.",
        )
    return west, south, east, north


def situation(
    engine: Engine,
    street: str | None = None,
    grid: str | None = None,
    case: str | None = None,
    bounds: tuple[float, float, float, float] | None = None,
) -> dict:
    """The situation of one scope (at most one of ``street``, ``grid``, ``case``, ``bounds``).

    Raises ``NotFound`` for a street, grid or case that does not exist and
    ``BadInput`` for an empty territory or bad bounds.
    """
    given = [k for k, v in (("street", street), ("grid", grid), ("case", case),
                            ("bounds", bounds)) if v is not None]
    if len(given) > 1:
        raise BadInput(
            "--street、--grid、--case 只能选一个。", "Give at most one of --street, --grid, --case."
        )
    with engine.connect() as conn:
        if conn.execute(text("SELECT count(*) FROM district")).scalar_one() == 0:
            raise BadInput(
                "尚未导入任何辖区，请先运行 district import 或 demo seed。",
                "No district has been imported yet: run 'district import' or 'demo seed' first.",
            )
        if street is not None:
            data = _street_scope(conn, street)
        elif grid is not None:
            data = _grid_scope(conn, grid)
        elif case is not None:
            data = _case_scope(conn, case)
        elif bounds is not None:
            data = _view_scope(conn, check_bounds(bounds))
        else:
            data = _district_scope(conn)
        now = conn.execute(text("SELECT now()")).scalar_one()
    data["generated_at"] = _iso(now)
    data["status_labels"] = {s: _labels(STATUS_LABELS, s) for s in OPEN_STATUS_ORDER}
    data["worker_status_labels"] = {k: {"zh": v[0], "en": v[1]}
                                    for k, v in WORKER_STATUS_LABELS.items()}
    if data.get("bounds") is None:
        data["bounds"] = _extent(data)
    return data


def _items(conn, where_cases: str, where_workers: str, where_cameras: str, params: dict):
    p = {"stale": STALE_MINUTES, **params}
    cases = [_case_row(r) for r in conn.execute(
        text(_CASES_SQL + where_cases + " ORDER BY c.reported_at"), p)]
    workers = [_worker_row(r) for r in conn.execute(
        text(_WORKERS_SQL + where_workers + " ORDER BY w.code"), p)]
    cameras = [_camera_row(r) for r in conn.execute(
        text(_CAMERAS_SQL + where_cameras + " ORDER BY cm.code"), p)]
    return cases, workers, cameras


def _district_scope(conn) -> dict:
    boundaries = (
        _boundaries(conn, "district") + _boundaries(conn, "street")
        + _boundaries(conn, "community")
    )
    cases, workers, cameras = _items(conn, "", "", "", {})
    names = "、".join(b["name"] for b in boundaries if b["level"] == "district")
    return {
        "scope": {"kind": "district", "code": None, "name": names},
        "boundaries": boundaries,
        "cases": cases,
        "workers": workers,
        "cameras": cameras,
    }


def _street_scope(conn, code: str) -> dict:
    row = conn.execute(
        text("SELECT id, name, adcode FROM street WHERE code = :c"), {"c": code}
    ).first()
    if row is None:
        raise NotFound(f"没有街道 {code}。", f"No street {code}.")
    grids = "(SELECT g.id FROM grid g JOIN community c ON c.id = g.community_id " \
            "WHERE c.street_id = :sid)"
    boundaries = (
        _boundaries(conn, "district", "adcode = :a", {"a": row.adcode})
        + _boundaries(conn, "street", "s.id = :sid", {"sid": row.id})
        + _boundaries(conn, "community", "c.street_id = :sid", {"sid": row.id})
        + _boundaries(conn, "grid", "c.street_id = :sid", {"sid": row.id})
    )
    cases, workers, cameras = _items(
        conn,
        f" AND c.grid_id IN {grids}",
        f" AND lp.grid_id IN {grids}",
        f" AND cm.grid_id IN {grids}",
        {"sid": row.id},
    )
    for b in boundaries:
        b["focus"] = False
    street_outline = [b for b in boundaries if b["level"] == "street"]
    return {
        "scope": {"kind": "street", "code": code, "name": row.name},
        "boundaries": boundaries,
        "cases": cases,
        "workers": workers,
        "cameras": cameras,
        "bounds": _extent({"boundaries": street_outline}),
    }


def _grid_scope(conn, code: str) -> dict:
    row = conn.execute(
        text(
            "SELECT g.id, g.name, g.community_id, c.street_id FROM grid g "
            "JOIN community c ON c.id = g.community_id WHERE g.code = :c"
        ),
        {"c": code},
    ).first()
    if row is None:
        raise NotFound(f"没有网格 {code}。", f"No grid {code}.")
    boundaries = (
        _boundaries(conn, "street", "s.id = :sid", {"sid": row.street_id})
        + _boundaries(conn, "community", "c.id = :cid", {"cid": row.community_id})
        + _boundaries(conn, "grid", "g.community_id = :cid", {"cid": row.community_id})
    )
    for b in boundaries:
        b["focus"] = b["level"] == "grid" and b["code"] == code
    cases, workers, cameras = _items(
        conn, " AND c.grid_id = :gid", " AND lp.grid_id = :gid", " AND cm.grid_id = :gid",
        {"gid": row.id},
    )
    focus = next(b for b in boundaries if b.get("focus"))
    return {
        "scope": {"kind": "grid", "code": code, "name": row.name},
        "boundaries": boundaries,
        "cases": cases,
        "workers": workers,
        "cameras": cameras,
        "bounds": _extent({"boundaries": [focus], "cases": cases}),
    }


def _case_scope(conn, number: str) -> dict:
    row = conn.execute(
        text(
            'SELECT c.id, c.lon, c.lat, c.grid_id, g.community_id, cm.street_id FROM "case" c '
            "LEFT JOIN grid g ON g.id = c.grid_id "
            "LEFT JOIN community cm ON cm.id = g.community_id WHERE c.number = :n"
        ),
        {"n": number},
    ).first()
    if row is None:
        raise NotFound(f"没有案件 {number}。", f"No case {number}.")
    lon, lat = float(row.lon), float(row.lat)
    dlat = CASE_RADIUS_M / 111_000.0
    dlon = dlat / max(0.1, math.cos(math.radians(lat)))
    box = {"w": lon - dlon, "e": lon + dlon, "s": lat - dlat, "n": lat + dlat}
    inside = " AND {t}.lon BETWEEN :w AND :e AND {t}.lat BETWEEN :s AND :n"
    cases, workers, cameras = _items(
        conn, inside.format(t="c"), inside.format(t="lp"), inside.format(t="cm"), box
    )
    # the case itself, open or not: it is what the map is about
    subject = conn.execute(
        text(_CASES_SQL.split("WHERE c.status")[0] + " WHERE c.number = :n"),
        {"n": number},
    ).one()
    cases = [c for c in cases if c["number"] != number]
    within = []
    for group in (cases, workers, cameras):
        within.append([
            item for item in group
            if haversine_m(lon, lat, item["lon"], item["lat"]) <= CASE_RADIUS_M
        ])
    cases, workers, cameras = within
    focus_case = _case_row(subject)
    focus_case["focus"] = True
    cases.insert(0, focus_case)
    for item in workers + cameras:
        item["distance_m"] = round(float(haversine_m(lon, lat, item["lon"], item["lat"])))
    workers.sort(key=lambda w: w["distance_m"])
    boundaries = []
    if row.grid_id is not None:
        boundaries = (
            _boundaries(conn, "street", "s.id = :sid", {"sid": row.street_id})
            + _boundaries(conn, "community", "c.id = :cid", {"cid": row.community_id})
            + _boundaries(conn, "grid", "g.community_id = :cid", {"cid": row.community_id})
        )
        grid_code = focus_case["grid_code"]
        for b in boundaries:
            b["focus"] = b["level"] == "grid" and b["code"] == grid_code
    return {
        "scope": {"kind": "case", "code": number, "name": number},
        "boundaries": boundaries,
        "cases": cases,
        "workers": workers,
        "cameras": cameras,
        "bounds": (box["w"], box["s"], box["e"], box["n"]),
        "radius_m": CASE_RADIUS_M,
        "centre": (lon, lat),
    }


def _view_scope(conn, box: tuple[float, float, float, float]) -> dict:
    west, south, east, north = box
    p = {"w": west, "s": south, "e": east, "n": north}
    # a view of the whole district shows no grids (hundreds of outlines); a closer one does
    wide = (east - west) * (north - south) > 0.05 * 0.05
    levels = ["district", "street", "community"] + ([] if wide else ["grid"])
    boundaries = []
    for level in levels:
        boundaries += _boundaries(conn, level, _bbox_where(level), p)
    inside = " AND {t}.lon BETWEEN :w AND :e AND {t}.lat BETWEEN :s AND :n"
    cases, workers, cameras = _items(
        conn, inside.format(t="c"), inside.format(t="lp"), inside.format(t="cm"), p
    )
    return {
        "scope": {"kind": "view", "code": None, "name": "当前视图"},
        "boundaries": boundaries,
        "cases": cases,
        "workers": workers,
        "cameras": cameras,
        "bounds": box,
    }


def _extent(data: dict) -> tuple[float, float, float, float] | None:
    xs: list[float] = []
    ys: list[float] = []
    from maps.geometry import bbox_of

    for b in data.get("boundaries", []):
        x0, y0, x1, y1 = bbox_of(b["geometry"])
        xs += [x0, x1]
        ys += [y0, y1]
    if not xs:  # boundaries decide when there are any: a stray fix never widens the map
        for group in ("cases", "workers", "cameras"):
            for item in data.get(group, []):
                xs.append(item["lon"])
                ys.append(item["lat"])
    if not xs:
        return None
    return min(xs), min(ys), max(xs), max(ys)
