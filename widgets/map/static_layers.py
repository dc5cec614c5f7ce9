"""Static layers rendered off the GUI thread into cached images: boundaries, choropleth.

QGIS keeps maps fluid by rendering each layer into an image kept until that
layer (or the zoom) changes, and by scheduling that render instead of drawing
at once.  The same here: a :class:`CachedRasterItem` renders its layer, once
the view has settled, into a QImage covering the view plus a margin at the
view's resolution, on a pool thread; every frame merely blits that image.  A
pan moves it and a zoom scales it (nearest pixel, no resampling cost) until
the sharp image for the new view arrives; beyond its edges an overview of the
whole territory, rendered once per change at a coarse resolution, fills in.
So a pan or zoom frame costs one or two ``drawImage`` calls whatever the
number of polygons.

**Why SVG.**  PySide6 keeps the GIL for the whole of every QPainter call
(only the functions its typesystem marks ``allow-thread`` let it go, and no
drawing call is among them), so stroking a district's outlines on a pool
thread would stall the GUI thread's Python — every item's ``paint`` — for as
long as each call lasts.  ``QImageReader.read`` *does* release the GIL.  So
a render describes the layer as a small SVG document (path strings made once
per territory, cached, and joined per view: a few milliseconds of Python) and
lets Qt's SVG reader rasterise it with the GIL released: the GUI thread keeps
drawing frames at full speed meanwhile.  QImage painting on a worker thread
is legal (QPixmap is not: no QPixmap is made here).

**One image for adjacent layers.**  The choropleth and the boundaries are
adjacent in the default order; then the boundaries' image holds both
(``merge``), so a frame blits one image instead of two.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
import time
from xml.sax.saxutils import escape

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QByteArray,
    QObject,
    QPointF,
    QRectF,
    QSize,
    QThreadPool,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QGuiApplication,
    QImage,
    QImageReader,
    QPainter,
)

from console.tasks import run_in_thread
from maps.layers import LEVELS, TerritoryLayer
from widgets.map.style import (
    CHOROPLETH,
    CHOROPLETH_ALPHA,
    LEVEL_COLOURS,
    LEVEL_WIDTHS,
)

log = logging.getLogger(__name__)

MARGIN = 0.3  # the image covers the view plus 30 % of its size on every side
SETTLE_MS = 120  # re-render this long after the view stopped changing
DATA_RENDER_MIN_MS = 2000  # a data change (the choropleth's counts) re-renders at most this often
OVERVIEW_MIN_S = 30.0  # and the overview (a fallback while zooming out) at most this often
OVERVIEW_PX = 2048  # the overview's long side, logical pixels
WORLD = 2.1e7
UNITS_PER_M = 10  # path strings are whole decimetres from an origin

# Level of detail: each level's outline and its labels, by metres per pixel.
OUTLINE_BELOW = {"district": 1e9, "street": 1e9, "community": 14.0, "grid": 7.0}
LABEL_BETWEEN = {"street": (3.5, 40.0), "community": (1.0, 4.5), "grid": (0.0, 1.4)}
LABEL_PX = {"street": 14.7, "community": 12.7, "grid": 11.3}  # 11 / 9.5 / 8.5 pt at 96 dpi


class _View:
    """What a render needs to know of the view: the box it covers and its scale."""

    __slots__ = ("dpr", "height", "m_per_px", "width", "x0", "y1")

    def __init__(self, x0: float, y1: float, m_per_px: float, width: int, height: int,
                 dpr: float):
        self.x0, self.y1, self.m_per_px = x0, y1, m_per_px
        self.width, self.height, self.dpr = width, height, dpr

    def px(self, xy: np.ndarray) -> np.ndarray:
        """(n, 2) metres → (n, 2) pixels of the image (y down)."""
        out = np.empty_like(xy)
        out[:, 0] = (xy[:, 0] - self.x0) / self.m_per_px
        out[:, 1] = (self.y1 - xy[:, 1]) / self.m_per_px
        return out

    def box_m(self) -> tuple[float, float, float, float]:
        """(min_x, min_y, max_x, max_y) metres the image covers."""
        return (self.x0, self.y1 - self.height * self.m_per_px,
                self.x0 + self.width * self.m_per_px, self.y1)

    def rect_m(self) -> QRectF:
        w = self.width * self.m_per_px
        h = self.height * self.m_per_px
        return QRectF(self.x0, self.y1 - h, w, h)


# -- SVG description of a layer ------------------------------------------------------------


class SvgPaths:
    """Each feature's outline as an SVG path string, made once and kept.

    Coordinates are whole decimetres from one origin (short strings, exact
    enough for a screen), so a render only joins the strings of the features
    in view.  Used from the render thread; a lock keeps a second one safe.
    """

    def __init__(self) -> None:
        self.origin: tuple[float, float] | None = None
        self._cache: dict[int, tuple[object, str]] = {}
        self._lock = threading.Lock()

    def fix_origin(self, bounds) -> tuple[float, float]:
        """The origin, fixed once (the first territory's corner, whole kilometres)."""
        with self._lock:
            if self.origin is None:
                x0, y0 = (bounds[0], bounds[1]) if bounds is not None else (0.0, 0.0)
                self.origin = (math.floor(x0 / 1000.0) * 1000.0, math.floor(y0 / 1000.0) * 1000.0)
            return self.origin

    def d(self, feature) -> str:
        """The path data of every ring of every polygon of ``feature``."""
        with self._lock:
            hit = self._cache.get(id(feature))
            if hit is not None and hit[0] is feature:
                return hit[1]
            if self.origin is None:
                self.origin = (0.0, 0.0)
            text = path_data(feature.polygons, self.origin)
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[id(feature)] = (feature, text)
            return text


def path_data(polygons, origin: tuple[float, float]) -> str:
    """``M x y x y … Z`` for each ring (implicit line-tos), decimetres from ``origin``."""
    ox, oy = origin
    parts = []
    for polygon in polygons:
        for ring in polygon:
            q = np.rint((np.asarray(ring, dtype=float) - (ox, oy)) * UNITS_PER_M).astype(np.int64)
            if len(q) > 1:  # points that round onto the previous one add nothing
                keep = np.ones(len(q), dtype=bool)
                keep[1:] = (q[1:] != q[:-1]).any(axis=1)
                q = q[keep]
            if len(q) < 3:
                continue
            parts.append("M" + " ".join(map(str, q.ravel().tolist())) + "Z")
    return "".join(parts)


def _in_view(bbox, box) -> bool:
    x0, y0, x1, y1 = box
    return not (bbox[2] < x0 or bbox[0] > x1 or bbox[3] < y0 or bbox[1] > y1)


def _colour(c: QColor) -> tuple[str, str]:
    """An SVG colour and opacity attribute value, quoted."""
    return f'"{c.name()}"', f'"{c.alphaF():.3f}"'


class _Svg:
    """An SVG document in image pixels, with one group in canvas metres."""

    def __init__(self, view: _View, origin: tuple[float, float], backdrop: str | None = None):
        self.view = view
        m = view.m_per_px
        ox, oy = origin
        self.unit_px = 1.0 / (UNITS_PER_M * m)  # image pixels per path unit
        a = self.unit_px
        self.head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" version="1.2" baseProfile="tiny" '
            f'width="{view.width}" height="{view.height}" '
            f'viewBox="0 0 {view.width} {view.height}">'
        )
        if backdrop is not None:  # a pixel beyond every edge: no half-covered border
            self.head += (f'<rect x="-1" y="-1" width="{view.width + 2}" '
                          f'height="{view.height + 2}" fill="{QColor(backdrop).name()}"/>')
        self.group = (f'<g transform="matrix({a:.9g} 0 0 {-a:.9g} {(ox - view.x0) / m:.4f} '
                      f'{(view.y1 - oy) / m:.4f})">')
        self.geometry: list[str] = []
        self.text: list[str] = []

    def units(self, px: float) -> str:
        """A length of ``px`` image pixels in path units (inside the metres group)."""
        return f"{px / self.unit_px:.4g}"

    def stroke(self, d: str, colour: QColor, width_px: float,
               dash_px: tuple[float, float] | None = None) -> None:
        if not d:
            return
        c, a = _colour(colour)
        dash = (f' stroke-dasharray="{self.units(dash_px[0])} {self.units(dash_px[1])}"'
                if dash_px else "")
        self.geometry.append(
            f'<path d="{d}" fill="none" stroke={c} stroke-opacity={a} '
            f'stroke-width="{self.units(width_px)}" stroke-linejoin="round"{dash}/>')

    def fill(self, d: str, colour: QColor) -> None:
        if not d:
            return
        c, a = _colour(colour)
        self.geometry.append(f'<path d="{d}" fill={c} fill-opacity={a} fill-rule="evenodd" '
                             f'stroke="none"/>')

    def label(self, x: float, y: float, text: str, size_px: float, bold: bool, family: str,
              fill: QColor, halo: QColor, halo_px: float) -> None:
        weight = ' font-weight="bold"' if bold else ""
        family_attr = escape(family, {'"': "&quot;"})
        font = f'font-family="{family_attr}" font-size="{size_px:.2f}"{weight}'
        body = escape(text)
        hc, ha = _colour(halo)
        fc, fa = _colour(fill)
        self.text.append(
            f'<text x="{x:.1f}" y="{y:.1f}" {font} fill="none" stroke={hc} stroke-opacity={ha} '
            f'stroke-width="{halo_px:.2f}" stroke-linejoin="round">{body}</text>'
            f'<text x="{x:.1f}" y="{y:.1f}" {font} fill={fc} fill-opacity={fa}>{body}</text>')

    def document(self) -> bytes:
        return (self.head + self.group + "".join(self.geometry) + "</g>" + "".join(self.text)
                + "</svg>").encode("utf-8")


