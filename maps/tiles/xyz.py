"""Web Mercator tile arithmetic, and a tile server addressed by an XYZ URL template.

The canvas works in Web Mercator metres (EPSG:3857) so that XYZ tiles lie on it
as squares; the projection itself is ``maps/mercator.py``'s (re-exported here as
``lonlat_to_mercator``/``mercator_to_lonlat``), these helpers say which tiles
cover a view and where a tile lies.
"""

from __future__ import annotations

import math
import re
import threading
import time
import urllib.error
import urllib.request

from maps.mercator import HALF_WORLD as ORIGIN_SHIFT
from maps.mercator import MAX_LAT
from maps.mercator import from_mercator as mercator_to_lonlat
from maps.mercator import to_mercator as lonlat_to_mercator
from maps.tiles import TileError, TileSource

MAX_TILE_BYTES = 4 * 1024 * 1024

__all__ = [
    "MAX_LAT",
    "ORIGIN_SHIFT",
    "XYZSource",
    "check_template",
    "lonlat_to_mercator",
    "mercator_to_lonlat",
    "tile_bounds",
    "tile_of",
    "tile_span",
    "tiles_for_lonlat_bounds",
    "tiles_for_view",
]


def tile_span(z: int) -> float:
    """Width of one tile at zoom ``z``, metres."""
    return 2.0 * ORIGIN_SHIFT / (1 << z)


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(min_x, min_y, max_x, max_y) in Web Mercator metres of XYZ tile (z, x, y)."""
    span = tile_span(z)
    min_x = -ORIGIN_SHIFT + x * span
    max_y = ORIGIN_SHIFT - y * span
    return (min_x, max_y - span, min_x + span, max_y)


#: a thousandth of a millimetre at z20: rounding in tile arithmetic, not a real overlap
_EPS = 1e-9


def tile_of(x_m: float, y_m: float, z: int) -> tuple[int, int]:
    """The (x, y) of the zoom-``z`` tile holding a Web Mercator point (clamped to the world).

    A point on a tile edge belongs to the tile east or south of it.
    """
    n = 1 << z
    span = tile_span(z)
    tx = math.floor((x_m + ORIGIN_SHIFT) / span + _EPS)
    ty = math.floor((ORIGIN_SHIFT - y_m) / span + _EPS)
    return min(max(tx, 0), n - 1), min(max(ty, 0), n - 1)


def tiles_for_view(
    min_x: float, min_y: float, max_x: float, max_y: float, z: int
) -> list[tuple[int, int, int]]:
    """The (z, x, y) tiles covering a view in Web Mercator metres, middle first.

    Ordered by distance from the view's centre so that a map loading them in
    turn fills the middle before the edges.  A view edge on a tile edge does
    not bring in the next tile; a view beyond the world is clamped to it.
    """
    if max_x < min_x:
        min_x, max_x = max_x, min_x
    if max_y < min_y:
        min_y, max_y = max_y, min_y
    n = 1 << z
    span = tile_span(z)
    fx0 = (min_x + ORIGIN_SHIFT) / span
    fx1 = (max_x + ORIGIN_SHIFT) / span
    fy0 = (ORIGIN_SHIFT - max_y) / span
    fy1 = (ORIGIN_SHIFT - min_y) / span
    x0 = min(max(math.floor(fx0 + _EPS), 0), n - 1)
    y0 = min(max(math.floor(fy0 + _EPS), 0), n - 1)
    x1 = min(max(math.ceil(fx1 - _EPS) - 1, x0), n - 1)
    y1 = min(max(math.ceil(fy1 - _EPS) - 1, y0), n - 1)
    cx = (fx0 + fx1) / 2 - 0.5
    cy = (fy0 + fy1) / 2 - 0.5
    tiles = [(z, x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]
    tiles.sort(key=lambda t: ((t[1] - cx) ** 2 + (t[2] - cy) ** 2, t[2], t[1]))
    return tiles


def tiles_for_lonlat_bounds(
    west: float, south: float, east: float, north: float, z: int
) -> list[tuple[int, int, int]]:
    """The tiles covering a lon/lat box at zoom ``z`` (row by row, for building archives)."""
    min_x, min_y = lonlat_to_mercator(west, south)
    max_x, max_y = lonlat_to_mercator(east, north)
    x0, y0 = tile_of(min_x, max_y, z)
    x1, y1 = tile_of(max_x, min_y, z)
    return [(z, x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]


def zoom_for_resolution(metres_per_pixel: float, tile_size: int = 256) -> float:
    """The fractional zoom whose tiles show ``metres_per_pixel`` at their native size."""
    if metres_per_pixel <= 0:
        raise ValueError("metres_per_pixel must be positive")
    return math.log2(2.0 * ORIGIN_SHIFT / (tile_size * metres_per_pixel))


_PLACEHOLDER = re.compile(r"\{([^}]*)\}")
_KNOWN = {"z", "x", "y", "-y", "s"}


class XYZSource(TileSource):
    """Tiles from an HTTP server by URL template (``{z}``, ``{x}``, ``{y}``; ``{-y}`` for TMS).

    One request per tile with a whole-tile deadline (``timeout`` seconds, for a
    server that trickles), 404/204 meaning "no tile here".  A server that is
    down or too slow makes further fetches fail at once for ``retry_after``
    seconds with the same message, so that a screen's worth of tiles does not
    wait out one timeout each while the hall looks at an empty map.
    """

    kind = "xyz"

    def __init__(
        self,
        template: str,
        datum: str = "gcj02",
        timeout: float = 5.0,
        retry_after: float = 15.0,
        min_zoom: int = 0,
        max_zoom: int = 19,
        subdomains: str = "abc",
        user_agent: str = "grid-command-console",
    ):
        check_template(template)
        host = re.sub(r"^https?://", "", template).split("/", 1)[0]
        super().__init__(host, datum=datum, min_zoom=min_zoom, max_zoom=max_zoom)
        self.template = template
        self.timeout = float(timeout)
        self.retry_after = float(retry_after)
        self.subdomains = subdomains or "a"
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down_error: TileError | None = None

    def url(self, z: int, x: int, y: int) -> str:
        """The address of tile (z, x, y)."""
        sub = self.subdomains[(x + y) % len(self.subdomains)]
        values = {"z": z, "x": x, "y": y, "-y": (1 << z) - 1 - y, "s": sub}
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), self.template)

    def _fetch(self, z: int, x: int, y: int) -> bytes | None:
        with self._lock:
            if self._down_error is not None and time.monotonic() < self._down_until:
                raise TileError(self._down_error.zh, self._down_error.en)
        try:
            data = self._get(self.url(z, x, y))
        except TileError as exc:
            if getattr(exc, "source_down", False):
                with self._lock:
                    self._down_error = exc
                    self._down_until = time.monotonic() + self.retry_after
            raise
        with self._lock:
            self._down_error = None
        return data

    def _get(self, url: str) -> bytes | None:
        request = urllib.request.Request(url, headers={"User-Agent": self.user_agent})
        deadline = time.monotonic() + self.timeout
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                if reply.status == 204:
                    return None
                chunks: list[bytes] = []
                size = 0
                while True:
                    if time.monotonic() > deadline:
                        raise TimeoutError
                    chunk = reply.read(65536)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > MAX_TILE_BYTES:
                        raise TileError(
                            f"瓦片服务器 {self.name} 返回的瓦片过大（超过 4 MiB）。",
                            f"Tile server {self.name} sent a tile over 4 MiB.",
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 204):
                return None
            raise _down(
                f"瓦片服务器 {self.name} 答复 HTTP {exc.code}。",
                f"Tile server {self.name} answered HTTP {exc.code}.",
                down=exc.code >= 500,
            ) from None
        except TimeoutError:
            raise _down(
                f"瓦片服务器 {self.name} 在 {self.timeout:g} 秒内没有答复。",
                f"Tile server {self.name} did not answer within {self.timeout:g} s.",
            ) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise _down(
                    f"瓦片服务器 {self.name} 在 {self.timeout:g} 秒内没有答复。",
                    f"Tile server {self.name} did not answer within {self.timeout:g} s.",
                ) from None
            raise _down(
                f"无法连接瓦片服务器 {self.name}（{reason}）。",
                f"Cannot reach tile server {self.name} ({reason}).",
            ) from None
        except (ConnectionError, OSError) as exc:
            # a reset or a reply that is not HTTP at all (http.client raises these)
            raise _down(
                f"瓦片服务器 {self.name} 的答复无法读取（{type(exc).__name__}）。",
                f"Tile server {self.name} sent an unreadable reply ({type(exc).__name__}).",
            ) from None
        except Exception as exc:  # http.client.HTTPException and kin: not HTTP at all
            raise _down(
                f"瓦片服务器 {self.name} 的答复不是 HTTP（{type(exc).__name__}）。",
                f"Tile server {self.name} did not answer in HTTP ({type(exc).__name__}).",
            ) from None


def _down(zh: str, en: str, down: bool = True) -> TileError:
    err = TileError(zh, en)
    err.source_down = down  # type: ignore[attr-defined]
    return err


def check_template(template: str) -> None:
    """Refuse a URL template that cannot address tiles (no ``{z}``, ``{x}`` or ``{y}``)."""
    if not re.match(r"^https?://[^/{}]+", template, re.IGNORECASE):
        raise TileError(
            f"瓦片地址须以 http:// 或 https:// 加主机名开头：{template!r}。",
            f"A tile address must start with http:// or https:// and a host: {template!r}.",
        )
    names = _PLACEHOLDER.findall(template)
    unknown = sorted(set(names) - _KNOWN)
    if unknown:
        raise TileError(
            f"瓦片地址含未知占位符 {{{unknown[0]}}}（可用 {{z}} {{x}} {{y}} {{-y}} {{s}}）。",
            f"The tile address has an unknown placeholder {{{unknown[0]}}} "
            "(use {z} {x} {y} {-y} {s}).",
        )
    missing = [p for p in ("z", "x") if p not in names]
    if "y" not in names and "-y" not in names:
        missing.append("y")
    if missing:
        need = "".join(f"{{{m}}}" for m in missing)
        raise TileError(
            f"瓦片地址缺少 {need}：{template!r}（须含 {{z}}、{{x}}、{{y}}）。",
            f"The tile address lacks {need}: {template!r} (it needs {{z}}, {{x}} and {{y}}).",
        )
