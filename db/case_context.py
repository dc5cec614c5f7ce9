"""What surrounds a case: who and what is nearest, and possible duplicates.

Distances are great-circle metres computed in SQL (the numbers are small:
latest positions and cameras of one district), so no PostGIS is needed.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

from db.session import connection

# Haversine in SQL, metres, between (lon, lat) columns and bind parameters.
_DIST = (
    "2 * 6371008.8 * asin(sqrt(power(sin(radians({lat} - :lat) / 2), 2) + "
    "cos(radians(:lat)) * cos(radians({lat})) * power(sin(radians({lon} - :lon) / 2), 2)))"
)
DUPLICATE_RADIUS_M = 50.0
DUPLICATE_HOURS = 24
ONLINE_MINUTES = 10


def nearest_workers(
    engine: Engine | Connection, lon: float, lat: float, limit: int = 5
) -> list[dict]:
    """Field workers by distance from their latest position, with whether they are online."""
    dist = _DIST.format(lat="l.lat", lon="l.lon")
    with connection(engine) as conn:
        rows = conn.execute(text(
            f"SELECT w.id, w.code, w.name, w.status, g.code AS grid, {dist} AS metres, "
            f"l.ts, l.ts > now() - make_interval(mins => :m) AS online "
            "FROM latest_position l JOIN device d ON d.id = l.device_id "
            "JOIN worker w ON w.id = d.worker_id LEFT JOIN grid g ON g.id = w.grid_id "
            f"WHERE w.active ORDER BY {dist} LIMIT :n"),
            {"lon": lon, "lat": lat, "n": limit, "m": ONLINE_MINUTES}).all()
    return [dict(r._mapping) for r in rows]


def nearest_cameras(
    engine: Engine | Connection, lon: float, lat: float, limit: int = 4
) -> list[dict]:
    dist = _DIST.format(lat="c.lat", lon="c.lon")
    with connection(engine) as conn:
        rows = conn.execute(text(
            f"SELECT c.id, c.code, c.name, {dist} AS metres FROM camera c WHERE c.active "
            f"ORDER BY {dist} LIMIT :n"), {"lon": lon, "lat": lat, "n": limit}).all()
    return [dict(r._mapping) for r in rows]


def possible_duplicates(engine: Engine | Connection, case_id: int) -> list[dict]:
    """Same category within 50 m and 24 h of this case, still open or recent."""
    dist = _DIST.format(lat="o.lat", lon="o.lon")
    with connection(engine) as conn:
        me = conn.execute(text('SELECT lon, lat, category_id, reported_at FROM "case" '
                               "WHERE id = :i"), {"i": case_id}).first()
        if me is None:
            return []
        rows = conn.execute(text(
            f"SELECT o.id, o.number, o.status, o.description, o.reported_at, {dist} AS metres "
            'FROM "case" o WHERE o.id <> :i AND o.category_id = :cat '
            "AND o.status NOT IN ('merged', 'rejected') "
            "AND o.reported_at BETWEEN :t - make_interval(hours => :h) "
            "AND :t + make_interval(hours => :h) "
            f"AND {dist} <= :r ORDER BY {dist} LIMIT 10"),
            {"i": case_id, "cat": me.category_id, "t": me.reported_at, "h": DUPLICATE_HOURS,
             "r": DUPLICATE_RADIUS_M, "lon": me.lon, "lat": me.lat}).all()
    return [dict(r._mapping) for r in rows]


def departments(engine: Engine) -> list[dict]:
    with connection(engine) as conn:
        return [dict(r._mapping) for r in conn.execute(text(
            "SELECT id, code, name, name_en FROM department WHERE active ORDER BY id"))]


def reporting_workers(engine: Engine) -> list[dict]:
    """The active grid workers a case may name as its reporter, for the report form."""
    with connection(engine) as conn:
        return [dict(r._mapping) for r in conn.execute(text(
            "SELECT w.code, w.name, g.name AS grid_name FROM worker w "
            "LEFT JOIN grid g ON g.id = w.grid_id WHERE w.active ORDER BY w.code"))]


def categories(engine: Engine) -> list[dict]:
    """Sub-categories with their class, kind and default department, for forms."""
    with connection(engine) as conn:
        return [dict(r._mapping) for r in conn.execute(text(
            "SELECT c.code, c.name, c.name_en, c.kind, p.code AS class_code, p.name AS "
            "class_name, d.code AS department FROM category c JOIN category p ON "
            "p.id = c.parent_id LEFT JOIN department d ON d.id = c.default_department_id "
            "ORDER BY c.code"))]


def case_view(engine: Engine, case_id: int, viewer=None) -> dict:
    """Everything the case-detail panel shows, read in one go off the GUI thread."""
    from db.case_queries import case_detail
    from db.presence import viewers

    with engine.connect() as conn:  # one connection for all of it, not one per part
        number = conn.execute(text('SELECT number FROM "case" WHERE id = :i'),
                              {"i": case_id}).scalar()
        if number is None:
            from db.errors import NotFound

            raise NotFound("案件不存在。", "No such case.")
        images = conn.execute(text(
            "SELECT id, filename, data FROM attachment WHERE case_id = :i ORDER BY id LIMIT 6"),
            {"i": case_id}).all()
        detail = case_detail(conn, number)
        detail["id"] = case_id
        detail["images"] = [(r.filename, bytes(r.data)) for r in images]
        detail["duplicates"] = possible_duplicates(conn, case_id)
        detail["workers"] = nearest_workers(conn, detail["lon"], detail["lat"])
        detail["cameras"] = nearest_cameras(conn, detail["lon"], detail["lat"])
        detail["viewers"] = viewers(conn, case_id, viewer)
    return detail
