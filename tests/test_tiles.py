"""Basemap sources: a real tile server on loopback, MBTiles and PMTiles files the test writes.

The tile server is ``http.server`` in a thread serving PNGs made here; the bad
servers answer garbage, answer slowly, answer 500, speak no HTTP, or are not
there at all.  Expected values come from the formats' specifications (MBTiles
rows count from the south, tile_row = 2^z − 1 − y; PMTiles addresses tiles by
Hilbert id through the ``pmtiles`` package's own writer) and from Web Mercator
arithmetic worked out by hand.
"""

from __future__ import annotations

import http.server
import math
import socket
import sqlite3
import struct
import threading
import zlib
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from maps.tiles import TileError, image_format, open_source, split_spec
from maps.tiles.cache import DiskCache, MemoryCache
from maps.tiles.mbtiles import MBTilesWriter
from maps.tiles.xyz import (
    ORIGIN_SHIFT,
    XYZSource,
    lonlat_to_mercator,
    mercator_to_lonlat,
    tile_bounds,
    tiles_for_view,
)


def make_png(rgb: tuple[int, int, int], size: int = 8) -> bytes:
    """A real PNG of one colour (IHDR, IDAT, IEND), as a tile server would send."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF
        )

    row = b"\x00" + bytes(rgb) * size
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * size))
        + chunk(b"IEND", b"")
    )


def colour_of(data: bytes) -> tuple[int, int, int]:
    image = QImage.fromData(data)
    assert not image.isNull(), "not a decodable image"
    c = image.pixelColor(image.width() // 2, image.height() // 2)
    return (c.red(), c.green(), c.blue())


def tile_colour(z: int, x: int, y: int) -> tuple[int, int, int]:
    """A colour that names its tile, so a mixed-up x/y or row flip shows."""
    return (z * 10 % 256, x % 256, y % 256)


class TileServer:
    """``http.server`` on 127.0.0.1 in a thread; ``mode`` picks how it answers."""

    def __init__(self, mode: str = "ok"):
        self.mode = mode
        self.requests: list[str] = []
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                parts = self.path.strip("/").split("/")
                if outer.mode == "slow":
                    outer.release.wait(10)
                    return
                if outer.mode == "error":
                    self.send_error(500)
                    return
                if outer.mode == "garbage":
                    body = b"<html><body>Service temporarily unavailable</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                try:
                    z, x, y = int(parts[-3]), int(parts[-2]), int(parts[-1].split(".")[0])
                except (ValueError, IndexError):
                    self.send_error(400)
                    return
                if y >= (1 << z) // 2 + 1 and z > 1:  # the southern half has no tiles
                    self.send_error(404)
                    return
                body = make_png(tile_colour(z, x, y))
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.port}/tiles/{{z}}/{{x}}/{{y}}.png"

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = TileServer()
    yield s
    s.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Web Mercator arithmetic ------------------------------------------------------------------


def test_mercator_and_tile_bounds_by_hand():
    # x = R·λ, y = R·ln tan(π/4 + φ/2) with R = 6378137 (the Web Mercator sphere)
    x, y = lonlat_to_mercator(116.4, 39.9)
    r = 6378137.0
    assert x == pytest.approx(r * math.radians(116.4), abs=1e-6)
    assert y == pytest.approx(r * math.log(math.tan(math.pi / 4 + math.radians(39.9) / 2)),
                              abs=1e-6)
    assert mercator_to_lonlat(x, y) == pytest.approx((116.4, 39.9), abs=1e-9)
    # tile 0/0/0 is the whole square world; 1/1/0 its north-east quarter
    assert tile_bounds(0, 0, 0) == pytest.approx((-ORIGIN_SHIFT, -ORIGIN_SHIFT,
                                                   ORIGIN_SHIFT, ORIGIN_SHIFT))
    assert tile_bounds(1, 1, 0) == pytest.approx((0, 0, ORIGIN_SHIFT, ORIGIN_SHIFT))
    # Beijing (116.4°E 39.9°N) at z10: x = floor((116.4+180)/360·1024) = 843,
    # y = floor((1 − ln(tan φ + sec φ)/π)/2·1024) = floor((1 − ln(0.8361 + 1.3035)/π)/2·1024)
    #   = floor((1 − 0.24211)/2·1024) = floor(388.04) = 388
    assert tiles_for_view(x - 1, y - 1, x + 1, y + 1, 10) == [(10, 843, 388)]


def test_tiles_for_view_covers_the_view_middle_first_and_clamps_to_the_world():
    x0, y0, x1, y1 = tile_bounds(12, 100, 200)
    # a view of exactly one tile needs exactly that tile (edges on tile edges)
    assert tiles_for_view(x0, y0, x1, y1, 12) == [(12, 100, 200)]
    # a view of 3×3 tiles' middle and half of each neighbour: 3×3 tiles, middle first
    span = x1 - x0
    tiles = tiles_for_view(x0 - span / 2, y0 - span / 2, x1 + span / 2, y1 + span / 2, 12)
    assert len(tiles) == 9 and tiles[0] == (12, 100, 200)
    assert {(t[1], t[2]) for t in tiles} == {(x, y) for x in (99, 100, 101)
                                              for y in (199, 200, 201)}
    # a view far beyond the world is clamped to its edge tiles, never negative
    world = tiles_for_view(-3 * ORIGIN_SHIFT, -3 * ORIGIN_SHIFT, 3 * ORIGIN_SHIFT,
                           3 * ORIGIN_SHIFT, 1)
    assert sorted(world) == [(1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1)]


def test_image_magic():
    assert image_format(make_png((1, 2, 3))) == "png"
    assert image_format(b"\xff\xd8\xff\xe0" + b"\0" * 20) == "jpeg"
    assert image_format(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == "webp"
    assert image_format(b"<html>") is None and image_format(b"") is None


# --- specs -------------------------------------------------------------------------------------


def test_none_and_bad_specs():
    assert open_source(None) is None
    assert open_source("") is None
    assert open_source("none") is None and open_source("  NONE ") is None
    for spec, needle in [
        ("http://tiles.example.invalid/{z}/{x}.png", "{y}"),
        ("http://tiles.example.invalid/{x}/{y}.png", "{z}"),
        ("https://tiles.example.invalid/tile.png", "{z}{x}{y}"),
        ("http://tiles.example.invalid/{z}/{x}/{y}/{quadkey}.png", "{quadkey}"),
        ("ftp-ish/{z}/{x}/{y}", None),
        ("basemap.txt", None),
    ]:
        with pytest.raises(TileError) as err:
            open_source(spec)
        assert err.value.zh != err.value.en and "\n" not in err.value.zh
        if needle:
            assert needle in err.value.zh and needle in err.value.en
    with pytest.raises(TileError):
        open_source("http://h/{z}/{x}/{y}.png#datum=utm")


def test_datum_options():
    assert split_spec("a.mbtiles#datum=WGS84") == ("a.mbtiles", {"datum": "wgs84"})
    assert split_spec("http://h/{z}/{x}/{y}#gcj02") == ("http://h/{z}/{x}/{y}",
                                                        {"datum": "gcj02"})
    # XYZ defaults to GCJ-02 (most Chinese basemaps are), the spec or the caller can say
    assert open_source("http://127.0.0.1:9/{z}/{x}/{y}.png").datum == "gcj02"
    assert open_source("http://127.0.0.1:9/{z}/{x}/{y}.png#datum=wgs84").datum == "wgs84"
    assert open_source("http://127.0.0.1:9/{z}/{x}/{y}.png", datum="wgs84").datum == "wgs84"


# --- XYZ over HTTP -----------------------------------------------------------------------------


def test_xyz_tiles_from_a_loopback_server(server, tmp_path):
    source = open_source(server.template, cache_dir=tmp_path / "cache")
    assert source.kind == "xyz" and source.datum == "gcj02"
    data = source.fetch(3, 5, 2)
    assert image_format(data) == "png" and colour_of(data) == tile_colour(3, 5, 2)
    assert server.requests == ["/tiles/3/5/2.png"]
    # the memory cache answers the second time without asking the server
    assert source.fetch(3, 5, 2) == data and len(server.requests) == 1
    # 404 is "no tile here", not an error; outside the world or the zoom range too
    assert source.fetch(3, 1, 7) is None
    assert source.fetch(3, 8, 0) is None and source.fetch(25, 0, 0) is None
    # {s} and {-y} (TMS) templates address the same tiles
    tms = XYZSource(f"http://127.0.0.1:{server.port}/t/{{s}}/{{z}}/{{x}}/{{-y}}.png")
    assert colour_of(tms.fetch(3, 5, 5)) == tile_colour(3, 5, 7 - 5)
    assert server.requests[-1] in {f"/t/{s}/3/5/2.png" for s in "abc"}


def test_xyz_is_thread_safe(server):
    source = open_source(server.template)
    keys = [(4, x, y) for x in range(16) for y in range(6)]
    results: dict = {}
    errors: list = []

    def work(chunk):
        try:
            for k in chunk:
                results[k] = source.fetch(*k)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(keys[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert all(colour_of(results[k]) == tile_colour(*k) for k in keys)


def test_disk_cache_keeps_the_map_alive_when_the_server_goes(tmp_path):
    s = TileServer()
    cache = tmp_path / "cache"
    first = open_source(s.template, cache_dir=cache).fetch(5, 26, 12)
    assert colour_of(first) == tile_colour(5, 26, 12)
    s.stop()
    # a console started later, the server gone: the tile comes from disk
    again = open_source(s.template, cache_dir=cache)
    assert again.fetch(5, 26, 12) == first
    # a stale tile is fetched again, and served anyway when that fails
    stale = DiskCache(XYZSource(s.template, timeout=2), cache, max_age=0.0)
    assert stale.fetch(5, 26, 12) == first
    # a tile never cached cannot come from anywhere: a clear error
    with pytest.raises(TileError):
        stale.fetch(5, 27, 12)


@pytest.mark.parametrize("mode", ["garbage", "error"])
def test_garbage_and_failing_servers_are_one_clear_error(mode):
    s = TileServer(mode)
    try:
        source = open_source(s.template)
        with pytest.raises(TileError) as err:
            source.fetch(2, 1, 1)
        text = err.value.en
        assert ("not an image" in text) if mode == "garbage" else ("HTTP 500" in text)
        assert "\n" not in err.value.zh and err.value.zh != err.value.en
    finally:
        s.stop()


def test_a_server_that_speaks_no_http():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]

    def answer():
        for _ in range(2):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(1024)
            conn.sendall(b"hello, this is not HTTP\r\n")
            conn.close()

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        with pytest.raises(TileError) as err:
            XYZSource(f"http://127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png", timeout=5).fetch(1, 0, 0)
        assert "Tile server 127.0.0.1" in err.value.en
    finally:
        listener.close()


def test_a_dead_server_fails_fast_after_the_first_try():
    port = free_port()  # nothing listens there any more
    source = XYZSource(f"http://127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png", timeout=2)
    with pytest.raises(TileError) as err:
        source.fetch(1, 0, 0)
    assert "Cannot reach tile server" in err.value.en and "无法连接" in err.value.zh


def test_a_slow_server_times_out_and_is_not_asked_again_at_once():
    s = TileServer("slow")
    try:
        source = XYZSource(s.template, timeout=0.5, retry_after=600)
        with pytest.raises(TileError) as err:
            source.fetch(2, 1, 1)
        assert "did not answer within 0.5 s" in err.value.en
        # the next tiles fail at once with the same message: no request, no wait
        for x in range(4):
            with pytest.raises(TileError) as again:
                source.fetch(2, x, 0)
            assert again.value.en == err.value.en
        assert len(s.requests) == 1
    finally:
        s.stop()


# --- MBTiles -----------------------------------------------------------------------------------


def write_mbtiles_by_hand(path: Path, tiles: dict, metadata: dict) -> None:
    """An MBTiles 1.3 file exactly as the specification lays it out (TMS rows)."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
    conn.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, "
                 "tile_row INTEGER, tile_data BLOB)")
    conn.executemany("INSERT INTO metadata VALUES (?, ?)", list(metadata.items()))
    for (z, x, y), data in tiles.items():
        conn.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (z, x, (1 << z) - 1 - y, data))
    conn.commit()
    conn.close()


