"""The basemap on the canvas: tiles fetched and decoded on worker threads, drawn as they come.

The source (``maps.tiles``: an XYZ server, an MBTiles or PMTiles file) is
opened from the ``--basemap`` / ``GRID_BASEMAP`` setting on a worker thread;
each tile is fetched *and decoded into a QImage* on a small pool of its own,
so neither a slow server nor JPEG decoding ever blocks the GUI thread.  The
item draws the tiles it has (a missing tile borrows its parent, scaled, until
it arrives) and keeps a memory LRU of decoded tiles.

A dead or garbage source leaves the map as it was, with a quiet note
(``note_changed``) and no more requests for ``RETRY_S``: boundaries and
markers keep drawing.  The source's datum (``wgs84``/``gcj02``) is announced
by ``datum_known`` so that the map draws everything else to match it.

Until ``maps.tiles`` is installed the item is inert (``available`` False).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict

import pyqtgraph as pg
from PySide6.QtCore import QObject, QRectF, QThreadPool, QTimer, Signal
from PySide6.QtGui import QImage, QPainter

from console.i18n import tr
from console.tasks import run_in_thread
from maps.mercator import HALF_WORLD, zoom_of

try:  # the tile sources are built in parallel; the map works without them
    from maps.tiles import TileError, open_source
    from maps.tiles.xyz import tiles_for_view

    available = True
except ImportError:  # pragma: no cover - only before maps.tiles lands
    TileError = Exception  # type: ignore[assignment,misc]
    open_source = None
    tiles_for_view = None
    available = False

log = logging.getLogger(__name__)

MEMORY_TILES = 384
MAX_PENDING = 24
RETRY_S = 30.0
FETCH_THREADS = 4
WORLD = 2.1e7


def tile_rect(z: int, x: int, y: int) -> QRectF:
    """The tile's square in canvas metres (QRectF with top < bottom in y-up metres)."""
    span = 2.0 * HALF_WORLD / (1 << z)
    x0 = -HALF_WORLD + x * span
    y1 = HALF_WORLD - y * span
    return QRectF(x0, y1 - span, span, span)


