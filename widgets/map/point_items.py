"""The moving layers: cases, clusters, workers, cameras, and the selection overlay.

One visual per layer type, observing a ``maps.layers.PointLayer``; a change
only schedules a repaint (coalesced by a short timer), it never draws at once.

- Cases: one ``ScatterPlotItem`` whose brushes and pens come from the fixed
  palette in ``widgets.map.style`` (pyqtgraph's symbol atlas keys on those
  objects), plus a :class:`ClusterItem` with counts at low zoom.
- Workers: :class:`WorkerItem` stamps every marker into one numpy raster and
  blits it as one QImage: 10,000 or 50,000 markers moving every frame cost a
  few vectorised numpy operations and one ``drawImage``, where a scatter item
  re-building its point list per frame costs several times more.
- Cameras and the overlay are drawn with QPainter in viewport pixels: they
  are few.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPainterPath, QPen, QPixmap

from maps.cluster import cell_for, cluster_points
from maps.layers import (
    CASE_COMPONENT,
    CASE_EMERGENCY,
    CASE_ESCALATED,
    CASE_ESCALATED_RED,
    CASE_OVERDUE,
    CASE_URGENT,
    CASE_WARNING,
    NEVER_CLUSTERED,
    WORKER_NO_FIX,
    WORKER_STALE,
    WORKER_STATUS_CODE,
    PointLayer,
)
from widgets.map import style
from widgets.map.sprites import Sprites, blit_centred, device_ratio

try:  # the fragment array pyqtgraph's own scatter draws with (one call for many sprites)
    from pyqtgraph.Qt.internals import PrimitiveArray as _Fragments
except ImportError:  # pragma: no cover - another pyqtgraph: one blit per bubble
    _Fragments = None

WORLD = 2.1e7
REPAINT_MS = 15  # coalesce layer changes into at most one repaint per frame


class _WorldItem(pg.GraphicsObject):
    """An item that paints in viewport pixels wherever the view is (bounding box: the world)."""

    def boundingRect(self) -> QRectF:
        return QRectF(-WORLD, -WORLD, 2 * WORLD, 2 * WORLD)

    def dataBounds(self, *args, **kwargs):
        return None

    @staticmethod
    def to_px(painter: QPainter, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Canvas metres → viewport pixels under the painter's current transform."""
        t = painter.transform()
        return x * t.m11() + y * t.m21() + t.m31(), x * t.m12() + y * t.m22() + t.m32()


# -- cases -----------------------------------------------------------------------------------


