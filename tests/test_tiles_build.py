"""``python main.py tiles build``: a basemap drawn from the territory, read back as the map would.

A small district (a 3 km square the test writes, imported through the CLI as a
hall would) keeps the build to a few hundred tiles.  What is expected comes from
the MBTiles specification (metadata keys, TMS rows), from the slippy-map tile
formula applied to the district's own box, and from the datum rule of
docs/DOMAIN.md (a GCJ-02 basemap is drawn shifted by the GCJ-02 formula).
"""

from __future__ import annotations

import json
import math
import signal
import sqlite3
import subprocess
import sys

import pytest
from PySide6.QtGui import QImage

from maps.coords import wgs84_to_gcj02
from maps.tiles import TileError, open_source
from tests.cli_runner import ROOT, main_py

WEST, SOUTH, EAST, NORTH = 116.400, 39.900, 116.435, 39.927  # WGS-84, about 3 × 3 km


def square_geojson(path, name="测试区", adcode="110199"):
    ring = [[WEST, SOUTH], [EAST, SOUTH], [EAST, NORTH], [WEST, NORTH], [WEST, SOUTH]]
    path.write_text(json.dumps({
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {"name": name, "adcode": adcode},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}}],
    }, ensure_ascii=False), encoding="utf-8")
    return path


def run(db_url, *args):
    return main_py("--database-url", db_url, *args, timeout=300)


@pytest.fixture
def small_district(db_url, tmp_path):
    geo = square_geojson(tmp_path / "square.geojson")
    r = run(db_url, "district", "import", str(geo), "--crs", "wgs84", "--cell", "200",
            "--streets", "2", "--communities", "4", "--grids", "8")
    assert r.returncode == 0, r.stderr
    return db_url


