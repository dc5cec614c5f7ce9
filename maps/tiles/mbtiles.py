"""MBTiles (1.3): read a basemap from, and write one to, an SQLite file.

An MBTiles file is SQLite with a ``metadata`` (name, value) table and a
``tiles`` table or view (zoom_level, tile_column, tile_row, tile_data) whose
rows count from the south (TMS); the XYZ ``y`` of the canvas is flipped here.
The console adds one metadata key of its own, ``datum`` (``wgs84`` or
``gcj02``), so that a basemap built from the territory says which datum its
pictures are in and the map draws everything else to match.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

from maps.tiles import DATUMS, TileError, TileSource, image_format


def _not_mbtiles(path: Path, why_zh: str, why_en: str) -> TileError:
    return TileError(
        f"{path} 不是 MBTiles 文件：{why_zh}。",
        f"{path} is not an MBTiles file: {why_en}.",
    )


class MBTilesSource(TileSource):
    """Tiles from a local MBTiles file, read-only, one SQLite connection per thread."""

    kind = "mbtiles"

    def __init__(self, path: Path, datum: str | None = None):
        path = Path(path)
        if not path.is_file():
            raise TileError(f"底图文件不存在：{path}。", f"No such basemap file: {path}.")
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        conn = self._connection()
        try:
            kinds = dict(
                conn.execute(
                    "SELECT name, type FROM sqlite_master WHERE name IN ('metadata', 'tiles')"
                ).fetchall()
            )
        except sqlite3.DatabaseError:
            self.close()
            raise _not_mbtiles(path, "不是 SQLite 数据库", "not an SQLite database") from None
        missing = [t for t in ("metadata", "tiles") if t not in kinds]
        if missing:
            self.close()
            raise _not_mbtiles(
                path, f"缺少 {'、'.join(missing)} 表", f"no {' and '.join(missing)} table"
            )
        try:
            meta = {str(k): str(v) for k, v in conn.execute("SELECT name, value FROM metadata")}
            conn.execute(
                "SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles LIMIT 0"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise _not_mbtiles(path, f"表结构不对（{exc}）", f"wrong tables ({exc})") from None
        self.metadata = meta
        fmt = meta.get("format", "png").lower()
        if fmt in ("pbf", "mvt"):
            self.close()
            raise TileError(
                f"{path} 是矢量瓦片（{fmt}），底图需要 PNG/JPEG/WebP 栅格瓦片。",
                f"{path} holds vector tiles ({fmt}); the basemap needs PNG/JPEG/WebP rasters.",
            )
        own = meta.get("datum", "").lower()
        if own and own not in DATUMS:
            own = ""
        chosen = own or datum or "wgs84"
        min_zoom, max_zoom = _zoom_range(conn, meta)
        super().__init__(
            meta.get("name") or path.stem,
            datum=chosen,
            min_zoom=min_zoom,
            max_zoom=max_zoom,
            bounds=_bounds(meta.get("bounds")),
            attribution=meta.get("attribution", ""),
        )

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, check_same_thread=False
                )
            except sqlite3.Error as exc:
                raise TileError(
                    f"无法打开底图文件 {self.path}（{exc}）。",
                    f"Cannot open basemap file {self.path} ({exc}).",
                ) from None
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _fetch(self, z: int, x: int, y: int) -> bytes | None:
        row_tms = (1 << z) - 1 - y
        try:
            row = (
                self._connection()
                .execute(
                    "SELECT tile_data FROM tiles "
                    "WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                    (z, x, row_tms),
                )
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise TileError(
                f"读取底图文件 {self.path} 失败（{exc}）。",
                f"Reading basemap file {self.path} failed ({exc}).",
            ) from None
        if row is None or row[0] is None:
            return None
        return bytes(row[0])

    def close(self) -> None:
        with self._lock:
            conns, self._connections = self._connections, []
        for conn in conns:
            conn.close()
        self._local = threading.local()


def _zoom_range(conn: sqlite3.Connection, meta: dict[str, str]) -> tuple[int, int]:
    try:
        return int(meta["minzoom"]), int(meta["maxzoom"])
    except (KeyError, ValueError):
        pass
    lo, hi = conn.execute("SELECT MIN(zoom_level), MAX(zoom_level) FROM tiles").fetchone()
    if lo is None:
        return 0, 0
    return int(lo), int(hi)


def _bounds(text: str | None) -> tuple[float, float, float, float] | None:
    if not text:
        return None
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError:
        return None
    return west, south, east, north


class MBTilesWriter:
    """Write tiles into a new MBTiles file, XYZ rows in, TMS rows stored.

    Identical tiles (the empty sea around a district, one flat colour) are
    stored once through the ``map``/``images`` layout that MBTiles allows,
    with a ``tiles`` view over them, so a basemap of a small district stays
    small.  Not thread-safe: one writer thread, the renderers hand it bytes.
    """

    def __init__(self, path: Path, *, replace: bool = True):
        self.path = Path(path)
        if self.path.exists():
            if not replace:
                raise TileError(f"文件已存在：{self.path}。", f"File exists: {self.path}.")
            self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path)
        self.conn.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            CREATE TABLE metadata (name TEXT NOT NULL, value TEXT);
            CREATE UNIQUE INDEX metadata_name ON metadata (name);
            CREATE TABLE map (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER,
                              tile_id TEXT);
            CREATE UNIQUE INDEX map_index ON map (zoom_level, tile_column, tile_row);
            CREATE TABLE images (tile_id TEXT PRIMARY KEY, tile_data BLOB);
            CREATE VIEW tiles AS
                SELECT map.zoom_level AS zoom_level, map.tile_column AS tile_column,
                       map.tile_row AS tile_row, images.tile_data AS tile_data
                FROM map JOIN images ON images.tile_id = map.tile_id;
            """
        )
        self._seen: set[str] = set()
        self.count = 0

    def set_metadata(self, **values: object) -> None:
        """Metadata keys (name, format, bounds, center, minzoom, maxzoom, datum …)."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO metadata (name, value) VALUES (?, ?)",
            [(k, str(v)) for k, v in values.items()],
        )

    def add(self, z: int, x: int, y: int, data: bytes) -> None:
        """Store tile (z, x, y) in XYZ numbering."""
        if image_format(data) is None:
            raise TileError(
                f"瓦片 {z}/{x}/{y} 不是图片。", f"Tile {z}/{x}/{y} is not an image."
            )

        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        if digest not in self._seen:
            self.conn.execute("INSERT INTO images (tile_id, tile_data) VALUES (?, ?)",
                              (digest, sqlite3.Binary(data)))
            self._seen.add(digest)
        self.conn.execute(
            "INSERT OR REPLACE INTO map (zoom_level, tile_column, tile_row, tile_id) "
            "VALUES (?, ?, ?, ?)",
            (z, x, (1 << z) - 1 - y, digest),
        )
        self.count += 1

    @property
    def unique_images(self) -> int:
        return len(self._seen)

    def close(self) -> None:
        """Commit and close (the file is complete only after this)."""
        self.conn.commit()
        self.conn.close()

    def __enter__(self) -> MBTilesWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.conn.close()
