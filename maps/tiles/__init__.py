"""Basemap tile sources: an XYZ tile server, a local MBTiles or PMTiles file, or none.

The map (``widgets/map``) asks a :class:`TileSource` for encoded tiles from worker
threads and decodes them itself; everything here is plain Python (no Qt, no SQL,
docs/ARCHITECTURE.md), so the same sources serve the canvas, ``tiles build``'s check
and the tests.  A source says which datum its pictures are drawn in (``datum``:
``"wgs84"`` or ``"gcj02"``, most Chinese basemaps being GCJ-02, docs/DOMAIN.md
"Coordinates") so that everything drawn over it can be converted to match.

``open_source(spec)`` is the one entry point:

- ``None``, ``""`` or ``"none"`` → ``None`` (no basemap);
- ``http(s)://host/{z}/{x}/{y}.png`` → an XYZ server (the template must hold
  ``{z}``, ``{x}`` and ``{y}``; ``{s}`` picks a subdomain from ``a``/``b``/``c``);
- ``PATH.mbtiles`` → an MBTiles file (checked to be one: ``metadata`` and
  ``tiles``; rows are TMS, flipped here);
- ``PATH.pmtiles`` → a PMTiles v3 archive.

A ``#datum=wgs84`` (or ``#datum=gcj02``) suffix on any spec sets the datum where
the source does not say it itself (an MBTiles ``datum`` metadata key wins);
XYZ defaults to GCJ-02, files without the key to WGS-84 unless told.

Every failure a person can cause (a dead, slow or garbage server, a file that is
not a tile archive, a template without ``{z}/{x}/{y}``) is a :class:`TileError`
with one line in Chinese and in English.
"""

from __future__ import annotations

from pathlib import Path

from maps.mercator import DATUMS  # ("wgs84", "gcj02")

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
)


class TileError(Exception):
    """A tile source that cannot serve: one line in Chinese and in English.

    Shaped like ``db.errors.BadInput`` (``zh``, ``en``, ``message(lang)``,
    ``exit_code`` 2) without importing it, since ``maps/`` imports no other
    project folder; the CLI turns it into a ``BadInput``.
    """

    exit_code = 2

    def __init__(self, zh: str, en: str | None = None):
        super().__init__(zh if en is None else f"{zh} / {en}")
        self.zh = zh
        self.en = en or zh

    def message(self, lang: str = "zh") -> str:
        return self.zh if lang == "zh" else self.en


def image_format(data: bytes) -> str | None:
    """``"png"``, ``"jpeg"`` or ``"webp"`` from the magic bytes, ``None`` for anything else.

    Why not decode: a source is called from worker threads that only pass the
    bytes on; the magic is enough to refuse an HTML error page or a truncated
    reply, and the decoder in the canvas reports what is left.
    """
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def check_image(data: bytes, where: str) -> bytes:
    """``data`` itself if it is a PNG/JPEG/WebP, else a :class:`TileError` naming ``where``."""
    if image_format(data) is None:
        head = data[:16]
        raise TileError(
            f"瓦片源返回的不是图片（{where}，开头 {head!r}）。",
            f"The tile source answered something that is not an image ({where}, starts {head!r}).",
        )
    return data


