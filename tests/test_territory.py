"""Coordinates, district import into the database, and locating points."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import shapely
from shapely.geometry import shape
from sqlalchemy import text

from db.errors import BadInput
from db.locate import locate_grids, territory
from db.territory import import_district
from db.territory_queries import locate_point
from maps.coords import gcj02_to_wgs84, haversine_m, out_of_china, wgs84_to_gcj02
from tests.conftest import table_counts
from tests.flows import report

DONGCHENG = resources.files("resources").joinpath("districts/110101.geojson")


def test_round_trip_within_half_a_metre_and_offset_of_known_size():
    rng = np.random.default_rng(1)
    for x0, y0, x1, y1 in [(116.37, 39.85, 116.46, 39.98), (121.29, 28.44, 121.68, 28.65)]:
        lon = rng.uniform(x0, x1, 2000)
        lat = rng.uniform(y0, y1, 2000)
        glon, glat = wgs84_to_gcj02(lon, lat)
        back_lon, back_lat = gcj02_to_wgs84(glon, glat)
        assert haversine_m(lon, lat, back_lon, back_lat).max() < 0.5
        offset = haversine_m(lon, lat, glon, glat)
        assert 100 < offset.min() and offset.max() < 1000  # hundreds of metres
    # Scalars stay scalars; outside China nothing moves.
    assert isinstance(wgs84_to_gcj02(116.4, 39.9)[0], float)
    assert wgs84_to_gcj02(2.35, 48.85) == (2.35, 48.85)
    assert out_of_china(2.35, 48.85) and not out_of_china(116.4, 39.9)


@pytest.fixture
def dongcheng(engine):
    summary = import_district(engine, DONGCHENG)
    return summary


def test_import_writes_the_hierarchy(engine, dongcheng):
    assert dongcheng.adcode == "110101" and dongcheng.name == "东城区"
    assert (dongcheng.streets, dongcheng.communities) == (17, 205)
    with engine.connect() as conn:
        counts = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM street), (SELECT count(*) FROM community), "
                "(SELECT count(*) FROM grid), (SELECT count(*) FROM unit_cell), "
                "(SELECT sum(area_m2) FROM unit_cell), (SELECT area_km2 FROM district)"
            )
        ).one()
        bad_codes = conn.execute(
            text(
                "SELECT count(*) FROM unit_cell u JOIN community c ON c.id = u.community_id "
                "WHERE u.code !~ '^[0-9]{15}$' OR left(u.code, 12) <> c.code"
            )
        ).scalar_one()
        generated = conn.execute(text("SELECT bool_and(name_generated) FROM grid")).scalar_one()
    assert counts[0:4] == (17, 205, dongcheng.grids, dongcheng.cells)
    assert abs(counts[4] / 1e6 - counts[5]) / counts[5] < 0.005
    assert bad_codes == 0 and generated is True


def test_points_locate_to_the_cell_whose_polygon_contains_them(engine, dongcheng):
    with engine.connect() as conn:
        index = territory(conn)
        cells = {
            r.code: shape(r.geometry)
            for r in conn.execute(text("SELECT code, geometry FROM unit_cell"))
        }
        district = shape(conn.execute(text("SELECT geometry FROM district")).scalar_one())
    d = index.districts[0]
    rng = np.random.default_rng(7)
    x0, y0, x1, y1 = district.bounds
    lons, lats = rng.uniform(x0, x1, 5000), rng.uniform(y0, y1, 5000)
    found = d.locate_many(lons, lats)
    inside = shapely.contains_xy(district, lons, lats)
    assert np.all((found >= 0) == inside)
    for i in np.nonzero(found >= 0)[0][:2000]:
        assert cells[d.codes[found[i]]].covers(shapely.Point(lons[i], lats[i]))
    # Points on the district's own boundary vertices count as inside.
    vertices = shapely.get_coordinates(
        district.exterior if district.geom_type == "Polygon" else district.geoms[0].exterior
    )[:200]
    on_border = d.locate_many(vertices[:, 0], vertices[:, 1])
    assert np.all(on_border >= 0)


def test_locate_answers_names_and_outside_plainly(engine, dongcheng):
    lon, lat = gcj02_to_wgs84(116.417, 39.928)
    answer = locate_point(engine, lon, lat)
    assert answer["inside"] and answer["district"]["name"] == "东城区"
    assert answer["cell"].startswith(answer["community"]["code"])
    assert answer["grid"]["code"].startswith(answer["community"]["code"])
    same = locate_point(engine, 116.417, 39.928, crs="gcj02")
    assert same["cell"] == answer["cell"]
    outside = locate_point(engine, 116.30, 39.90)
    assert outside == {
        "inside": False,
        "wgs84": [116.30, 39.90],
        "message": "该点不在任何已导入的辖区内。",
        "message_en": "The point is outside every imported district.",
    }
    with pytest.raises(BadInput):
        locate_point(engine, 200, 39.9)


def test_reports_are_placed_in_their_grid(engine, actors, dongcheng):
    lon, lat = gcj02_to_wgs84(116.417, 39.928)
    case = report(engine, actors, lon=lon, lat=lat)
    with engine.connect() as conn:
        grid_id = conn.execute(
            text('SELECT grid_id FROM "case" WHERE number = :n'), {"n": case.number}
        ).scalar_one()
        assert locate_grids(conn, [(lon, lat)]) == [grid_id]
    assert grid_id is not None
    before = table_counts(engine)
    with pytest.raises(BadInput, match="不在辖区内"):
        report(engine, actors, lon=116.30, lat=39.90)
    assert table_counts(engine) == before


def test_second_import_needs_replace_and_no_open_cases(engine, actors, dongcheng):
    with pytest.raises(BadInput, match="--replace"):
        import_district(engine, DONGCHENG)
    lon, lat = gcj02_to_wgs84(116.417, 39.928)
    case = report(engine, actors, lon=lon, lat=lat)
    with pytest.raises(BadInput, match="未办结案件"):
        import_district(engine, DONGCHENG, replace=True, grids=300)
    with engine.begin() as conn:  # the case is closed elsewhere
        conn.execute(
            text("UPDATE \"case\" SET status = 'closed' WHERE number = :n"), {"n": case.number}
        )
    summary = import_district(engine, DONGCHENG, replace=True, communities=100, grids=300)
    assert (summary.communities, summary.grids) == (100, 300)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM grid")).scalar_one() == 300


BAD_FILES = {
    "not_json.geojson": (b"this is not json", "不是有效的 GeoJSON"),
    "point.geojson": (
        json.dumps(
            {
                "type": "Feature",
                "properties": {"adcode": "110101"},
                "geometry": {"type": "Point", "coordinates": [116.4, 39.9]},
            }
        ).encode(),
        "没有面",
    ),
    "bowtie.geojson": (
        json.dumps(
            {
                "type": "Feature",
                "properties": {"adcode": "110101"},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [
                            [116.40, 39.90],
                            [116.42, 39.92],
                            [116.42, 39.90],
                            [116.40, 39.92],
                            [116.40, 39.90],
                        ]
                    ],
                },
            }
        ).encode(),
        "自相交",
    ),
    "paris.geojson": (
        json.dumps(
            {
                "type": "Feature",
                "properties": {"adcode": "110101"},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[2.30, 48.80], [2.40, 48.80], [2.40, 48.90], [2.30, 48.80]]],
                },
            }
        ).encode(),
        "境外",
    ),
    "empty.geojson": (json.dumps({"type": "FeatureCollection", "features": []}).encode(), "没有面"),
    "empty_polygon.geojson": (json.dumps({"type": "Polygon", "coordinates": []}).encode(), "为空"),
    "no_adcode.geojson": (
        json.dumps(
            {
                "type": "Polygon",
                "coordinates": [
                    [[116.40, 39.90], [116.42, 39.90], [116.42, 39.92], [116.40, 39.90]]
                ],
            }
        ).encode(),
        "adcode",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_boundary_files_are_refused_and_write_nothing(engine, tmp_path, name):
    content, message = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    with engine.connect() as conn:
        before = conn.execute(
            text("SELECT (SELECT count(*) FROM district), (SELECT count(*) FROM unit_cell)")
        ).one()
    with pytest.raises(BadInput) as err:
        import_district(engine, path)
    assert message in err.value.zh, err.value.zh
    with engine.connect() as conn:
        after = conn.execute(
            text("SELECT (SELECT count(*) FROM district), (SELECT count(*) FROM unit_cell)")
        ).one()
    assert tuple(after) == tuple(before) == (0, 0)


def test_single_and_bulk_lookups_agree(engine, dongcheng):
    with engine.connect() as conn:
        index = territory(conn)
    rng = np.random.default_rng(11)
    x0, y0, x1, y1 = index.districts[0].bounds
    lons, lats = rng.uniform(x0, x1, 3000), rng.uniform(y0, y1, 3000)
    bulk = index.grid_ids(lons, lats)
    one_by_one = [index.grid_ids([a], [b])[0] for a, b in zip(lons, lats, strict=True)]
    assert bulk == one_by_one
    assert any(g is None for g in bulk) and any(g is not None for g in bulk)
