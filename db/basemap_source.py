"""Read what a home-made basemap shows: the district outline, streets and communities with names.

``python main.py tiles build`` renders a basemap for an air-gapped hall from the
territory the database holds; the drawing is ``widgets/map/tile_render.py``
(QPainter, which the house keeps above ``db/``), the geometry comes from here as
plain data (WGS-84 GeoJSON dicts), so the renderer never talks SQL.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

from db.errors import BadInput


def basemap_territory(engine: Engine, adcode: str | None = None) -> dict:
    """The districts (all, or ``adcode``) with their streets and communities, WGS-84.

    ``{"districts": [{adcode, name, geometry, bbox}], "streets": [{code, name,
    geometry, adcode}], "communities": [{code, name, geometry, street_code}],
    "bbox": (west, south, east, north)}``.  Raises ``BadInput`` when there is no
    such district, or none at all.
    """
    where = "WHERE d.adcode = :a" if adcode else ""
    params = {"a": adcode} if adcode else {}
    with engine.connect() as conn:
        districts = [
            {
                "adcode": r.adcode,
                "name": r.name,
                "geometry": r.geometry,
                "bbox": (r.min_lon, r.min_lat, r.max_lon, r.max_lat),
            }
            for r in conn.execute(
                text(
                    "SELECT adcode, name, geometry, min_lon, min_lat, max_lon, max_lat "
                    f"FROM district d {where} ORDER BY adcode"
                ),
                params,
            )
        ]
        if not districts:
            if adcode:
                raise BadInput(f"没有辖区 {adcode}。", f"No district {adcode}.")
            raise BadInput(
                "尚未导入任何辖区，请先运行 district import 或 demo seed。",
                "No district has been imported yet: run 'district import' or 'demo seed' first.",
            )
        streets = [
            dict(r._mapping)
            for r in conn.execute(
                text(
                    "SELECT s.code, s.name, s.geometry, s.adcode, s.area_m2 FROM street s "
                    f"JOIN district d ON d.adcode = s.adcode {where} ORDER BY s.code"
                ),
                params,
            )
        ]
        communities = [
            dict(r._mapping)
            for r in conn.execute(
                text(
                    "SELECT c.code, c.name, c.geometry, s.code AS street_code, c.area_m2 "
                    "FROM community c JOIN street s ON s.id = c.street_id "
                    f"JOIN district d ON d.adcode = s.adcode {where} ORDER BY c.code"
                ),
                params,
            )
        ]
    west = min(d["bbox"][0] for d in districts)
    south = min(d["bbox"][1] for d in districts)
    east = max(d["bbox"][2] for d in districts)
    north = max(d["bbox"][3] for d in districts)
    return {
        "districts": districts,
        "streets": streets,
        "communities": communities,
        "bbox": (west, south, east, north),
    }