def test_mbtiles_by_the_specification(tmp_path):
    keys = [(2, 1, 0), (2, 3, 1), (3, 6, 2)]
    path = tmp_path / "hand.mbtiles"
    write_mbtiles_by_hand(
        path, {k: make_png(tile_colour(*k)) for k in keys},
        {"name": "hand", "format": "png", "minzoom": "2", "maxzoom": "3",
         "bounds": "90,0,180,66.5"},
    )
    source = open_source(str(path))
    assert (source.kind, source.name, source.min_zoom, source.max_zoom) == ("mbtiles", "hand", 2, 3)
    assert source.datum == "wgs84"  # no datum key, no option: WGS-84
    assert source.bounds == (90.0, 0.0, 180.0, 66.5)
    for k in keys:
        assert colour_of(source.fetch(*k)) == tile_colour(*k)
    assert source.fetch(2, 1, 3) is None  # the TMS row of (2, 1, 0) read as XYZ: nothing
    assert open_source(f"{path}#datum=gcj02").datum == "gcj02"
    source.close()


def test_mbtiles_writer_stores_tms_rows_and_the_datum(tmp_path):
    path = tmp_path / "w.mbtiles"
    same = make_png((9, 9, 9))
    with MBTilesWriter(path) as w:
        w.set_metadata(name="w", format="png", minzoom=4, maxzoom=4, datum="gcj02")
        w.add(4, 12, 5, make_png(tile_colour(4, 12, 5)))
        w.add(4, 13, 5, same)
        w.add(4, 14, 5, same)
    conn = sqlite3.connect(path)
    rows = sorted(conn.execute("SELECT zoom_level, tile_column, tile_row FROM tiles"))
    meta = dict(conn.execute("SELECT name, value FROM metadata"))
    images = conn.execute("SELECT count(*) FROM images").fetchone()[0]
    conn.close()
    assert rows == [(4, 12, 10), (4, 13, 10), (4, 14, 10)]  # 2^4 − 1 − 5 = 10
    assert meta["datum"] == "gcj02" and meta["format"] == "png"
    assert images == 2  # the two identical tiles are stored once
    # the datum key wins over a spec option: the file knows what it was drawn in
    assert open_source(f"{path}#datum=wgs84").datum == "gcj02"
    with pytest.raises(TileError):
        MBTilesWriter(path, replace=False)
    with MBTilesWriter(tmp_path / "x.mbtiles") as w2, pytest.raises(TileError):
        w2.add(1, 0, 0, b"<html>not a tile</html>")