def rasterise(svg: bytes, view: _View) -> QImage:
    """The SVG document as a premultiplied ARGB image of the view (GIL released meanwhile).

    The reader reads a file it opens itself, never a QBuffer made in Python:
    Qt calls a device's virtual functions while it holds the image readers'
    plugin lock, and on a Python-made device each of those calls needs the GIL
    — which a tile being decoded on another thread may hold while it waits for
    that same lock (a deadlock seen in the tile tests).
    """
    w, h = max(1, round(view.width * view.dpr)), max(1, round(view.height * view.dpr))
    try:
        fd, path = tempfile.mkstemp(prefix="grid-map-", suffix=".svg")
    except OSError as exc:  # no writable temp folder: render holding the GIL, still a map
        return _finish(_rasterise_with_painter(svg, w, h, str(exc)), view)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(svg)
        reader = QImageReader(path, b"svg")
        reader.setScaledSize(QSize(w, h))
        image = reader.read()  # PySide6 lets the GIL go for this call (typesystem: allow-thread)
        why = reader.errorString()
        del reader
    except OSError as exc:
        image, why = QImage(), str(exc)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    if image.isNull():
        image = _rasterise_with_painter(svg, w, h, why)
    return _finish(image, view)


def _finish(image: QImage, view: _View) -> QImage:
    if image.format() != QImage.Format.Format_ARGB32_Premultiplied:
        image = image.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
    image.setDevicePixelRatio(view.dpr)
    return image