class ClusterItem(_WorldItem):
    """Cluster bubbles with their member counts, each blitted from a cached sprite.

    A bubble is an antialiased circle and a number: drawn with QPainter per
    frame, a hundred of them cost more than the whole worker raster.  Each
    distinct count is rendered once into a small image (at the screen's pixel
    ratio) and every frame merely blits it at whole device pixels.
    """

    def __init__(self):
        super().__init__()
        self.x = np.zeros(0)
        self.y = np.zeros(0)
        self.counts = np.zeros(0, dtype=np.int64)
        self._font = QFont()
        self._font.setPointSizeF(8.5)
        self._font.setBold(True)
        self._sprites = Sprites(limit=512)
        self._atlas_key = None
        self._atlas = None
        self._fragments = _Fragments(QPainter.PixmapFragment, 10) if _Fragments else None

    def set_clusters(self, x, y, counts) -> None:
        self.x, self.y, self.counts = np.asarray(x), np.asarray(y), np.asarray(counts)
        self.update()

    @staticmethod
    def radius(count: int) -> float:
        return 10.0 + 4.0 * math.log10(max(1, count)) * 2

    def sprite(self, count: int, dpr: float) -> QImage:
        """The bubble for ``count`` (a ``2r + 4`` square), rendered once."""
        r = self.radius(count)
        side = math.ceil(2 * r + 4)

        def draw(p: QPainter) -> None:
            ring = QPen(QColor(255, 255, 255, 200))
            ring.setWidthF(1.5)
            p.setPen(ring)
            p.setBrush(QBrush(QColor(70, 110, 170, 215)))
            c = side / 2.0
            p.drawEllipse(QPointF(c, c), r, r)
            p.setFont(self._font)
            p.setPen(QColor("#ffffff"))
            p.drawText(QRectF(c - r, c - r, 2 * r, 2 * r), Qt.AlignmentFlag.AlignCenter,
                       str(count))

        return self._sprites.get(count, side, side, dpr, draw)

    def _atlas_for(self, dpr: float):
        """One pixmap holding the bubble of every count shown, side by side, and for each
        cluster its sprite's x offset, width and height in the pixmap (device pixels)."""
        unique, which = np.unique(self.counts, return_inverse=True)
        key = (tuple(unique.tolist()), dpr)
        if key != self._atlas_key:
            images = [self.sprite(int(n), dpr) for n in unique]
            widths = np.array([im.width() for im in images], dtype=float)
            heights = np.array([im.height() for im in images], dtype=float)
            lefts = np.concatenate([[0.0], np.cumsum(widths)[:-1]])
            sheet = QImage(max(1, int(widths.sum())), max(1, int(heights.max())),
                           QImage.Format.Format_ARGB32_Premultiplied)
            sheet.fill(Qt.GlobalColor.transparent)
            p = QPainter(sheet)
            for im, left in zip(images, lefts.tolist(), strict=True):
                p.drawImage(QRectF(left, 0, im.width(), im.height()), im,
                            QRectF(0, 0, im.width(), im.height()))
            p.end()
            self._atlas = (QPixmap.fromImage(sheet), lefts, widths, heights)
            self._atlas_key = key
        pixmap, lefts, widths, heights = self._atlas
        return pixmap, lefts[which], widths[which], heights[which]

    def paint(self, painter: QPainter, *args) -> None:
        if not len(self.counts):
            return
        px, py = self.to_px(painter, self.x, self.y)
        dpr = device_ratio(painter)
        painter.save()
        painter.resetTransform()
        if _Fragments is None:  # pyqtgraph without its fragment array: one blit each
            for cx, cy, n in zip(px.tolist(), py.tolist(), self.counts.tolist(), strict=True):
                blit_centred(painter, self.sprite(int(n), dpr), cx, cy)
        else:  # every bubble in one call, from one pixmap
            pixmap, left, w, h = self._atlas_for(dpr)
            self._fragments.resize(len(self.counts))
            frags = self._fragments.ndarray()
            # centres such that each corner lands on a whole device pixel (a plain copy)
            frags[:, 0] = np.round((px - w / dpr / 2) * dpr) / dpr + w / dpr / 2
            frags[:, 1] = np.round((py - h / dpr / 2) * dpr) / dpr + h / dpr / 2
            frags[:, 2] = left
            frags[:, 3] = 0.0
            frags[:, 4] = w
            frags[:, 5] = h
            frags[:, 6:10] = [1.0 / dpr, 1.0 / dpr, 0.0, 1.0]
            painter.drawPixmapFragments(*self._fragments.drawargs(), pixmap)
        painter.restore()


class PassiveScatter(pg.ScatterPlotItem):
    """A scatter that leaves clicks and hovers to the map (its hit tests work in pixels).

    Its bounding box is the world, like every other layer item: pyqtgraph's own
    box (the points plus their size in pixels) changes with every pan or zoom,
    and telling the scene so (``prepareGeometryChange``, the bounds recomputed)
    on each frame costs more than drawing the markers.  The scatter still culls
    to the view itself when it paints.
    """

    def boundingRect(self) -> QRectF:
        return QRectF(-WORLD, -WORLD, 2 * WORLD, 2 * WORLD)

    def viewTransformChanged(self) -> None:
        pg.GraphicsObject.viewTransformChanged(self)  # not the scatter's geometry change

    def mouseClickEvent(self, ev) -> None:
        ev.ignore()

    def hoverEvent(self, ev) -> None:
        return