class TileSource:
    """A basemap: encoded 256-pixel tiles in the XYZ scheme (y from the north).

    Subclasses set the attributes and implement :meth:`_fetch`; :meth:`fetch`
    checks the zoom range and the image magic.  Sources are thread-safe and
    blocking: the canvas calls them from worker threads.
    """

    kind = "none"
    tile_size = 256

    def __init__(
        self,
        name: str,
        datum: str = "wgs84",
        min_zoom: int = 0,
        max_zoom: int = 19,
        bounds: tuple[float, float, float, float] | None = None,
        attribution: str = "",
    ):
        if datum not in DATUMS:
            raise TileError(
                f"未知的底图坐标系 {datum!r}（应为 wgs84 或 gcj02）。",
                f"Unknown basemap datum {datum!r} (wgs84 or gcj02).",
            )
        self.name = name
        self.datum = datum
        self.min_zoom = int(min_zoom)
        self.max_zoom = int(max_zoom)
        #: (west, south, east, north) in degrees of ``datum``, where the source says it
        self.bounds = bounds
        self.attribution = attribution

    def fetch(self, z: int, x: int, y: int) -> bytes | None:
        """Encoded PNG/JPEG/WebP of tile (z, x, y); ``None`` where there is no tile.

        Raises :class:`TileError` for a dead, slow or garbage source.
        """
        if z < self.min_zoom or z > self.max_zoom:
            return None
        n = 1 << z
        if not (0 <= x < n and 0 <= y < n):
            return None
        data = self._fetch(z, x, y)
        if data is None:
            return None
        return check_image(data, f"{self.name} {z}/{x}/{y}")

    def _fetch(self, z: int, x: int, y: int) -> bytes | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release files or connections (a no-op where there are none)."""

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} {self.datum} "
            f"z{self.min_zoom}-{self.max_zoom}>"
        )


def split_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"path#datum=wgs84"`` → ``("path", {"datum": "wgs84"})``.

    The fragment is never sent to a server, so it is a safe place for the
    console's own options on a URL as well as on a file name.
    """
    base, sep, fragment = spec.partition("#")
    options: dict[str, str] = {}
    if sep:
        for part in fragment.split("&"):
            key, eq, value = part.partition("=")
            if not key:
                continue
            if not eq:  # "#wgs84" alone
                key, value = "datum", key
            options[key.strip().lower()] = value.strip().lower()
    return base.strip(), options


def open_source(
    spec: str | None,
    cache_dir: Path | None = None,
    *,
    datum: str | None = None,
    timeout: float = 5.0,
    memory_tiles: int = 512,
) -> TileSource | None:
    """The basemap a setting names, wrapped in a memory LRU (and a disk cache for servers).

    ``datum`` overrides the spec's ``#datum=`` option and the source's default;
    ``timeout`` is the seconds a tile server gets per tile; ``memory_tiles`` the
    size of the memory cache.  Raises :class:`TileError` for a spec that
    cannot be a basemap (no ``{z}/{x}/{y}``, a missing file, a file that is not
    MBTiles/PMTiles).
    """
    from maps.tiles.cache import DiskCache, MemoryCache

    if spec is None:
        return None
    base, options = split_spec(str(spec))
    if base.lower() in ("", "none"):
        return None
    wanted = (datum or options.get("datum") or "").lower() or None
    if wanted is not None and wanted not in DATUMS:
        raise TileError(
            f"未知的底图坐标系 {wanted!r}（应为 wgs84 或 gcj02）。",
            f"Unknown basemap datum {wanted!r} (wgs84 or gcj02).",
        )
    lower = base.lower()
    source: TileSource
    if lower.startswith(("http://", "https://")):
        from maps.tiles.xyz import XYZSource

        source = XYZSource(base, datum=wanted or "gcj02", timeout=timeout)
        if cache_dir is not None:
            source = DiskCache(source, Path(cache_dir))
    elif lower.endswith(".mbtiles"):
        from maps.tiles.mbtiles import MBTilesSource

        source = MBTilesSource(Path(base), datum=wanted)
    elif lower.endswith(".pmtiles"):
        from maps.tiles.pmtiles import PMTilesSource

        source = PMTilesSource(Path(base), datum=wanted)
    else:
        raise TileError(
            f"无法识别的底图：{base!r}（应为含 {{z}}/{{x}}/{{y}} 的 http(s) 地址、"
            ".mbtiles 或 .pmtiles 文件，或 none）。",
            f"Unrecognised basemap {base!r} (an http(s) template with {{z}}/{{x}}/{{y}}, "
            "a .mbtiles or .pmtiles file, or none).",
        )
    if memory_tiles > 0:
        source = MemoryCache(source, memory_tiles)
    return source


__all__ = [
    "DATUMS",
    "TileError",
    "TileSource",
    "check_image",
    "image_format",
    "open_source",
    "split_spec",
]
