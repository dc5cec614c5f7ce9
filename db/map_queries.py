"""What the live map reads: territory outlines, the field force, cameras, grid figures.

Called off the GUI thread (``console.tasks.run_in_thread``) by the map's stores
in ``console/map_stores.py``.  Geometry comes back as stored (WGS-84 GeoJSON);
projecting to the canvas is ``maps.mercator``'s job, in the store.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, text

from db.feed import ChangeFeed, dsn_of
from db.positions import CHANNEL as POSITIONS_CHANNEL
from db.positions import latest_since

WEEK_DAYS = 7


def territory_features(engine: Engine) -> list[dict]:
    """Every district, street, community and grid: level, id, code, name, parent, geometry."""
    sql = """
        SELECT 'district' AS level, 0 AS id, adcode AS code, name, NULL AS parent, geometry
        FROM district
        UNION ALL
        SELECT 'street', s.id, s.code, s.name, s.adcode, s.geometry FROM street s
        UNION ALL
        SELECT 'community', c.id, c.code, c.name, s.code, c.geometry
        FROM community c JOIN street s ON s.id = c.street_id
        UNION ALL
        SELECT 'grid', g.id, g.code, g.name, c.code, g.geometry
        FROM grid g JOIN community c ON c.id = g.community_id
    """
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql + " ORDER BY 1, 3"))]


def field_force(engine: Engine) -> list[dict]:
    """Every device with its worker (if any) and latest position (if any).

    ``offline`` is true when the gateway recorded the device offline after its
    last report (``db.positions.sweep_offline``).
    """
    sql = """
        SELECT d.id AS device_id, d.identifier, w.id AS worker_id, w.code, w.name, w.status,
               w.phone, g.code AS grid_code, g.name AS grid_name,
               lp.ts, lp.lon, lp.lat, lp.course, lp.speed_kmh, lp.received_at,
               EXISTS (SELECT 1 FROM worker_event e WHERE e.device_id = d.id
                       AND e.kind = 'offline' AND e.at >= lp.received_at) AS offline
        FROM device d
        LEFT JOIN worker w ON w.id = d.worker_id
        LEFT JOIN grid g ON g.id = w.grid_id
        LEFT JOIN latest_position lp ON lp.device_id = d.id
        ORDER BY d.id
    """
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql))]


def positions_since(engine: Engine, watermark: datetime | None) -> tuple[list, datetime | None]:
    """Latest positions changed after ``watermark`` and the new watermark (see db.positions).

    Rows: device_id, ts, lon, lat, speed_kmh, course, altitude, accuracy,
    battery, grid_id, received_at.
    """
    with engine.connect() as conn:
        return latest_since(conn, watermark)


def cameras(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(
            "SELECT c.id, c.code, c.name, c.lon, c.lat, c.heading, g.code AS grid_code "
            "FROM camera c LEFT JOIN grid g ON g.id = c.grid_id WHERE c.active ORDER BY c.id"))]


def grid_weekly_cases(engine: Engine) -> dict[str, float]:
    """Cases reported per day over the last seven days, by grid code (the choropleth)."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            'SELECT g.code, count(*)::float / :d FROM "case" c JOIN grid g ON g.id = c.grid_id '
            "WHERE c.reported_at >= now() - make_interval(days => :d) GROUP BY g.code"),
            {"d": WEEK_DAYS}).all()
    return {code: float(v) for code, v in rows}


class PositionListener(ChangeFeed):
    """LISTEN ``grid_positions`` and pass each notification's watermark on.

    The change feed's thread, reconnect and back-off, without reading the case
    log: a notification only says "positions newer than W exist"; the
    console's position store reads them (``positions_since``).  ``on_notify``
    gets ``(channel, payload)``; ``on_online(True)`` after every (re)connect, so
    the store can catch up with whatever it missed while away.
    """

    def __init__(self, engine_or_dsn, on_notify, on_online=None, heartbeat: float = 2.0):
        dsn = engine_or_dsn if isinstance(engine_or_dsn, str) else dsn_of(engine_or_dsn)
        super().__init__(dsn, lambda entries: None, on_online, heartbeat=heartbeat,
                         channels=(POSITIONS_CHANNEL,), on_notify=on_notify)

    def _catch_up(self) -> None:
        """No case log to read (the store reads positions); a ``SELECT 1`` finds a dead link."""
        conn = self._conn
        assert conn is not None
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