def _rasterise_with_painter(svg: bytes, w: int, h: int, why: str) -> QImage:
    """Without Qt's SVG image plugin: QSvgRenderer on a QPainter (holds the GIL, still works)."""
    try:
        from PySide6.QtSvg import QSvgRenderer
    except ImportError as exc:  # pragma: no cover - PySide6 ships QtSvg
        raise RuntimeError(f"no SVG renderer ({why}; {exc})") from exc
    renderer = QSvgRenderer(QByteArray(svg))
    if not renderer.isValid():
        raise RuntimeError(f"the layer's SVG did not parse ({why})")
    image = QImage(w, h, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(0)
    painter = QPainter(image)
    try:
        renderer.render(painter)
    finally:
        painter.end()
    return image


# -- the cached item ---------------------------------------------------------------------------


RENDER_NICE = 5  # render threads yield the CPU to the GUI thread (Linux: per-thread nice)
_niced: set[int] = set()


def _yield_to_gui() -> None:
    """Lower this render thread's CPU priority once, so that on a busy machine the GUI
    thread's frames come first and a sharp image merely arrives a little later."""
    tid = threading.get_native_id()
    if tid in _niced or not hasattr(os, "setpriority"):
        return
    _niced.add(tid)
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, max(current, RENDER_NICE))
    except OSError:  # not permitted here: render at the normal priority
        pass