def test_files_that_are_not_mbtiles(tmp_path):
    text = tmp_path / "text.mbtiles"
    text.write_text("this is a list of streets, not tiles\n" * 50)
    empty = tmp_path / "empty.mbtiles"
    empty.write_bytes(b"")
    other = tmp_path / "other.mbtiles"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE cases (id INTEGER)")
    conn.commit()
    conn.close()
    vector = tmp_path / "vector.mbtiles"
    write_mbtiles_by_hand(vector, {}, {"name": "v", "format": "pbf"})
    expected = {
        text: "not an SQLite database",
        empty: "no metadata and tiles table",
        other: "no metadata and tiles table",
        vector: "vector tiles",
        tmp_path / "missing.mbtiles": "No such basemap file",
    }
    for path, needle in expected.items():
        with pytest.raises(TileError) as err:
            open_source(str(path))
        assert needle in err.value.en, (path, err.value.en)
        assert err.value.zh != err.value.en and "\n" not in err.value.en


# --- PMTiles -----------------------------------------------------------------------------------


def write_pmtiles_with_the_package(path: Path, tiles: dict, metadata: dict) -> None:
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer

    with open(path, "wb") as f:
        writer = Writer(f)
        for (z, x, y), data in sorted(tiles.items(), key=lambda kv: zxy_to_tileid(*kv[0])):
            writer.write_tile(zxy_to_tileid(z, x, y), data)
        writer.finalize(
            {
                "tile_type": TileType.PNG,
                "tile_compression": Compression.NONE,
                "min_lon_e7": 900000000, "min_lat_e7": 0,
                "max_lon_e7": 1800000000, "max_lat_e7": 665000000,
                "center_zoom": 3, "center_lon_e7": 1350000000, "center_lat_e7": 300000000,
            },
            metadata,
        )


