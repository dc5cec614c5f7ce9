"""Read the territory: imported districts, and what lies at a point."""

from __future__ import annotations

import math

from sqlalchemy import Engine, text

from db.errors import BadInput
from db.locate import territory
from maps.coords import gcj02_to_wgs84, out_of_china


def districts(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT d.adcode, d.name, d.area_km2, "
                "(SELECT count(*) FROM street s WHERE s.adcode = d.adcode) AS streets, "
                "(SELECT count(*) FROM community c JOIN street s ON s.id = c.street_id "
                " WHERE s.adcode = d.adcode) AS communities, "
                "(SELECT count(*) FROM grid g JOIN community c ON c.id = g.community_id "
                " JOIN street s ON s.id = c.street_id WHERE s.adcode = d.adcode) AS grids, "
                "(SELECT count(*) FROM unit_cell u WHERE u.adcode = d.adcode) AS unit_cells "
                "FROM district d ORDER BY d.adcode"
            )
        ).all()
    return [dict(r._mapping) for r in rows]


def locate_point(engine: Engine, lon: float, lat: float, crs: str = "wgs84") -> dict:
    """The cell, grid, community, street and district at a point, or why there is none."""
    if not (math.isfinite(lon) and math.isfinite(lat)) or abs(lon) > 180 or abs(lat) > 90:
        raise BadInput("经纬度超出范围。", "Coordinates out of range.")
    if crs == "gcj02":
        if out_of_china(lon, lat):
            raise BadInput("GCJ-02 坐标只适用于中国境内。", "GCJ-02 applies inside China only.")
        lon, lat = gcj02_to_wgs84(lon, lat)
    with engine.connect() as conn:
        index = territory(conn)
        hit = index.cell(lon, lat) if index else None
        if hit is None:
            message_zh = "该点不在任何已导入的辖区内。" if index else "尚未导入任何辖区。"
            message_en = (
                "The point is outside every imported district."
                if index
                else "No district has been imported yet."
            )
            return {
                "inside": False,
                "wgs84": [lon, lat],
                "message": message_zh,
                "message_en": message_en,
            }
        district, pos = hit
        row = conn.execute(
            text(
                "SELECT g.code AS grid_code, g.name AS grid_name, c.code AS community_code, "
                "c.name AS community_name, s.code AS street_code, s.name AS street_name "
                "FROM grid g JOIN community c ON c.id = g.community_id "
                "JOIN street s ON s.id = c.street_id WHERE g.id = :g"
            ),
            {"g": int(district.grid_ids[pos])},
        ).one()
    return {
        "inside": True,
        "wgs84": [lon, lat],
        "cell": str(district.codes[pos]),
        "grid": {"code": row.grid_code, "name": row.grid_name},
        "community": {"code": row.community_code, "name": row.community_name},
        "street": {"code": row.street_code, "name": row.street_name},
        "district": {"code": district.adcode, "name": district.name},
    }