def _blit(painter: QPainter, target: QRectF, image: QImage) -> None:
    """Draw ``image`` into ``target`` (viewport pixels): a plain copy at whole device pixels
    when the scale is the image's own (the view only moved), else a nearest-pixel scale."""
    dpr = image.devicePixelRatio()
    w, h = image.width() / dpr, image.height() / dpr
    if abs(target.width() - w) < 0.01 and abs(target.height() - h) < 0.01:
        painter.drawImage(QPointF(round(target.left() * dpr) / dpr,
                                  round(target.top() * dpr) / dpr), image)
    else:
        painter.drawImage(target, image)



class CachedRasterItem(pg.GraphicsObject):
    """A layer rendered (after the view settles, on a pool thread) into an image, blitted.

    Subclasses implement ``snapshot()`` (what to draw, read on the GUI thread:
    plain Python data the layer never mutates afterwards) and the static
    ``describe(snapshot, svg, paths)`` (adds the layer to an SVG document, on
    the render thread).  ``rendered`` is emitted when a fresh image is in place.

    ``merge(guest)`` draws another cached layer (the one just below) into this
    item's images; the guest then paints nothing and forwards to its host.
    """

    class _Signals(QObject):
        rendered = Signal()

    def __init__(self, canvas, layer: TerritoryLayer, pool: QThreadPool | None = None,
                 paths: SvgPaths | None = None):
        super().__init__()
        self.canvas = canvas
        self.layer = layer
        self.pool = pool
        self.paths = paths or SvgPaths()
        self.signals = self._Signals()
        self.rendered = self.signals.rendered
        self.host: CachedRasterItem | None = None
        self.guest: CachedRasterItem | None = None
        self._own_image: QImage | None = None
        self._image_rect: QRectF | None = None  # metres the image covers
        self._image_key = None
        self._overview: QImage | None = None
        self._overview_rect: QRectF | None = None
        self._overview_dirty = True
        self._overview_busy = False
        self._overview_at = -1e9  # time.monotonic() the overview was last started
        self._generation = 0
        self._overview_generation = 0
        self._busy = False
        self._again = False
        self._dirty = True
        self._backdrop: str | None = None  # a colour: the image is opaque (nothing under it)
        self.renders = 0
        self.last_render_ms = 0.0
        self.last_python_ms = 0.0  # of which describing the layers (Python, the GIL held)
        self._last_render_at = -1e9  # time.monotonic() a render was started
        self.setZValue(0)
        self._settle = QTimer(singleShot=True)
        self._settle.timeout.connect(self.refresh)
        canvas.view_changed.connect(self._view_changed)
        # Set when the map closes: a render already on the pool thread gives up before its
        # costly steps instead of making the closing window wait for a picture nobody sees.
        self.closing = threading.Event()

    def close_renders(self) -> None:
        """No more renders: stop the settle timer and let a running one give up early."""
        self.closing.set()
        self._settle.stop()

    # -- pyqtgraph item protocol ---------------------------------------------------------

    def boundingRect(self) -> QRectF:
        return QRectF(-WORLD, -WORLD, 2 * WORLD, 2 * WORLD)

    def dataBounds(self, *args, **kwargs):
        return None

    @property
    def _image(self) -> QImage | None:
        """The image on screen for this layer (its host's when merged)."""
        return self.host._own_image if self.host is not None else self._own_image

    def paint(self, painter: QPainter, *args) -> None:
        if self.host is not None:
            return  # drawn inside the host's image
        image, rect = self._own_image, self._image_rect
        t = painter.transform()
        vp = self.canvas.viewport()
        screen = QRectF(0, 0, vp.width(), vp.height())
        target = t.mapRect(rect) if rect is not None else None
        painter.save()
        painter.resetTransform()
        # Nearest pixel when scaled: a scaled image is only shown until the sharp one
        # for the new view arrives, and resampling would cost several times the blit.
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        if self._overview is not None and (target is None or not target.contains(screen)):
            _blit(painter, t.mapRect(self._overview_rect), self._overview)
        if image is not None and target is not None:
            _blit(painter, target, image)
        painter.restore()

    # -- merging --------------------------------------------------------------------------------

    def merge(self, guest: CachedRasterItem | None) -> None:
        """Draw ``guest`` (the cached layer right below) into this item's images, or stop."""
        if guest is self.guest:
            return
        if self.guest is not None:
            old = self.guest
            old.host = None
            old.invalidate()
        self.guest = guest
        if guest is not None:
            guest.host = self
            guest._settle.stop()
            guest.update()
        self._overview_dirty = True
        self.invalidate()

    def set_backdrop(self, colour: str | None) -> None:
        """Paint ``colour`` under the layer, making the image opaque (None: transparent).

        For the lowest layer over no basemap: an opaque image is copied to the
        screen rather than blended, a fraction of the cost per frame.
        """
        if colour != self._backdrop:
            self._backdrop = colour
            self._overview = None  # an opaque overview must never hide a basemap: anew
            self._overview_generation += 1  # and one being rendered the old way is dropped
            self._overview_dirty = True
            self.invalidate()

    @property
    def opaque(self) -> bool:
        return self._backdrop is not None

    def covers_view(self) -> bool:
        """True when this item's opaque image alone covers the whole view (nothing shows
        through it: the canvas need not paint its background)."""
        if (self._backdrop is None or self.host is not None or not self.isVisible()
                or self._image_rect is None or self._own_image is None
                or not self._own_image.format() == QImage.Format.Format_RGB32):
            return False
        x0, y0, x1, y1 = self.canvas.view_rect()
        r = self._image_rect
        return r.left() <= x0 and r.top() <= y0 and r.right() >= x1 and r.bottom() >= y1

    def _parts(self) -> list[CachedRasterItem]:
        """The layers this item's image holds, bottom first."""
        parts = [self]
        if self.guest is not None and self.guest.isVisible():
            parts.insert(0, self.guest)
        return parts

    # -- scheduling --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True when the image on screen is the one for the current view and data."""
        if self.host is not None:
            return self.host.ready
        if not self.isVisible():
            return not self._busy  # nothing shown, nothing to wait for (rendered when shown)
        return not (self._dirty or self._busy or self._settle.isActive() or self._again)

    def invalidate(self) -> None:
        """The data or style changed: render again soon (coalesced)."""
        if self.host is not None:
            self.host.invalidate()
            return
        self._dirty = True
        self._overview_dirty = True
        self._schedule_data_render()

    def _schedule_data_render(self) -> None:
        """Cases change every few seconds in a busy hall, and each change of the counts
        re-renders the whole image: at most once a ``DATA_RENDER_MIN_MS``, however many."""
        since = (time.monotonic() - self._last_render_at) * 1000
        wait = 30 if since >= DATA_RENDER_MIN_MS else int(DATA_RENDER_MIN_MS - since)
        if not self._settle.isActive() or self._settle.remainingTime() > wait:
            self._settle.start(wait)

    def _view_changed(self) -> None:
        if self.host is None and self._needs_new_image():
            self._settle.start(SETTLE_MS)

    def _needs_new_image(self) -> bool:
        if self._image_rect is None or self._image_key is None:
            return True
        x0, y0, x1, y1 = self.canvas.view_rect()
        r = self._image_rect
        inside = r.left() <= x0 and r.top() <= y0 and r.right() >= x1 and r.bottom() >= y1
        scale = self._image_key[0]
        return not inside or abs(self.canvas.m_per_px() / scale - 1.0) > 0.01

    def refresh(self) -> None:
        """Render for the current view now (on the pool thread)."""
        if self.host is not None:
            self.host.refresh()
            return
        self._settle.stop()
        if not self.isVisible():
            self._dirty = True
            return
        if self._busy:
            self._again = True
            return
        w = self.canvas.viewport().width()
        h = self.canvas.viewport().height()
        if w < 2 or h < 2:
            return
        m = self.canvas.m_per_px()
        cx, cy = self.canvas.centre()
        dpr = max(1.0, self.canvas.devicePixelRatioF())
        iw, ih = int(w * (1 + 2 * MARGIN)), int(h * (1 + 2 * MARGIN))
        view = _View(cx - iw * m / 2, cy + ih * m / 2, m, iw, ih, dpr)
        job = self._job(view)
        self._last_render_at = time.monotonic()
        self._dirty = False
        self._busy = True
        self._again = False
        self._generation += 1
        gen = self._generation
        run_in_thread(job, lambda result: self._done(gen, result, view), self._failed,
                      pool=self.pool, context=self.signals)
        overview_due = (self._overview is None
                        or time.monotonic() - self._overview_at >= OVERVIEW_MIN_S)
        if self._overview_dirty and overview_due and not self._overview_busy:
            self._render_overview()

    def _job(self, view: _View):
        """What the pool thread runs: describe the layers as SVG, rasterise (timed)."""
        parts = [(type(p).describe, p.snapshot()) for p in self._parts()]
        paths = self.paths
        origin = paths.fix_origin(self.layer.bounds())
        family = QGuiApplication.font().family()
        backdrop = self._backdrop
        closing = self.closing

        def work():
            _yield_to_gui()
            if closing.is_set():
                return None
            t0 = time.perf_counter()
            svg = _Svg(view, origin, backdrop)
            for describe, snap in parts:
                describe(snap, svg, paths, family)
            document = svg.document()
            t1 = time.perf_counter()  # until here Python, holding the GIL
            if closing.is_set():
                return None
            image = rasterise(document, view)
            if backdrop is not None:  # every pixel opaque: the same bits are an RGB32 image
                image.reinterpretAsFormat(QImage.Format.Format_RGB32)
            return image, (time.perf_counter() - t0) * 1000, (t1 - t0) * 1000

        return work

    def _render_overview(self) -> None:
        """The whole territory at a coarse resolution, under the view image while it moves."""
        bounds = self.layer.bounds()
        if bounds is None:
            self._overview_dirty = False
            return
        x0, y0, x1, y1 = bounds
        pad = 0.05 * max(x1 - x0, y1 - y0, 1.0)
        x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
        m = max(x1 - x0, y1 - y0) / OVERVIEW_PX
        view = _View(x0, y1, m, max(2, math.ceil((x1 - x0) / m)), max(2, math.ceil((y1 - y0) / m)),
                     1.0)
        job = self._job(view)
        self._overview_at = time.monotonic()
        self._overview_dirty = False
        self._overview_busy = True
        self._overview_generation += 1
        gen = self._overview_generation
        run_in_thread(job, lambda result: self._overview_done(gen, result, view),
                      self._overview_failed, pool=self.pool, context=self.signals)

    def _done(self, gen: int, result, view: _View) -> None:
        self._busy = False
        if result is None:  # given up: the map is closing
            return
        image, ms, python_ms = result
        self.last_render_ms = ms
        self.last_python_ms = python_ms
        self.renders += 1
        if gen == self._generation:
            self._own_image = image
            self._image_rect = view.rect_m()
            self._image_key = (view.m_per_px,)
            self.update()
            self.rendered.emit()
            if self.guest is not None:
                self.guest.last_render_ms = ms
                self.guest.rendered.emit()
        if self._again or self._needs_new_image():
            self._again = False
            self._settle.start(10)
        elif self._dirty:
            self._schedule_data_render()

    def _overview_done(self, gen: int, result, view: _View) -> None:
        self._overview_busy = False
        if result is None:  # given up: the map is closing
            return
        if gen == self._overview_generation:
            self._overview = result[0]
            self._overview_rect = view.rect_m()
            self.update()
        if self._overview_dirty and self._overview is None:
            self._render_overview()  # a newer one was asked for and none is shown

    def _failed(self, exc: Exception) -> None:
        self._busy = False
        log.warning("map layer render failed: %s", exc)  # a render bug must not take the map down

    def _overview_failed(self, exc: Exception) -> None:
        self._overview_busy = False
        log.warning("map overview render failed: %s", exc)

    # -- subclasses ------------------------------------------------------------------

    def snapshot(self):
        raise NotImplementedError

    @staticmethod
    def describe(snapshot, svg: _Svg, paths: SvgPaths, family: str) -> None:
        raise NotImplementedError


