"""Caches that wrap any tile source: a memory LRU, and a disk cache for tile servers.

The memory cache keeps the last few hundred encoded tiles (a screen at 1920×1080
is about 40), so panning back and forth asks the source nothing; it remembers
"no tile here" as well.  The disk cache keeps a server's tiles under
``cache_dir`` so that a console restarted while the tile server is down still
shows the district it showed before: a stale tile (older than ``max_age``) is
fetched again, and served anyway when the server cannot answer.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

from maps.tiles import TileError, TileSource, image_format

_MISS = object()


class _Wrapper(TileSource):
    """A source that answers for ``inner``: same name, datum, zooms and bounds."""

    def __init__(self, inner: TileSource):
        super().__init__(
            inner.name,
            datum=inner.datum,
            min_zoom=inner.min_zoom,
            max_zoom=inner.max_zoom,
            bounds=inner.bounds,
            attribution=inner.attribution,
        )
        self.inner = inner
        self.kind = inner.kind
        self.tile_size = inner.tile_size

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str):
        # attributes a particular source has (template, path, metadata …)
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


class MemoryCache(_Wrapper):
    """An LRU of ``capacity`` tiles in memory; thread-safe."""

    def __init__(self, inner: TileSource, capacity: int = 512):
        super().__init__(inner)
        self.capacity = max(1, int(capacity))
        self._tiles: OrderedDict[tuple[int, int, int], bytes | None] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def fetch(self, z: int, x: int, y: int) -> bytes | None:
        key = (z, x, y)
        with self._lock:
            found = self._tiles.get(key, _MISS)
            if found is not _MISS:
                self._tiles.move_to_end(key)
                self.hits += 1
                return found  # type: ignore[return-value]
            self.misses += 1
        data = self.inner.fetch(z, x, y)  # errors are not cached: the next try may work
        with self._lock:
            self._tiles[key] = data
            self._tiles.move_to_end(key)
            while len(self._tiles) > self.capacity:
                self._tiles.popitem(last=False)
        return data

    def clear(self) -> None:
        with self._lock:
            self._tiles.clear()


class DiskCache(_Wrapper):
    """Tiles kept as files under ``root/<source hash>/z/x/y``; thread- and process-safe.

    Files are written to a temporary name and renamed, so two consoles on one
    machine, or a console killed mid-write, never leave half a tile.
    """

    def __init__(self, inner: TileSource, root: Path, max_age: float = 30 * 86400.0):
        super().__init__(inner)
        ident = getattr(inner, "template", None) or getattr(inner, "path", None) or inner.name
        digest = hashlib.sha1(str(ident).encode()).hexdigest()[:16]
        self.root = Path(root) / digest
        self.max_age = float(max_age)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TileError(
                f"无法创建瓦片缓存目录 {self.root}（{exc}）。",
                f"Cannot create the tile cache folder {self.root} ({exc}).",
            ) from None

    def _path(self, z: int, x: int, y: int) -> Path:
        return self.root / str(z) / str(x) / f"{y}.tile"

    def fetch(self, z: int, x: int, y: int) -> bytes | None:
        if z < self.min_zoom or z > self.max_zoom:
            return None
        path = self._path(z, x, y)
        stale: bytes | None = None
        try:
            age = time.time() - path.stat().st_mtime
            data = path.read_bytes()
            if image_format(data) is not None:
                if age <= self.max_age:
                    return data
                stale = data
        except OSError:
            pass
        try:
            data = self.inner.fetch(z, x, y)
        except TileError:
            if stale is not None:
                return stale  # the server is away: yesterday's tile beats none
            raise
        if data is not None:
            self._store(path, data)
        return data

    def _store(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            pass  # a full or read-only disk costs the cache, not the map