class BasemapItem(pg.GraphicsObject):
    """Tiles of one source under every other layer."""

    class _Signals(QObject):
        note_changed = Signal(str)
        datum_known = Signal(str)
        tile_arrived = Signal()

    def __init__(self, canvas, cache_dir=None, lang: str = "zh"):
        super().__init__()
        self.canvas = canvas
        self.cache_dir = cache_dir
        self.lang = lang
        self.signals = self._Signals()
        self.source = None
        self.spec: str | None = None
        self.note = ""
        self.setZValue(-100)
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(FETCH_THREADS)
        self._tiles: OrderedDict[tuple[int, int, int], QImage | None] = OrderedDict()
        self._pending: set[tuple[int, int, int]] = set()
        self._dead_until = 0.0
        self._generation = 0
        self._opening = False
        self.fetched = 0
        self.failures = 0
        self._timer = QTimer(singleShot=True, interval=40)
        self._timer.timeout.connect(self._request_view)
        canvas.view_changed.connect(lambda: self._timer.start())

    # -- the source ---------------------------------------------------------------------

    def set_spec(self, spec: str | None) -> None:
        """Open the basemap a setting names (off the GUI thread); None/"none": no basemap."""
        self._generation += 1
        gen = self._generation
        self.spec = spec
        old, self.source = self.source, None
        if old is not None:
            try:
                old.close()
            except Exception:  # closing a broken source must not break the map
                pass
        self._tiles.clear()
        self._pending.clear()
        self._dead_until = 0.0
        self._set_note("")
        self.update()
        if not spec or str(spec).lower() == "none":
            return
        if not available:
            self._set_note(tr("底图模块不可用，地图无底图显示"))
            return
        cache_dir = self.cache_dir
        self._opening = True
        run_in_thread(lambda: open_source(spec, cache_dir), lambda src: self._opened(gen, src),
                      lambda exc: self._open_failed(gen, exc))

    @property
    def ready(self) -> bool:
        """Nothing being opened or fetched (screenshots wait for this)."""
        return not (self._opening or self._pending or self._timer.isActive())

    def _opened(self, gen: int, source) -> None:
        if gen != self._generation:
            return
        self._opening = False
        self.source = source
        if source is not None:
            self.signals.datum_known.emit(source.datum)
            self._request_view()

    def _open_failed(self, gen: int, exc: Exception) -> None:
        if gen != self._generation:
            return
        self._opening = False
        self._set_note(self._why(exc))

    def _why(self, exc: Exception) -> str:
        text = exc.message(self.lang) if hasattr(exc, "message") else str(exc)
        return f"{tr('底图不可用')}：{text}"

    def _set_note(self, text: str) -> None:
        if text != self.note:
            self.note = text
            self.signals.note_changed.emit(text)

    # -- tiles ----------------------------------------------------------------------------

    def zoom_level(self, m_per_px: float | None = None) -> int | None:
        src = self.source
        if src is None:
            return None
        dpr = max(1.0, self.canvas.devicePixelRatioF())
        m = self.canvas.m_per_px() if m_per_px is None else m_per_px
        z = math.floor(zoom_of(m / dpr) + 0.3)
        return max(src.min_zoom, min(src.max_zoom, z))

    def _request_view(self) -> None:
        src = self.source
        if src is None or not self.isVisible() or time.monotonic() < self._dead_until:
            return
        z = self.zoom_level()
        x0, y0, x1, y1 = self.canvas.view_rect()
        wanted = tiles_for_view(x0, y0, x1, y1, z)
        for key in wanted:
            if key in self._tiles or key in self._pending:
                if key in self._tiles:
                    self._tiles.move_to_end(key)
                continue
            if len(self._pending) >= MAX_PENDING:
                self._timer.start(150)  # the rest once these are in
                break
            self._pending.add(key)
            gen = self._generation
            run_in_thread(lambda k=key: _fetch_decode(src, k),
                          lambda image, k=key, g=gen: self._arrived(g, k, image),
                          lambda exc, k=key, g=gen: self._failed(g, k, exc), pool=self.pool)

    def _arrived(self, gen: int, key, image: QImage | None) -> None:
        if gen != self._generation:
            return
        self._pending.discard(key)
        self._tiles[key] = image
        self.fetched += 1
        while len(self._tiles) > MEMORY_TILES:
            self._tiles.popitem(last=False)
        if self.note and time.monotonic() >= self._dead_until:
            self._set_note("")
        self.update()
        self.signals.tile_arrived.emit()

    def _failed(self, gen: int, key, exc: Exception) -> None:
        if gen != self._generation:
            return
        self._pending.discard(key)
        self.failures += 1
        log.info("tile %s failed: %s", key, exc)
        self._dead_until = time.monotonic() + RETRY_S
        self._pending.clear()  # results of the rest are still taken when they come
        self._set_note(self._why(exc))
        QTimer.singleShot(int(RETRY_S * 1000), self._request_view)

    # -- drawing ----------------------------------------------------------------------------

    def boundingRect(self) -> QRectF:
        return QRectF(-WORLD, -WORLD, 2 * WORLD, 2 * WORLD)

    def dataBounds(self, *args, **kwargs):
        return None

    def paint(self, painter: QPainter, *args) -> None:
        if self.source is None or not self._tiles:
            return
        # The view from the painter, not the ViewBox (asking it mid-paint may move it).
        t = painter.transform()
        z = self.zoom_level(1.0 / max(abs(t.m11()), 1e-12))
        vp = self.canvas.viewport()
        box = t.inverted()[0].mapRect(QRectF(0, 0, vp.width(), vp.height()))
        x0, y0, x1, y1 = box.left(), box.top(), box.right(), box.bottom()
        painter.save()
        painter.resetTransform()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        for key in tiles_for_view(x0, y0, x1, y1, z):
            image = self._tiles.get(key)
            target = t.mapRect(tile_rect(*key))
            if image is not None:
                painter.drawImage(target, image)
                continue
            parent = self._parent_of(key)  # a blurry parent beats a hole
            if parent is not None:
                pimg, source_rect = parent
                painter.drawImage(target, pimg, source_rect)
        painter.restore()

    def _parent_of(self, key):
        z, x, y = key
        for up in range(1, 5):
            if z - up < 0:
                return None
            pz, px, py = z - up, x >> up, y >> up
            image = self._tiles.get((pz, px, py))
            if image is not None:
                n = 1 << up
                size = image.width() / n
                return image, QRectF((x - (px << up)) * size, (y - (py << up)) * size, size, size)
        return None

    def shutdown(self) -> None:
        self._generation += 1
        self._timer.stop()
        self.pool.clear()
        self.pool.waitForDone(2000)
        if self.source is not None:
            try:
                self.source.close()
            except Exception:
                pass


def _fetch_decode(source, key) -> QImage | None:
    """On a pool thread: the tile's bytes from the source, decoded (None: no tile there)."""
    data = source.fetch(*key)
    if data is None:
        return None
    image = QImage()
    if not image.loadFromData(data):
        raise TileError(f"瓦片无法解码（{key}）。", f"A tile could not be decoded ({key}).")
    return image.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