class BoundaryItem(CachedRasterItem):
    """District, street, community and grid outlines with their names at the right zooms."""

    def __init__(self, canvas, layer: TerritoryLayer, pool=None, paths: SvgPaths | None = None):
        super().__init__(canvas, layer, pool, paths)
        self.setZValue(20)
        layer.changed.connect(self.invalidate)
        layer.style_changed.connect(self.invalidate)

    def snapshot(self):
        layer = self.layer
        levels = [lv for lv in LEVELS if layer.visible_levels.get(lv, True)]
        return {lv: list(layer.features[lv]) for lv in levels}

    @staticmethod
    def describe(snapshot, svg: _Svg, paths: SvgPaths, family: str) -> None:
        view = svg.view
        m = view.m_per_px
        box = view.box_m()
        for level in reversed(LEVELS):  # grids first, the district's border on top
            feats = snapshot.get(level)
            if not feats or m >= OUTLINE_BELOW[level]:
                continue
            d = "".join(paths.d(f) for f in feats if _in_view(f.bbox, box))
            if level == "district":
                svg.stroke(d, QColor(0, 0, 0, 120), LEVEL_WIDTHS[level] + 2.5)
            dash = None
            if level == "grid" and m > 2.5:
                dash = (1.0, 2.0)  # Qt's dot line: one pixel on, two off
            svg.stroke(d, LEVEL_COLOURS[level], LEVEL_WIDTHS[level], dash)
        for level, (lo, hi) in LABEL_BETWEEN.items():
            feats = snapshot.get(level)
            if feats and lo <= m < hi:
                _labels(svg, feats, level, family)


