"""``python main.py export-map``: a self-contained folium situation map, parsed back.

A 3 km square district with cases brought through the real services, workers
whose terminals reported through the gateway's ingest, and cameras.  The page
is parsed with ``html.parser``; its layers' data blocks are counted against
what the test placed, and the positions drawn are checked against the datum
rule of docs/DOMAIN.md (GCJ-02 over a Chinese basemap, WGS-84 otherwise).
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from sqlalchemy import text

from db.positions import PositionReport, store_positions
from db.territory import import_district
from maps.coords import wgs84_to_gcj02
from tests.cli_runner import main_py
from tests.flows import case_in
from tests.test_tiles import TileServer, free_port, make_png
from tests.test_tiles_build import EAST, NORTH, SOUTH, WEST, square_geojson

# where the test puts things (WGS-84); all inside the square, the last case 500 m from the first
CASES = [
    # (status, severity, lon, lat)
    ("reported", "normal", 116.4100, 39.9200),
    ("filed", "urgent", 116.4300, 39.9050),
    ("in_progress", "normal", 116.4050, 39.9050),
    ("dispatched", "emergency", 116.4250, 39.9230),
    ("rejected", "normal", 116.4150, 39.9150),  # not open: not on the map
    ("closed", "normal", 116.4120, 39.9120),  # not open either
    ("accepted", "normal", 116.4158, 39.9200),  # 493 m east of the first
    ("accepted", "normal", 116.4190, 39.9265),  # in the first's 1 km box, 1.06 km away
]
OPEN = [c for c in CASES if c[0] not in ("rejected", "closed")]
WORKERS = [("MW001", "张巡查", 116.4110, 39.9210), ("MW002", "李网格", 116.4300, 39.9100)]
# a camera whose name (a marker title, not escaped as HTML) holds an address
CAMERAS = [("CAM01", "东门路口", 116.4090, 39.9190, 90.0),
           ("CAM02", "南街 http://cam.hall/2", 116.4320, 39.9020, None)]


class Page(HTMLParser):
    """The parts of the page the tests look at: data blocks, links, text."""

    def __init__(self, html: str):
        super().__init__()
        self.data: dict[str, object] = {}
        self.links: list[str] = []
        self.tags: dict[str, int] = {}
        self._json_id: str | None = None
        self._buf: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key):
                self.links.append(a[key])
        if tag == "script" and a.get("type") == "application/json":
            self._json_id = a["id"]
            self._buf = []

    def handle_data(self, data):
        if self._json_id is not None:
            self._buf.append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._json_id is not None:
            self.data[self._json_id] = json.loads("".join(self._buf))
            self._json_id = None


@pytest.fixture
def hall(db_url, engine, actors, tmp_path):
    summary = import_district(engine, square_geojson(tmp_path / "sq.geojson"), crs="wgs84",
                              cell_m=200, streets=2, communities=4, grids=8)
    numbers = []
    for status, severity, lon, lat in CASES:
        numbers.append(case_in(engine, actors, status, lon=lon, lat=lat, severity=severity,
                               description="路边暴露垃圾，照片见 http://pics.hall/1.jpg").number)
    with engine.begin() as conn:
        # the in-progress case ran over its stage's time limit an hour ago
        conn.execute(text('UPDATE "case" SET stage_due_at = now() - interval \'1 hour\' '
                          "WHERE number = :n"), {"n": numbers[2]})
        grid = conn.execute(text("SELECT id FROM grid ORDER BY code LIMIT 1")).scalar_one()
        for code, name, _lon, _lat in [*WORKERS, ("MW003", "王未报", 0, 0)]:
            wid = conn.execute(text(
                "INSERT INTO worker (code, name, grid_id, status) VALUES (:c, :n, :g, "
                "'patrolling') RETURNING id"), {"c": code, "n": name, "g": grid}).scalar_one()
            conn.execute(text("INSERT INTO device (identifier, worker_id) VALUES (:i, :w)"),
                         {"i": f"T-{code}", "w": wid})
        for code, name, lon, lat, heading in CAMERAS:
            conn.execute(text("INSERT INTO camera (code, name, lon, lat, heading) "
                              "VALUES (:c, :n, :x, :y, :h)"),
                         {"c": code, "n": name, "x": lon, "y": lat, "h": heading})
    now = datetime.now(UTC)
    store_positions(engine, [PositionReport(f"T-{c}", now - timedelta(seconds=30), lon, lat)
                             for c, _n, lon, lat in WORKERS])
    with engine.connect() as conn:
        streets = conn.execute(text("SELECT code FROM street ORDER BY code")).scalars().all()
    return {"url": db_url, "numbers": numbers, "summary": summary, "streets": streets,
            "engine": engine}


def export(hall, out, *args, lang="zh"):
    return main_py("--database-url", hall["url"], "--lang", lang, "export-map", str(out), *args)


def points(page: Page, kind: str) -> list[dict]:
    return page.data.get(f"grid-data-{kind}", [])


def test_offline_district_map_holds_what_was_placed_and_no_address(hall, tmp_path):
    out = tmp_path / "all.html"
    r = export(hall, out, "--offline")
    assert r.returncode == 0, r.stderr
    html = out.read_text("utf-8")
    assert not re.search(r"https?://", html)  # no internet address at all
    page = Page(html)
    assert page.tags.get("html") == 1 and page.tags.get("body") == 1
    assert all(not link.startswith(("http:", "https:", "//")) for link in page.links)
    # boundaries: the district, its 2 streets and 4 communities (grids only at closer scopes)
    counts = {level: len(page.data[f"grid-data-{level}"]["features"])
              for level in ("district", "street", "community")}
    assert counts == {"district": 1, "street": 2, "community": 4}
    assert "grid-data-grid" not in page.data
    # the six open cases, nothing closed or rejected, at their WGS-84 positions (no basemap)
    cases = points(page, "cases")
    assert len(cases) == len(OPEN) == 6
    assert sorted((c["lon"], c["lat"]) for c in cases) == sorted(
        (round(lon, 7), round(lat, 7)) for _s, _v, lon, lat in OPEN)
    # urgent, emergency and overdue cases are never hidden inside a cluster
    front = {(c["lon"], c["lat"]) for c in cases if c["front"]}
    assert front == {(116.43, 39.905), (116.425, 39.923), (116.405, 39.905)}
    # popups in Chinese: category, status, the overdue mark
    popups = " ".join(c["popup"] for c in cases)
    for words in ("暴露垃圾", "上报", "立案", "派遣", "处置中", "受理", "已超期", "紧急", "特急"):
        assert words in popups, words
    # the hall's own text keeps its address, written so that it is no address in the file
    assert "http:&#47;&#47;pics.hall&#47;1.jpg" in popups
    # the two workers that reported (not the one who never did), the two cameras
    assert sorted(w["title"].split()[0] for w in points(page, "workers")) == ["张巡查", "李网格"]
    assert len(points(page, "cameras")) == 2
    assert "东门路口" in " ".join(c["popup"] for c in points(page, "cameras"))
    # the page's title box and the command's summary line
    assert "测试区" in html and "辖区态势图" in html
    assert "6 cases, 2 workers, 2 cameras" in r.stdout


def test_english_popups_and_no_clustering(hall, tmp_path):
    out = tmp_path / "en.html"
    assert export(hall, out, "--offline", lang="en").returncode == 0
    assert "var clustered = true" in out.read_text("utf-8")  # cases cluster by default
    assert export(hall, out, "--offline", "--no-cluster", lang="en").returncode == 0
    assert "var clustered = true" not in out.read_text("utf-8")
    popups = " ".join(c["popup"] for c in points(Page(out.read_text("utf-8")), "cases"))
    assert "Exposed rubbish" in popups  # S0102 in resources/reference.json
    assert "OVERDUE" in popups and "reported" in popups


def gcj_basemap(path, datum="gcj02"):
    """An MBTiles basemap over the square at z13–14 that says it is drawn in ``datum``."""
    from maps.tiles.mbtiles import MBTilesWriter
    from maps.tiles.xyz import tiles_for_lonlat_bounds

    with MBTilesWriter(path) as w:
        w.set_metadata(name="局域底图", format="png", minzoom=13, maxzoom=14, datum=datum)
        for z in (13, 14):
            for key in tiles_for_lonlat_bounds(WEST - 0.05, SOUTH - 0.05, EAST + 0.05,
                                               NORTH + 0.05, z):
                w.add(*key, make_png((200, 220, 240)))
    return path


def test_over_a_gcj02_basemap_everything_is_drawn_in_gcj02(hall, tmp_path):
    out = tmp_path / "gcj.html"
    r = export(hall, out, "--offline", "--basemap", str(gcj_basemap(tmp_path / "b.mbtiles")))
    assert r.returncode == 0, r.stderr
    html = out.read_text("utf-8")
    assert not re.search(r"https?://", html)
    page = Page(html)
    assert page.data["grid-data-tiles"]["tiles"]  # the basemap's tiles, embedded
    want = sorted(tuple(round(v, 7) for v in wgs84_to_gcj02(lon, lat))
                  for _s, _v, lon, lat in OPEN)
    got = sorted((c["lon"], c["lat"]) for c in points(page, "cases"))
    assert [v for p in got for v in p] == pytest.approx([v for p in want for v in p], abs=1e-7)
    ring = page.data["grid-data-district"]["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == pytest.approx(list(wgs84_to_gcj02(WEST, SOUTH)), abs=1e-9)
    assert "datum gcj02" in r.stdout

    # the same basemap saying WGS-84: nothing is shifted
    out2 = tmp_path / "wgs.html"
    assert export(hall, out2, "--offline", "--basemap",
                  str(gcj_basemap(tmp_path / "w.mbtiles", "wgs84"))).returncode == 0
    page2 = Page(out2.read_text("utf-8"))
    assert sorted((c["lon"], c["lat"]) for c in points(page2, "cases")) == sorted(
        (round(lon, 7), round(lat, 7)) for _s, _v, lon, lat in OPEN)


def test_online_map_links_leaflet_only_from_the_configured_address(hall, tmp_path):
    server = TileServer()
    try:
        out = tmp_path / "online.html"
        r = export(hall, out, "--basemap", server.template + "#datum=wgs84",
                   "--leaflet-url", "http://intranet.hall/static/leaflet/")
        assert r.returncode == 0, r.stderr
        html = out.read_text("utf-8")
        page = Page(html)
        base = "http://intranet.hall/static/leaflet"
        assert {f"{base}/leaflet.js", f"{base}/leaflet.markercluster.js", f"{base}/leaflet.css",
                f"{base}/MarkerCluster.css", f"{base}/MarkerCluster.Default.css"} <= set(
            page.links)
        # nothing of folium's other CDN files: jQuery, Bootstrap, Font Awesome, awesome-markers
        for unused in ("jquery", "bootstrap", "fontawesome", "awesome-markers", "cdn."):
            assert unused not in html.lower(), unused
        # the tile server is linked by its template, not fetched: the file stays small
        assert server.template.replace("{z}/{x}/{y}", "{z}/{x}/{y}") in html
        assert server.requests == [] and "grid-data-tiles" not in page.data
        # and without --leaflet-url, GRID_LEAFLET_URL says where Leaflet is
        r2 = main_py("--database-url", hall["url"], "export-map", str(out),
                     env={"GRID_LEAFLET_URL": "http://mirror.hall/leaflet"})
        assert r2.returncode == 0
        assert "http://mirror.hall/leaflet/leaflet.js" in Page(out.read_text("utf-8")).links
    finally:
        server.stop()


def test_street_and_case_scopes(hall, tmp_path):
    engine = hall["engine"]
    street = hall["streets"][0]
    with engine.connect() as conn:
        communities = conn.execute(text(
            "SELECT count(*) FROM community c JOIN street s ON s.id = c.street_id "
            "WHERE s.code = :s"), {"s": street}).scalar_one()
        grids = conn.execute(text(
            "SELECT count(*) FROM grid g JOIN community c ON c.id = g.community_id "
            "JOIN street s ON s.id = c.street_id WHERE s.code = :s"), {"s": street}).scalar_one()
        in_street = conn.execute(text(
            'SELECT count(*) FROM "case" k JOIN grid g ON g.id = k.grid_id '
            "JOIN community c ON c.id = g.community_id JOIN street s ON s.id = c.street_id "
            "WHERE s.code = :s AND k.status NOT IN ('rejected', 'closed')"),
            {"s": street}).scalar_one()
    out = tmp_path / "street.html"
    assert export(hall, out, "--street", street, "--offline").returncode == 0
    page = Page(out.read_text("utf-8"))
    assert len(page.data["grid-data-street"]["features"]) == 1
    assert page.data["grid-data-street"]["features"][0]["properties"]["code"] == street
    assert len(page.data["grid-data-community"]["features"]) == communities
    assert len(page.data["grid-data-grid"]["features"]) == grids
    assert len(points(page, "cases")) == in_street

    # a case: itself (first, in front), the open cases within 1 km, workers with distances
    out = tmp_path / "case.html"
    first = hall["numbers"][0]
    assert export(hall, out, "--case", first, "--offline").returncode == 0
    page = Page(out.read_text("utf-8"))
    cases = points(page, "cases")
    assert cases[0]["title"].startswith(first) and cases[0]["front"]
    # within 1 km of (116.41, 39.92): the accepted case 493 m east; not the one 1.06 km
    # north-east (inside the square around the circle), the others are 1.5 km and more
    assert sorted(c["title"].split()[0] for c in cases) == sorted([first, hall["numbers"][6]])
    workers = points(page, "workers")
    assert [w["title"].split()[0] for w in workers] == ["张巡查"]  # 140 m; 李网格 is 2 km away
    assert "m</td>" in workers[0]["popup"]


def test_export_view_takes_the_console_bounds(hall, tmp_path):
    from console.situation_export import export_view

    west_half = (WEST, SOUTH, (WEST + EAST) / 2, NORTH)
    summary = export_view(hall["engine"], tmp_path / "view.html", west_half, offline=True)
    page = Page((tmp_path / "view.html").read_text("utf-8"))
    inside = [c for c in OPEN if c[2] <= (WEST + EAST) / 2]
    assert len(points(page, "cases")) == len(inside) == summary.counts["cases"] == 3
    assert len(points(page, "cameras")) == 1  # 东门路口; 南街 is in the east half
    from db.errors import BadInput

    with pytest.raises(BadInput):
        export_view(hall["engine"], tmp_path / "v.html", (EAST, SOUTH, WEST, NORTH))


def test_a_dead_tile_server_leaves_a_working_map_and_a_note(hall, tmp_path):
    out = tmp_path / "dead.html"
    dead = f"http://127.0.0.1:{free_port()}/{{z}}/{{x}}/{{y}}.png"
    r = export(hall, out, "--offline", "--basemap", dead, lang="en")
    assert r.returncode == 0, r.stderr
    assert "Cannot reach tile server" in r.stderr
    page = Page(out.read_text("utf-8"))
    assert "grid-data-tiles" not in page.data and len(points(page, "cases")) == 6
    assert "datum wgs84" in r.stdout  # nothing to match: drawn as stored


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--street", "999999999"], "No street 999999999"),
        (["--grid", "110199999999999"], "No grid 110199999999999"),
        (["--case", "20000101-99999"], "No case 20000101-99999"),
        (["--basemap", "http://tiles.hall/{z}/{x}.png"], "lacks {y}"),
        (["--basemap", "BAD_MBTILES"], "is not an MBTiles file"),
        (["--basemap", "nowhere.pmtiles"], "No such basemap file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(hall, tmp_path, args, needle):
    bad = tmp_path / "bad.mbtiles"
    bad.write_text("not a database")
    args = [str(bad) if a == "BAD_MBTILES" else a for a in args]
    out = tmp_path / "x.html"
    r = export(hall, out, *args, lang="en")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr and not out.exists()
    zh = export(hall, out, *args)
    assert zh.returncode == 2 and "Traceback" not in zh.stderr
    assert len(zh.stderr.strip().splitlines()) == 1 and zh.stderr.strip() != r.stderr.strip()


def test_out_must_be_html(hall, tmp_path):
    r = export(hall, tmp_path / "map.png", lang="en")
    assert r.returncode == 2 and "must end in .html" in r.stderr


def test_mbtiles_datum_key_is_read_by_sqlite(tmp_path):
    # the test's own basemap file is a real MBTiles: the key the map relies on is there
    path = gcj_basemap(tmp_path / "k.mbtiles")
    conn = sqlite3.connect(path)
    assert dict(conn.execute("SELECT name, value FROM metadata"))["datum"] == "gcj02"
    conn.close()