class CaseItems:
    """The case layer's visuals: one scatter of single markers and the clusters.

    ``rows_shown`` are the layer rows drawn as markers, ``clusters`` the last
    clustering (members as layer rows), for hit tests and tooltips.
    """

    def __init__(self, canvas, layer: PointLayer):
        self.canvas = canvas
        self.layer = layer
        self.clustering = True
        self.scatter = PassiveScatter(pxMode=True, useCache=True, antialias=True)
        self.scatter.setZValue(60)
        self.cluster_item = ClusterItem()
        self.cluster_item.setZValue(59)
        self.rows_shown = np.zeros(0, dtype=np.int64)
        self.clusters = None
        self._cell: float | None = -1.0
        self._timer = QTimer(singleShot=True, interval=REPAINT_MS)
        self._timer.timeout.connect(self.rebuild)
        for event in (layer.added, layer.changed, layer.removed):
            event.connect(lambda _ids: self.schedule())
        layer.style_changed.connect(self._style)
        canvas.view_changed.connect(self._view_changed)

    def items(self):
        return [self.cluster_item, self.scatter]

    def schedule(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def set_clustering(self, on: bool) -> None:
        self.clustering = bool(on)
        self.rebuild()

    def set_visible(self, visible: bool) -> None:
        for item in self.items():
            item.setVisible(visible)

    def _style(self) -> None:
        self.set_visible(self.layer.visible)

    def _view_changed(self) -> None:
        if cell_for(self.canvas.m_per_px(), self.clustering) != self._cell:
            self.schedule()

    @property
    def pending(self) -> bool:
        return self._timer.isActive()

    def rebuild(self) -> None:
        """Cluster for the current zoom and hand the singles to the scatter (whole arrays)."""
        self._timer.stop()
        layer = self.layer
        cell = cell_for(self.canvas.m_per_px(), self.clustering)
        self._cell = cell
        keep = (layer.flags & NEVER_CLUSTERED) != 0
        clusters = cluster_points(layer.x, layer.y, cell, keep)
        self.clusters = clusters
        self.cluster_item.set_clusters(clusters.x, clusters.y, clusters.counts)
        rows = clusters.singles
        # urgent and overdue drawn last, so on top of the others
        rows = rows[np.argsort((layer.flags[rows] & NEVER_CLUSTERED) != 0, kind="stable")]
        self.rows_shown = rows
        if not len(rows):
            self.scatter.setData(x=[], y=[])
            return
        flags = layer.flags[rows]
        status = layer.status[rows]
        brushes = np.array(style.CASE_BRUSHES, dtype=object)[np.clip(status, 0, len(
            style.CASE_BRUSHES) - 1)]
        brushes[(flags & CASE_WARNING) != 0] = style.CASE_BRUSH_WARNING
        brushes[(flags & CASE_OVERDUE) != 0] = style.CASE_BRUSH_OVERDUE
        brushes[(flags & CASE_EMERGENCY) != 0] = style.CASE_BRUSH_EMERGENCY
        pens = np.full(len(rows), style.CASE_PEN_PLAIN, dtype=object)
        pens[(flags & (CASE_URGENT | CASE_EMERGENCY)) != 0] = style.CASE_PEN_URGENT
        pens[(flags & CASE_ESCALATED) != 0] = style.CASE_PEN_ESCALATED
        pens[(flags & CASE_ESCALATED_RED) != 0] = style.CASE_PEN_ESCALATED_RED
        symbols = np.where((flags & CASE_COMPONENT) != 0, "s", "o").astype(object)
        size = np.full(len(rows), 9.0)
        size[(flags & CASE_URGENT) != 0] = 12.0
        size[(flags & CASE_EMERGENCY) != 0] = 14.0
        size[(flags & CASE_OVERDUE) != 0] = np.maximum(size[(flags & CASE_OVERDUE) != 0], 11.0)
        self.scatter.setData(x=layer.x[rows], y=layer.y[rows], symbol=list(symbols),
                             size=size, brush=list(brushes), pen=list(pens),
                             data=layer.ids[rows])


# -- workers ------------------------------------------------------------------------------------


# Fills are stamped status by status, the ones a dispatcher looks for last (on top).
STATUS_DRAW_ORDER = [WORKER_STATUS_CODE[s] for s in
                     ("offline", "off_duty", "on_duty", "patrolling", "handling")]


def _diamond(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets of a filled diamond: workers are diamonds, cases circles and squares."""
    r = math.ceil(radius)
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    inside = np.abs(dx) + np.abs(dy) <= radius + 0.25
    return dx[inside].astype(np.int64), dy[inside].astype(np.int64)


class WorkerItem(_WorldItem):
    """Every worker as a marker stamped into one numpy raster, blitted as one image.

    Colour by status (offline greyed), hollow when the fix is stale, heading
    ticks and names once zoomed in far enough for them to be read.
    """

    def __init__(self, canvas, layer: PointLayer):
        super().__init__()
        self.canvas = canvas
        self.layer = layer
        self.setZValue(50)
        self._palette = np.array(style.WORKER_ARGB, dtype=np.uint32)
        self._sprites: dict[tuple[float, int], tuple] = {}
        self._dirty: tuple[int, int, int, int] | None = None  # raster box drawn last frame
        self._index = np.zeros(0, dtype=np.intp)  # sprite pixel indices, reused every frame
        self._font = QFont()
        self._font.setPointSizeF(8.0)
        self.frames = 0
        self.visible_count = 0
        self._timer = QTimer(singleShot=True, interval=REPAINT_MS)
        self._timer.timeout.connect(self.update)
        for event in (layer.added, layer.changed, layer.removed):
            event.connect(lambda _ids: self.schedule())
        layer.style_changed.connect(lambda: self.setVisible(layer.visible))

    def schedule(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    @property
    def pending(self) -> bool:
        return self._timer.isActive()

    @staticmethod
    def radius_for(m_per_px: float) -> float:
        return 3.4 if m_per_px > 12 else 4.2 if m_per_px > 3 else 5.4

    def _sprite(self, radius: float, bw: int):
        """Buffer offsets of one marker for a raster ``bw`` pixels wide: the outline's
        ring (outside the fill), the fill, and the hole of a stale marker."""
        key = (radius, bw)
        if key not in self._sprites:
            if len(self._sprites) > 16:
                self._sprites.clear()
            (odx, ody), (fdx, fdy), (hdx, hdy) = (_diamond(radius + 1.5), _diamond(radius),
                                                  _diamond(max(0.8, radius - 2.2)))
            outline = ody * bw + odx
            fill = fdy * bw + fdx
            ring = np.setdiff1d(outline, fill)
            self._sprites[key] = (ring.astype(np.intp), fill.astype(np.intp),
                                  (hdy * bw + hdx).astype(np.intp))
        return self._sprites[key]

    def paint(self, painter: QPainter, *args) -> None:
        layer = self.layer
        self.frames += 1
        n = len(layer)
        if not n:
            return
        view = self.canvas.viewport()
        w, h = view.width(), view.height()
        dpr = max(1.0, self.canvas.devicePixelRatioF())
        px, py = self.to_px(painter, layer.x, layer.y)
        # The scale from the painter, never from the ViewBox: asking the ViewBox for its
        # range while the scene paints may update its transform mid-paint (a crash).
        m = 1.0 / max(abs(painter.transform().m11()), 1e-12)
        radius = self.radius_for(m) * dpr
        pad = math.ceil(radius + 1.5) + 2
        ok = ((layer.flags & WORKER_NO_FIX) == 0) & np.isfinite(px) & np.isfinite(py)
        ok &= (px > -pad) & (px < w + pad) & (py > -pad) & (py < h + pad)
        rows = np.nonzero(ok)[0]
        self.visible_count = len(rows)
        bw, bh = int(w * dpr) + 2 * pad, int(h * dpr) + 2 * pad
        image, buf = self._raster(bw, bh, dpr)
        if not len(rows):
            return
        ix = (px[rows] * dpr).astype(np.intp) + pad
        iy = (py[rows] * dpr).astype(np.intp) + pad
        # Every sprite pixel must land inside the padded buffer: no index may wrap a row.
        reach = math.ceil(radius + 1.5)
        inside = (ix >= reach) & (ix < bw - reach) & (iy >= reach) & (iy < bh - reach)
        if not inside.all():
            rows, ix, iy = rows[inside], ix[inside], iy[inside]
            self.visible_count = len(rows)
            if not len(rows):
                return
        base = iy * bw + ix
        ring, fill, hollow = self._sprite(round(radius, 1), bw)
        # Every outline ring first, then the fills (a pixel inside any marker's fill
        # shows a fill, as if each outline were a whole diamond under all the fills):
        # one scattered write of one colour per sprite pixel, no loop per marker.
        buf[self._offsets(base, ring)] = style.OUTLINE_ARGB
        status = np.clip(layer.status[rows], 0, len(self._palette) - 1)
        for code in STATUS_DRAW_ORDER:  # offline first, handling on top
            chosen = status == code
            if chosen.any():
                buf[self._offsets(base[chosen], fill)] = self._palette[code]
        stale = (layer.flags[rows] & WORKER_STALE) != 0
        if stale.any():
            buf[self._offsets(base[stale], hollow)] = style.OUTLINE_ARGB
        # Only the box the markers touch is blitted (and cleared before the next frame).
        x0, x1 = int(ix.min()) - reach, int(ix.max()) + reach + 1
        y0, y1 = int(iy.min()) - reach, int(iy.max()) + reach + 1
        self._dirty = (x0, y0, x1, y1)
        painter.save()
        painter.resetTransform()
        painter.drawImage(QPointF((x0 - pad) / dpr, (y0 - pad) / dpr), image,
                          QRectF(x0, y0, x1 - x0, y1 - y0))
        if m < 3.0 and len(rows) <= 1500:
            self._headings(painter, px[rows], py[rows], layer.heading[rows], radius / dpr)
        if m < 1.3 and len(rows) <= 300:
            self._names(painter, px[rows], py[rows], layer.labels[rows], radius / dpr)
        painter.restore()

    def _offsets(self, base: np.ndarray, sprite: np.ndarray) -> np.ndarray:
        """Flat buffer index of every sprite pixel of every marker, into a kept array."""
        need = len(base) * len(sprite)
        if len(self._index) < need:
            self._index = np.empty(max(need, 2 * len(self._index)), dtype=np.intp)
        out = self._index[:need].reshape(len(base), len(sprite))
        np.add(base[:, None], sprite[None, :], out=out)
        return self._index[:need]

    def _raster(self, bw: int, bh: int, dpr: float) -> tuple[QImage, np.ndarray]:
        """The frame's image, kept between frames, and a numpy view of its own pixels.

        Qt owns the memory (numpy writes into ``QImage.bits()``): nothing is
        allocated per frame, and no QImage ever borrows memory Python may free.
        Only the box the last frame drew into is cleared, not the whole image.
        """
        key = (bw, bh, dpr)
        if getattr(self, "_raster_key", None) != key:
            image = QImage(bw, bh, QImage.Format.Format_ARGB32_Premultiplied)
            image.setDevicePixelRatio(dpr)
            image.fill(0)
            self._raster_image = image
            self._raster_key = key
            self._dirty = None
        image = self._raster_image
        buf = np.frombuffer(image.bits(), dtype=np.uint32, count=bw * bh)
        if self._dirty is not None:
            x0, y0, x1, y1 = self._dirty
            buf.reshape(bh, bw)[max(0, y0):y1, max(0, x0):x1] = 0
            self._dirty = None
        return image, buf

    def _headings(self, painter, px, py, heading, r) -> None:
        ok = np.isfinite(heading)
        if not ok.any():
            return
        a = np.radians(heading[ok].astype(float))
        x0, y0 = px[ok], py[ok]
        length = r + 6
        x1 = x0 + np.sin(a) * length
        y1 = y0 - np.cos(a) * length
        pen = QPen(QColor("#e8f4ff"))
        pen.setWidthF(1.6)
        painter.setPen(pen)
        from PySide6.QtCore import QLineF

        painter.drawLines([QLineF(a0, b0, a1, b1) for a0, b0, a1, b1 in zip(
            x0.tolist(), y0.tolist(), x1.tolist(), y1.tolist(), strict=True)])

    def _names(self, painter, px, py, labels, r) -> None:
        painter.setFont(self._font)
        halo = QPen(QColor(10, 14, 22, 230))
        halo.setWidthF(3.0)
        for x, y, text in zip(px.tolist(), py.tolist(), labels.tolist(), strict=True):
            if not text:
                continue
            path = QPainterPath()
            path.addText(QPointF(x + r + 3, y + 4), self._font, str(text))
            painter.strokePath(path, halo)
            painter.fillPath(path, QBrush(QColor("#f4f7fb")))


# -- cameras ---------------------------------------------------------------------------------------


class CameraItem(_WorldItem):
    """Cameras: a dot and a wedge toward the view direction, shown from street zoom in.

    Each direction (to the nearest ``HEADING_STEP`` degrees) is rendered once
    into a small sprite; a frame blits one sprite per camera.
    """

    SHOW_BELOW_M_PER_PX = 16.0
    HEADING_STEP = 3
    WEDGE_R = 18.0

    def __init__(self, canvas, layer: PointLayer):
        super().__init__()
        self.canvas = canvas
        self.layer = layer
        self.setZValue(40)
        self._sprites = Sprites(limit=256)
        for event in (layer.added, layer.changed, layer.removed):
            event.connect(lambda _ids: self.update())
        layer.style_changed.connect(lambda: self.setVisible(layer.visible))

    def sprite(self, heading: int | None, dpr: float) -> QImage:
        """The camera drawn at the centre of a square sprite (``heading`` None: no wedge)."""
        r = self.WEDGE_R
        side = math.ceil(2 * r + 4)

        def draw(p: QPainter) -> None:
            c = side / 2.0
            if heading is not None:
                # Qt angles: degrees counter-clockwise from 3 o'clock; heading: clockwise
                # from north
                start = (90.0 - heading - 30.0) * 16
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(QBrush(QColor(159, 211, 255, 90)))
                p.drawPie(QRectF(c - r, c - r, 2 * r, 2 * r), int(start), 60 * 16)
            edge = QPen(QColor("#0b0f18"))
            edge.setWidthF(1.0)
            p.setPen(edge)
            p.setBrush(QBrush(style.CAMERA))
            p.drawRect(QRectF(c - 4, c - 3, 8, 6))

        return self._sprites.get(heading, side, side, dpr, draw)

    def paint(self, painter: QPainter, *args) -> None:
        layer = self.layer
        m = 1.0 / max(abs(painter.transform().m11()), 1e-12)  # not the ViewBox: mid-paint
        if not len(layer) or m > self.SHOW_BELOW_M_PER_PX:
            return
        px, py = self.to_px(painter, layer.x, layer.y)
        vp = self.canvas.viewport()
        reach = self.WEDGE_R + 2
        inside = (px > -reach) & (px < vp.width() + reach) & (py > -reach) & (
            py < vp.height() + reach)
        if not inside.any():
            return
        dpr = device_ratio(painter)
        step = self.HEADING_STEP
        headings = layer.heading[inside]
        painter.save()
        painter.resetTransform()
        for x, y, heading in zip(px[inside].tolist(), py[inside].tolist(), headings.tolist(),
                                 strict=True):
            h = None if heading != heading else int(round(heading / step) * step) % 360
            blit_centred(painter, self.sprite(h, dpr), x, y)
        painter.restore()


# -- selection, dispatch candidates, follow ------------------------------------------------------


class OverlayItem(_WorldItem):
    """The selected case's ring and, for a filed case, lines to the nearest available workers."""

    def __init__(self):
        super().__init__()
        self.setZValue(80)
        self.selected: tuple[float, float] | None = None
        self.candidates: list[tuple[float, float, str]] = []  # x, y, "王伟 320 m"
        self._font = QFont()
        self._font.setPointSizeF(8.5)
        self._font.setBold(True)

    def set_selected(self, xy: tuple[float, float] | None) -> None:
        self.selected = xy
        self.update()

    def set_candidates(self, candidates: list[tuple[float, float, str]]) -> None:
        self.candidates = candidates
        self.update()

    def paint(self, painter: QPainter, *args) -> None:
        if self.selected is None and not self.candidates:
            return
        painter.save()
        t = painter.transform()
        painter.resetTransform()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        if self.selected is not None:
            sx, sy = t.map(QPointF(*self.selected)).toTuple()
            line = QPen(style.HIGHLIGHT)
            line.setWidthF(2.0)
            line.setStyle(Qt.PenStyle.DashLine)
            painter.setFont(self._font)
            for x, y, text in self.candidates:
                wx, wy = t.map(QPointF(x, y)).toTuple()
                painter.setPen(line)
                painter.drawLine(QPointF(sx, sy), QPointF(wx, wy))
                ring = QPen(style.HIGHLIGHT)
                ring.setWidthF(2.5)
                painter.setPen(ring)
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawEllipse(QPointF(wx, wy), 9, 9)
                path = QPainterPath()
                path.addText(QPointF(wx + 12, wy - 8), self._font, text)
                halo = QPen(QColor(8, 12, 20, 230))
                halo.setWidthF(3.5)
                painter.strokePath(path, halo)
                painter.fillPath(path, QBrush(style.HIGHLIGHT))
            for radius, alpha in ((13, 255), (19, 120)):
                pen = QPen(QColor(255, 255, 255, alpha))
                pen.setWidthF(2.5)
                painter.setPen(pen)
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawEllipse(QPointF(sx, sy), radius, radius)
        painter.restore()