def _labels(svg: _Svg, feats, level: str, family: str) -> None:
    """Names at their label points, never overlapping (the first placed wins)."""
    view = svg.view
    font = QFont(family)
    font.setPixelSize(round(LABEL_PX[level]))
    bold = level == "street"
    font.setBold(bold)
    fm = QFontMetricsF(font)
    height = fm.height()
    taken: list[QRectF] = []
    fill = QColor("#f2f5fb") if level == "street" else QColor("#d5dcea")
    halo = QColor(10, 14, 22, 220)
    for f in feats:
        if not np.isfinite(f.label_x):
            continue
        px, py = view.px(np.array([[f.label_x, f.label_y]]))[0]
        if not (0 <= px <= view.width and 0 <= py <= view.height):
            continue
        text = f.name if level != "grid" else f"{f.code[-3:]} {f.name}"
        w = fm.horizontalAdvance(text)
        box = QRectF(px - w / 2, py - height / 2, w, height)
        if any(box.intersects(t) for t in taken):
            continue
        taken.append(box.adjusted(-4, -2, 4, 2))
        svg.label(box.left(), box.top() + fm.ascent(), text, font.pixelSize(), bold, family,
                  fill, halo, 3.0)


class ChoroplethItem(CachedRasterItem):
    """Grids filled by one figure (open, overdue, per day last week) in five classes."""

    def __init__(self, canvas, layer: TerritoryLayer, pool=None, paths: SvgPaths | None = None):
        super().__init__(canvas, layer, pool, paths)
        self.setZValue(10)
        layer.changed.connect(self.invalidate)
        layer.values_changed.connect(self.invalidate)
        self.breaks: list[float] = []

    def snapshot(self):
        grids = list(self.layer.features["grid"])
        values = np.asarray(self.layer.grid_values, dtype=float).copy()
        self.breaks = class_breaks(values)
        return grids, values, list(self.breaks)

    @staticmethod
    def describe(snapshot, svg: _Svg, paths: SvgPaths, family: str) -> None:
        grids, values, breaks = snapshot
        if not grids or len(values) != len(grids):
            return
        classes = np.searchsorted(np.asarray(breaks), values, side="left") if breaks else (
            np.zeros(len(values), dtype=int))
        box = svg.view.box_m()
        for k, colour in enumerate(CHOROPLETH):
            d = "".join(paths.d(grids[i]) for i in np.nonzero(classes == k)[0]
                        if _in_view(grids[i].bbox, box))
            c = QColor(colour)
            c.setAlpha(CHOROPLETH_ALPHA if k else 90)
            svg.fill(d, c)


def class_breaks(values: np.ndarray) -> list[float]:
    """Four upper bounds splitting the values into five classes (0 alone; then quantiles).

    Returns the right-closed bounds used with ``searchsorted(side='left')``:
    class 0 holds the grids with nothing, classes 1–4 the quartiles of the rest,
    so one busy grid does not wash the whole district into one colour.
    """
    values = np.asarray(values, dtype=float)
    positive = values[values > 0]
    if not len(positive):
        return [0.0]
    qs = np.quantile(positive, [0.25, 0.5, 0.75])
    # bounds b0 < b1 …: v ≤ 0 → class 0, (0, q1] → 1, (q1, q2] → 2, (q2, q3] → 3, above → 4
    bounds = [0.0]
    for q in qs:
        if q > bounds[-1]:
            bounds.append(float(q))
    return bounds
