"""PMTiles v3: a basemap from one local archive file, through the ``pmtiles`` package's format code.

The archive holds a 127-byte header, a gzip'd root directory, optional leaf
directories and the tile data; tiles are addressed by a Hilbert tile id.  The
header, directory and tile-id code are the ``pmtiles`` package's
(``pmtiles.tile``); the reading here is positioned reads (``os.pread``) so that
worker threads share one file descriptor without a lock, with the directories
it has parsed kept in a small cache.  PMTiles has no datum field: a
``datum`` key in the JSON metadata is honoured, else the spec's option, else
WGS-84.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
from pathlib import Path

from pmtiles.tile import (
    Compression,
    TileType,
    deserialize_directory,
    deserialize_header,
    find_tile,
    zxy_to_tileid,
)

from maps.tiles import DATUMS, TileError, TileSource

_RASTER = {TileType.PNG, TileType.JPEG, TileType.WEBP, TileType.UNKNOWN}


def _not_pmtiles(path: Path, why_zh: str, why_en: str) -> TileError:
    return TileError(
        f"{path} 不是可用的 PMTiles 文件：{why_zh}。",
        f"{path} is not a usable PMTiles file: {why_en}.",
    )


class PMTilesSource(TileSource):
    """Tiles from a local PMTiles v3 archive."""

    kind = "pmtiles"

    def __init__(self, path: Path, datum: str | None = None):
        path = Path(path)
        if not path.is_file():
            raise TileError(f"底图文件不存在：{path}。", f"No such basemap file: {path}.")
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        self._size = os.fstat(self._fd).st_size
        self._dirs: dict[tuple[int, int], list] = {}
        self._lock = threading.Lock()
        try:
            head = self._read(0, 127)
            try:
                header = deserialize_header(head)
            except Exception:
                if head[:7] == b"PMTiles":
                    raise _not_pmtiles(
                        path, "只支持第 3 版", "only version 3 is supported"
                    ) from None
                raise _not_pmtiles(path, "文件头不对", "no PMTiles header") from None
            end = max(
                header["root_offset"] + header["root_length"],
                header["metadata_offset"] + header["metadata_length"],
                header["tile_data_offset"] + header["tile_data_length"],
            )
            if end > self._size:
                raise _not_pmtiles(path, "文件被截断", "the file is truncated")
            if header["tile_type"] not in _RASTER:
                raise _not_pmtiles(
                    path,
                    f"瓦片类型为 {header['tile_type'].name}，底图需要栅格",
                    f"tile type {header['tile_type'].name}, the basemap needs rasters",
                )
            self.header = header
            try:
                self.metadata = self._metadata()
                self._directory(header["root_offset"], header["root_length"])
            except TileError:
                raise
            except Exception as exc:
                raise _not_pmtiles(
                    path, f"目录无法读取（{exc}）", f"unreadable directory ({exc})"
                ) from None
        except BaseException:
            self.close()
            raise
        own = str(self.metadata.get("datum", "")).lower()
        chosen = own if own in DATUMS else (datum or "wgs84")
        bounds = (
            header["min_lon_e7"] / 1e7,
            header["min_lat_e7"] / 1e7,
            header["max_lon_e7"] / 1e7,
            header["max_lat_e7"] / 1e7,
        )
        super().__init__(
            str(self.metadata.get("name") or path.stem),
            datum=chosen,
            min_zoom=header["min_zoom"],
            max_zoom=header["max_zoom"],
            bounds=bounds if bounds[2] > bounds[0] and bounds[3] > bounds[1] else None,
            attribution=str(self.metadata.get("attribution", "")),
        )

    def _read(self, offset: int, length: int) -> bytes:
        fd = self._fd
        if fd is None:
            raise TileError(f"底图文件已关闭：{self.path}。", f"Basemap file closed: {self.path}.")
        try:
            return os.pread(fd, length, offset)
        except OSError as exc:
            raise TileError(
                f"读取底图文件 {self.path} 失败（{exc}）。",
                f"Reading basemap file {self.path} failed ({exc}).",
            ) from None

    def _decompress(self, data: bytes, how: Compression) -> bytes:
        if how in (Compression.NONE, Compression.UNKNOWN):
            return data
        if how == Compression.GZIP:
            return gzip.decompress(data)
        raise _not_pmtiles(
            self.path, f"不支持的压缩 {how.name}", f"unsupported compression {how.name}"
        )

    def _metadata(self) -> dict:
        h = self.header
        if h["metadata_length"] == 0:
            return {}
        raw = self._read(h["metadata_offset"], h["metadata_length"])
        data = json.loads(self._decompress(raw, h["internal_compression"]))
        return data if isinstance(data, dict) else {}

    def _directory(self, offset: int, length: int) -> list:
        key = (offset, length)
        with self._lock:
            entries = self._dirs.get(key)
        if entries is None:
            raw = self._read(offset, length)
            if self.header["internal_compression"] != Compression.GZIP:
                raw = gzip.compress(self._decompress(raw, self.header["internal_compression"]))
            entries = deserialize_directory(raw)
            with self._lock:
                if len(self._dirs) > 256:
                    self._dirs.clear()
                self._dirs[key] = entries
        return entries

    def _fetch(self, z: int, x: int, y: int) -> bytes | None:
        h = self.header
        tile_id = zxy_to_tileid(z, x, y)
        offset, length = h["root_offset"], h["root_length"]
        try:
            for _depth in range(4):
                entry = find_tile(self._directory(offset, length), tile_id)
                if entry is None:
                    return None
                if entry.run_length == 0:  # a leaf directory
                    offset = h["leaf_directory_offset"] + entry.offset
                    length = entry.length
                    continue
                data = self._read(h["tile_data_offset"] + entry.offset, entry.length)
                return self._decompress(data, h["tile_compression"])
        except TileError:
            raise
        except Exception as exc:
            raise TileError(
                f"底图文件 {self.path} 的目录损坏（{exc}）。",
                f"The directory of basemap file {self.path} is damaged ({exc}).",
            ) from None
        return None

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def write_pmtiles(
    path: Path,
    tiles: dict[tuple[int, int, int], bytes],
    metadata: dict | None = None,
    tile_type: TileType = TileType.PNG,
) -> None:
    """Write XYZ tiles into a PMTiles v3 archive with the ``pmtiles`` package's writer.

    Used to convert a built basemap and by the tests; tiles are written in
    tile-id order so the archive is clustered.
    """
    from pmtiles.writer import write

    from maps.tiles.xyz import mercator_to_lonlat, tile_bounds

    if not tiles:
        raise TileError("没有瓦片可写。", "No tiles to write.")
    ordered = sorted(tiles.items(), key=lambda kv: zxy_to_tileid(*kv[0]))
    zooms = [k[0] for k in tiles]
    west = south = 180.0
    east = north = -180.0
    for (z, x, y) in tiles:
        b = tile_bounds(z, x, y)
        lo = mercator_to_lonlat(b[0], b[1])
        hi = mercator_to_lonlat(b[2], b[3])
        west, south = min(west, lo[0]), min(south, lo[1])
        east, north = max(east, hi[0]), max(north, hi[1])
    with write(str(path)) as writer:
        for (z, x, y), data in ordered:
            writer.write_tile(zxy_to_tileid(z, x, y), data)
        writer.finalize(
            {
                "tile_type": tile_type,
                "tile_compression": Compression.NONE,
                "min_zoom": min(zooms),
                "max_zoom": max(zooms),
                "min_lon_e7": int(west * 1e7),
                "min_lat_e7": int(south * 1e7),
                "max_lon_e7": int(east * 1e7),
                "max_lat_e7": int(north * 1e7),
                "center_zoom": min(zooms),
                "center_lon_e7": int((west + east) / 2 * 1e7),
                "center_lat_e7": int((south + north) / 2 * 1e7),
            },
            metadata or {},
        )