def slippy(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The OpenStreetMap wiki's tile formula (independent of the code under test)."""
    n = 2 ** z
    x = int((lon + 180.0) / 360.0 * n)
    lat_r = math.radians(lat)
    y = int((1.0 - math.asinh(math.tan(lat_r)) / math.pi) / 2.0 * n)
    return x, y


def expected_tiles(z: int, west: float, south: float, east: float, north: float) -> set:
    """The district's box at zoom z and one tile more on every side (the build's margin)."""
    x0, y0 = slippy(west, north, z)
    x1, y1 = slippy(east, south, z)
    return {(z, x, y) for x in range(x0 - 1, x1 + 2) for y in range(y0 - 1, y1 + 2)}


def read_mbtiles(path):
    conn = sqlite3.connect(path)
    meta = dict(conn.execute("SELECT name, value FROM metadata"))
    rows = conn.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles").fetchall()
    conn.close()
    return meta, rows


def test_build_writes_a_valid_mbtiles_that_the_map_reads(small_district, tmp_path):
    out = tmp_path / "basemap.mbtiles"
    r = run(small_district, "tiles", "build", str(out), "--min-zoom", "12", "--max-zoom", "15")
    assert r.returncode == 0, r.stderr
    assert "tiles build: 测试区" in r.stdout and f"wrote {out}" in r.stdout
    assert " s" in r.stdout.splitlines()[-1]  # the time it took

    meta, rows = read_mbtiles(out)
    # the specification's metadata, and the console's datum key (GCJ-02 by default)
    assert meta["format"] == "png" and meta["name"] == "测试区"
    assert (meta["minzoom"], meta["maxzoom"], meta["datum"]) == ("12", "15", "gcj02")
    gw, gs = wgs84_to_gcj02(WEST, SOUTH)
    ge, gn = wgs84_to_gcj02(EAST, NORTH)
    bounds = [float(v) for v in meta["bounds"].split(",")]
    assert bounds == pytest.approx([gw, gs, ge, gn], abs=2e-5)  # the box, moved to GCJ-02

    # exactly the tiles of the (GCJ-02) box plus the margin, rows stored TMS
    stored = {(z, x, (1 << z) - 1 - row) for z, x, row, _ in rows}
    want = set().union(*(expected_tiles(z, gw, gs, ge, gn) for z in range(12, 16)))
    assert stored == want
    for *_key, data in rows:
        image = QImage.fromData(bytes(data), "PNG")
        assert not image.isNull() and (image.width(), image.height()) == (256, 256)

    # and the map reads it through the one entry point
    source = open_source(str(out))
    assert (source.kind, source.datum, source.min_zoom, source.max_zoom) == (
        "mbtiles", "gcj02", 12, 15)
    cx, cy = slippy(*wgs84_to_gcj02((WEST + EAST) / 2, (SOUTH + NORTH) / 2), 15)
    inside = QImage.fromData(source.fetch(15, cx, cy))
    corner = min(k for k in want if k[0] == 15)  # the margin's north-west corner tile
    outside = QImage.fromData(source.fetch(*corner))
    # inside the district there is something drawn; the margin is plain ground
    assert len({inside.pixel(x, y) for x in range(0, 256, 8) for y in range(0, 256, 8)}) > 1
    assert len({outside.pixel(x, y) for x in range(0, 256, 8) for y in range(0, 256, 8)}) == 1
    assert outside.pixel(128, 128) != inside.pixel(128, 128)
    assert source.fetch(16, 0, 0) is None  # beyond the built zooms
    source.close()


def test_wgs84_build_is_not_shifted(small_district, tmp_path):
    out = tmp_path / "wgs.mbtiles"
    r = run(small_district, "tiles", "build", str(out), "--min-zoom", "13", "--max-zoom", "13",
            "--datum", "wgs84", "--threads", "1")
    assert r.returncode == 0, r.stderr
    meta, rows = read_mbtiles(out)
    assert meta["datum"] == "wgs84"
    assert [float(v) for v in meta["bounds"].split(",")] == pytest.approx(
        [WEST, SOUTH, EAST, NORTH], abs=2e-5)
    assert {(z, x, (1 << z) - 1 - row) for z, x, row, _ in rows} == expected_tiles(
        13, WEST, SOUTH, EAST, NORTH)
    assert open_source(str(out)).datum == "wgs84"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["out.png"], "must end in .mbtiles"),
        (["b.mbtiles", "--min-zoom", "15", "--max-zoom", "12"], "Zoom levels"),
        (["b.mbtiles", "--max-zoom", "21"], "Zoom levels"),
        (["b.mbtiles", "--district", "999999"], "No district 999999"),
        (["nowhere/b.mbtiles"], "No such folder"),
        (["b.mbtiles", "--threads", "0"], "--threads"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(db_url, tmp_path, args, needle):
    target = tmp_path / "b.mbtiles"
    target.write_bytes(b"an older basemap")
    args = [str(tmp_path / a) if a.endswith((".mbtiles", ".png")) else a for a in args]
    r = run(db_url, "--lang", "en", "tiles", "build", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
    assert target.read_bytes() == b"an older basemap"  # a failed build leaves no trace


def test_an_interrupted_build_leaves_the_old_basemap(small_district, tmp_path):
    out = tmp_path / "kept.mbtiles"
    out.write_bytes(b"yesterday's basemap")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--database-url", small_district, "tiles",
         "build", str(out), "--min-zoom", "11", "--max-zoom", "19", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        for line in proc.stdout:  # wait until tiles are being written
            if line.strip().startswith("z") and "tiles," in line:
                break
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 130, proc.stderr.read()
    assert out.read_bytes() == b"yesterday's basemap"
    assert not [p.name for p in tmp_path.iterdir() if "mbtiles" in p.name and p != out]


def test_no_territory_yet_is_a_clear_message(db_url, tmp_path):
    r = run(db_url, "tiles", "build", str(tmp_path / "b.mbtiles"))
    assert r.returncode == 2 and "尚未导入任何辖区" in r.stderr
    assert not (tmp_path / "b.mbtiles").exists()


def test_too_many_tiles_is_refused_with_the_way_out():
    from maps.tiles.basemap import build_scene

    square = {"type": "Polygon", "coordinates": [[[WEST, SOUTH], [EAST, SOUTH], [EAST, NORTH],
                                                   [WEST, NORTH], [WEST, SOUTH]]]}
    territory = {"districts": [{"adcode": "110199", "name": "测试区", "geometry": square}],
                 "streets": [], "communities": [], "bbox": (WEST, SOUTH, EAST, NORTH)}
    # z12 needs (box 1×2 + margin) = 3×4 = 12 tiles at most here; 5 are too few
    with pytest.raises(TileError) as err:
        build_scene(territory, zooms=(12, 13), max_tiles=5)
    assert "lower --max-zoom" in err.value.en and "--max-zoom" in err.value.zh
    scene = build_scene(territory, zooms=(12, 12))
    assert scene.tile_count == len(expected_tiles(12, *wgs84_to_gcj02(WEST, SOUTH),
                                                  *wgs84_to_gcj02(EAST, NORTH)))


def test_the_embedded_demo_builds_its_basemap_in_the_background(qtbot, db_url, tmp_path):
    """First start of the embedded demo: the window opens at once, the basemap follows."""
    from console.config import DEMO_BASEMAP, Settings, basemap_spec
    from db.engine import make_engine
    from db.territory import import_district
    from db.users import get_actor
    from widgets.app import make_app
    from widgets.main_window import MainWindow

    make_app()
    engine = make_engine(db_url)
    import_district(engine, square_geojson(tmp_path / "sq.geojson"), crs="wgs84", cell_m=200,
                    streets=2, communities=4, grids=8)
    data = tmp_path / "data"
    data.mkdir()
    target = data / DEMO_BASEMAP
    # the embedded demo is the console without a database URL (a shared server never is)
    win = MainWindow(engine, get_actor(engine, "dispatcher1", "ws-demo"),
                     Settings(database_url=None, data_dir=data))
    qtbot.addWidget(win)
    try:
        win.show()
        assert win.map.basemap.spec is None  # the window did not wait for the build
        qtbot.waitUntil(lambda: win.map.basemap.spec == str(target), timeout=180_000)
        source = open_source(str(target))
        assert source.datum == "gcj02" and (source.min_zoom, source.max_zoom) == (11, 16)
        source.close()
        # from now on the demo's setting names it, and a second start builds nothing
        assert basemap_spec(Settings(database_url=None, data_dir=data)) == str(target)
        assert not [p for p in data.iterdir() if p.name.endswith(".part")]
    finally:
        win.shutdown()
        win.close()
    # a console on a shared server never draws one behind its administrators' backs
    shared = tmp_path / "shared"
    shared.mkdir()
    win2 = MainWindow(engine, get_actor(engine, "dispatcher1", "ws-shared"),
                      Settings(database_url=db_url, data_dir=shared))
    qtbot.addWidget(win2)
    try:
        win2.show()
        qtbot.waitUntil(win2.map.ready, timeout=30_000)
        # whatever the window started on worker threads has finished (a build would have)
        from PySide6.QtCore import QThreadPool

        QThreadPool.globalInstance().waitForDone(60_000)
        assert win2.map.basemap.spec is None and not (shared / DEMO_BASEMAP).exists()
    finally:
        win2.shutdown()
        win2.close()
        engine.dispose()


def test_ctrl_c_stops_rendering_at_once_not_after_the_queued_tiles(monkeypatch, tmp_path, qapp):
    """Ctrl-C during a build used to render the rest of the queued chunk (64 tiles and more)
    before the command ended: minutes at z19 on a loaded machine (a CI run hit 300 s).

    The progress line is printed just before the next chunk is queued, so a Ctrl-C sent
    on seeing it lands while tiles are being queued: the executor's exit then renders
    every tile queued so far. Here the interrupt is raised exactly there, as Python's
    SIGINT handler raises it, on the 40th tile of the second chunk.
    """
    import concurrent.futures

    from maps.tiles.basemap import build_scene
    from widgets.map import tile_render

    square = {"type": "Polygon", "coordinates": [[[WEST, SOUTH], [EAST, SOUTH], [EAST, NORTH],
                                                   [WEST, NORTH], [WEST, SOUTH]]]}
    territory = {"districts": [{"adcode": "110199", "name": "测试区", "geometry": square}],
                 "streets": [], "communities": [], "bbox": (WEST, SOUTH, EAST, NORTH)}
    scene = build_scene(territory, zooms=(15, 17))
    assert scene.tile_count > 128  # two chunks of 64 at least
    rendered: list[tuple] = []
    real_render = tile_render.TileRenderer.render_png
    real_submit = concurrent.futures.ThreadPoolExecutor.submit
    queued = [0]

    def render_and_count(self, z, x, y):
        rendered.append((z, x, y))
        return real_render(self, z, x, y)

    def submit(self, fn, *args, **kwargs):
        queued[0] += 1
        if queued[0] == 64 + 40:
            raise KeyboardInterrupt
        return real_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(tile_render.TileRenderer, "render_png", render_and_count)
    monkeypatch.setattr(concurrent.futures.ThreadPoolExecutor, "submit", submit)
    out = tmp_path / "kept.mbtiles"
    out.write_bytes(b"yesterday's basemap")
    with pytest.raises(KeyboardInterrupt):
        tile_render.write_basemap(scene, out, workers=1)
    # The first chunk and the tile running at the interrupt; none of the 38 waiting.
    assert len(rendered) <= 64 + 2, len(rendered)
    assert out.read_bytes() == b"yesterday's basemap"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.mbtiles"]