def test_pmtiles_written_by_the_pmtiles_package(tmp_path):
    keys = [(3, 6, 2), (3, 7, 3), (5, 26, 12), (6, 52, 24)]
    path = tmp_path / "a.pmtiles"
    write_pmtiles_with_the_package(path, {k: make_png(tile_colour(*k)) for k in keys},
                                   {"name": "pm", "datum": "gcj02"})
    source = open_source(str(path))
    assert (source.kind, source.name, source.datum) == ("pmtiles", "pm", "gcj02")
    assert (source.min_zoom, source.max_zoom) == (3, 6)
    assert source.bounds == pytest.approx((90.0, 0.0, 180.0, 66.5))
    for k in keys:
        assert colour_of(source.fetch(*k)) == tile_colour(*k)
    assert source.fetch(3, 6, 3) is None and source.fetch(4, 0, 0) is None
    source.close()


def test_pmtiles_with_leaf_directories(tmp_path):
    # enough scattered tiles of varied sizes that the writer splits the directory
    # into leaves (the root must stay within 16 KiB)
    import random

    rnd = random.Random(5)
    keys = sorted(rnd.sample([(12, x, y) for x in range(3300, 3500) for y in range(1500, 1700)],
                             20000))
    tiles = {k: make_png(tile_colour(*k), size=rnd.randint(1, 24)) for k in keys}
    path = tmp_path / "big.pmtiles"
    write_pmtiles_with_the_package(path, tiles, {})
    source = open_source(str(path))
    assert source.header["leaf_directory_length"] > 0
    for k in (keys[0], keys[1234], keys[-1]):
        assert colour_of(source.fetch(*k)) == tile_colour(*k)
    missing = next((12, x, 1500) for x in range(3300, 3500) if (12, x, 1500) not in tiles)
    assert source.fetch(*missing) is None
    assert source.datum == "wgs84"  # no datum in the metadata, none asked for


def test_files_that_are_not_pmtiles(tmp_path):
    garbage = tmp_path / "g.pmtiles"
    garbage.write_bytes(b"not a pmtiles archive at all" * 20)
    good = tmp_path / "good.pmtiles"
    write_pmtiles_with_the_package(good, {(3, 6, 2): make_png((1, 2, 3))}, {})
    truncated = tmp_path / "t.pmtiles"
    truncated.write_bytes(good.read_bytes()[:140])
    v2 = tmp_path / "v2.pmtiles"
    v2.write_bytes(b"PM\x02" + b"\0" * 200)
    old = tmp_path / "old.pmtiles"
    old.write_bytes(b"PMTiles\x02" + b"\0" * 200)
    for path, needle in [(garbage, "no PMTiles header"), (truncated, "truncated"),
                         (v2, "no PMTiles header"), (old, "version 3"),
                         (tmp_path / "none.pmtiles", "No such basemap file")]:
        with pytest.raises(TileError) as err:
            open_source(str(path))
        assert needle in err.value.en, (path, err.value.en)


def test_memory_cache_is_a_bounded_lru(server):
    inner = XYZSource(server.template)
    cache = MemoryCache(inner, capacity=2)
    cache.fetch(2, 0, 0)
    cache.fetch(2, 1, 0)
    cache.fetch(2, 0, 0)  # hit: (2,0,0) is now the newest
    cache.fetch(2, 2, 0)  # evicts (2,1,0)
    assert (cache.hits, cache.misses) == (1, 3)
    cache.fetch(2, 0, 0)
    cache.fetch(2, 1, 0)
    assert (cache.hits, cache.misses) == (2, 4)
    assert len(server.requests) == 4
    # the wrapper answers for the source: same name, datum, zooms, template
    assert cache.template == inner.template and cache.datum == inner.datum
