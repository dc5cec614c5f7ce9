"""Trails on the map: ONE item for every worker's trail, fading with age.

It observes a trail model (``maps.trails.TrailLayer`` live, or the replay's) whose
``segments()`` gives per age level an (n, 4) array of segments in canvas metres.  A
change only schedules a rebuild (coalesced like the other layer items); the rebuild
asks the model for its segments (numpy) and nothing else.

A frame rasterises them with numpy into one kept image and blits it once
(:func:`stamp_segments`): the segments are moved to viewport pixels, those outside
the view dropped and the rest clipped to it, every segment sampled once per pixel
along its longer axis and each sample stamped as wide as the pen, the oldest level
first so the newest lies on top.  The canvas draws without antialiasing, so this is
the same look as stroking the paths with QPainter, at a fraction of the cost: the
replay's 35,000 segments of 589 workers were one ``arrayToQPath`` per level per
frame (4–5 ms) plus a stroked ``drawPath`` (4–10 ms); here they are a few numpy
calls and one ``drawImage``.  Painting again with neither the segments nor the
view changed re-blits the image as it is.  ``vector = True`` is the former way
(a ``QPainterPath`` per level), kept for ``bench/replay.py`` to measure beside.

``highlight`` (a device's own segments, drawn wider on top) is the followed worker of
the replay.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, QTimer
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen, QTransform

from widgets.map.point_items import REPAINT_MS, WORLD
from widgets.map.sprites import device_ratio
from widgets.map.style import argb

SETTLE_MS = 150  # a view unchanged this long has stopped moving: rasterise for it
LIVE_REFRESH_MS = 2000  # the live map's trails: a fix every half minute, drawn within 2 s

TRAIL_COLOUR = QColor("#7fdcff")
HIGHLIGHT_COLOUR = QColor("#ffe45c")
ALPHAS = (235, 165, 100, 50)  # level 0 (newest) … oldest
TRAIL_WIDTH = 1.6  # logical pixels
HIGHLIGHT_WIDTH = 3.0


def _pen(colour: QColor, alpha: int, width: float) -> QPen:
    c = QColor(colour)
    c.setAlpha(alpha)
    pen = QPen(c)
    pen.setWidthF(width)
    pen.setCosmetic(True)
    return pen


def _argb(colour: QColor, alpha: int) -> int:
    c = QColor(colour)
    c.setAlpha(alpha)
    return argb(c)


def _path(seg: np.ndarray) -> QPainterPath:
    if not len(seg):
        return QPainterPath()
    x = np.ascontiguousarray(seg[:, [0, 2]]).reshape(-1)
    y = np.ascontiguousarray(seg[:, [1, 3]]).reshape(-1)
    return pg.arrayToQPath(x, y, connect="pairs", finiteCheck=False)


def clip_segments(x0, y0, x1, y1, box: tuple[float, float, float, float]):
    """The parts of segments inside ``box`` (xmin, ymin, xmax, ymax), Liang–Barsky for
    all at once; segments wholly outside are dropped.  Returns four arrays."""
    xmin, ymin, xmax, ymax = box
    out = (((x0 < xmin) & (x1 < xmin)) | ((x0 > xmax) & (x1 > xmax))
           | ((y0 < ymin) & (y1 < ymin)) | ((y0 > ymax) & (y1 > ymax)))
    if out.any():
        keep = ~out
        x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
    inside = ((x0 >= xmin) & (x0 <= xmax) & (x1 >= xmin) & (x1 <= xmax)
              & (y0 >= ymin) & (y0 <= ymax) & (y1 >= ymin) & (y1 <= ymax))
    if inside.all():
        return x0, y0, x1, y1
    k = np.flatnonzero(~inside)
    a0, b0, a1, b1 = x0[k], y0[k], x1[k], y1[k]
    dx, dy = a1 - a0, b1 - b0
    lo, hi = np.zeros(k.size), np.ones(k.size)
    ok = np.ones(k.size, bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for p, q in ((-dx, a0 - xmin), (dx, xmax - a0), (-dy, b0 - ymin), (dy, ymax - b0)):
            r = q / p
            lo = np.where(p < 0, np.maximum(lo, r), lo)
            hi = np.where(p > 0, np.minimum(hi, r), hi)
            ok &= (p != 0) | (q >= 0)
    ok &= lo <= hi
    x0, y0, x1, y1 = x0.copy(), y0.copy(), x1.copy(), y1.copy()
    x0[k], y0[k] = a0 + lo * dx, b0 + lo * dy
    x1[k], y1[k] = a0 + hi * dx, b0 + hi * dy
    keep = np.ones(x0.size, bool)
    keep[k[~ok]] = False
    return x0[keep], y0[keep], x1[keep], y1[keep]


def stamp_segments(buf: np.ndarray, bw: int, bh: int, x0, y0, x1, y1, width: float,
                   colour: int) -> int:
    """Draw segments (device pixels, at least ``width`` / 2 + 1 inside the buffer) into
    ``buf`` (a ``bw`` × ``bh`` uint32 raster): one sample per pixel along each segment's
    longer axis, stamped ``round(width)`` pixels across it, of one premultiplied ARGB
    ``colour`` (written, not blended: overlaps within one colour look as one stroked path
    does).  Returns the number of samples."""
    if not x0.size:
        return 0
    dx, dy = x1 - x0, y1 - y0
    flat = np.abs(dx) >= np.abs(dy)  # mostly horizontal: the stamp goes down the rows
    steps = np.ceil(np.where(flat, np.abs(dx), np.abs(dy))).astype(np.int64)
    n = steps + 1
    total = int(n.sum())
    across = max(1, round(width))
    half = (across - 1) / 2.0
    # The first pixel of each sample's stamp: the line's own pixel moved half the stamp
    # up (or left); the others follow one row (or column) apart.
    sx = x0 - np.where(flat, 0.0, half)
    sy = y0 - np.where(flat, half, 0.0)
    per = np.maximum(steps, 1)
    seg = np.repeat(np.arange(x0.size, dtype=np.int32), n)
    k = np.arange(total, dtype=np.float32)
    k -= np.repeat((np.cumsum(n) - n).astype(np.float32), n)
    xs = (dx / per).astype(np.float32)[seg] * k
    xs += sx.astype(np.float32)[seg]
    ys = (dy / per).astype(np.float32)[seg] * k
    ys += sy.astype(np.float32)[seg]
    idx = np.floor(ys).astype(np.intp)
    idx *= bw
    idx += np.floor(xs).astype(np.intp)
    np.clip(idx, 0, bw * bh - 1, out=idx)
    buf[idx] = colour
    if across > 1:
        step = np.where(flat, bw, 1).astype(np.intp)[seg]
        for _ in range(across - 1):
            idx += step
            np.clip(idx, 0, bw * bh - 1, out=idx)
            buf[idx] = colour
    return total


class TrailItem(pg.GraphicsObject):
    """The trails of a model, by age level, drawn by one item as one raster."""

    def __init__(self, model, z: float = 45.0, refresh_ms: int = REPAINT_MS):
        """``refresh_ms``: the soonest a change of the model is drawn again. The live map
        gives a second or two (a worker's trail gains a fix every half minute, its marker
        moves at once; re-rasterising every trail on each positions update made the live
        map's frames five times dearer at 10,000 workers); the replay redraws at once."""
        super().__init__()
        self.setZValue(z)
        self.levels: list[np.ndarray] = []
        self.highlight_segments = np.zeros((0, 4))
        self.paths: list[QPainterPath] = []  # the vector way only
        self.highlight_path = QPainterPath()
        self.highlight: int | None = None
        self.segment_counts: list[int] = []
        self.rebuilds = 0
        self.stamps = 0  # rasterisations (a paint with nothing changed re-blits)
        self.vector = False
        self._pens = [_pen(TRAIL_COLOUR, a, TRAIL_WIDTH) for a in ALPHAS]
        self._highlight_pen = _pen(HIGHLIGHT_COLOUR, 240, HIGHLIGHT_WIDTH)
        self._colours = [_argb(TRAIL_COLOUR, a) for a in ALPHAS]
        self._highlight_colour = _argb(HIGHLIGHT_COLOUR, 240)
        self._image: QImage | None = None
        self._image_key = None
        self._drawn_key = None
        self._dirty: tuple[int, int, int, int] | None = None
        self._timer = QTimer(singleShot=True, interval=refresh_ms)
        self._timer.timeout.connect(self.rebuild)
        # While the view moves, the kept raster is drawn moved and scaled with it; the
        # trails are rasterised again for the new view once it has stood still.
        self._stamp_transform: QTransform | None = None
        self._settled = True
        self._settle = QTimer(singleShot=True, interval=SETTLE_MS)
        self._settle.timeout.connect(self._view_settled)
        self.moving_blits = 0
        self.model = None
        self.set_model(model)

    def set_model(self, model) -> None:
        """Observe another model (the replay's, each time a window is loaded)."""
        if self.model is not None:
            self.model.changed.disconnect(self.schedule)
            self.model.style_changed.disconnect(self._style)
        self.model = model
        model.changed.connect(self.schedule)
        model.style_changed.connect(self._style)
        self.schedule()

    def _style(self) -> None:
        self.setVisible(self.model.visible)

    def boundingRect(self) -> QRectF:
        return QRectF(-WORLD, -WORLD, 2 * WORLD, 2 * WORLD)

    def dataBounds(self, *args, **kwargs):
        return None

    def schedule(self, *_args) -> None:
        if not self._timer.isActive():
            self._timer.start()

    @property
    def pending(self) -> bool:
        return self._timer.isActive()

    def set_highlight(self, device_id: int | None) -> None:
        self.highlight = device_id
        self.schedule()

    def rebuild(self) -> None:
        """The model's segments by level (and the highlighted device's); a repaint."""
        self._timer.stop()
        self.levels = self.model.segments()
        self.segment_counts = [len(seg) for seg in self.levels]
        own = getattr(self.model, "device_segments", None)
        self.highlight_segments = (own(self.highlight) if own is not None
                                   and self.highlight is not None else np.zeros((0, 4)))
        if self.vector:
            self.paths = [_path(seg) for seg in self.levels]
            self.highlight_path = _path(self.highlight_segments)
        self.rebuilds += 1
        self.update()

    def paint(self, painter: QPainter, *args) -> None:
        if self.vector:
            self._paint_paths(painter)
            return
        if not any(self.segment_counts) and not len(self.highlight_segments):
            return
        t = painter.transform()
        vp = painter.viewport()
        dpr = device_ratio(painter)
        w, h = vp.width(), vp.height()
        pad = 4
        bw, bh = math.ceil(w * dpr) + 2 * pad, math.ceil(h * dpr) + 2 * pad
        key = (self.rebuilds, t.m11(), t.m12(), t.m21(), t.m22(), t.m31(), t.m32(), bw, bh,
               dpr)
        if key != self._drawn_key:
            drawn = self._drawn_key
            if (drawn is not None and drawn[0] == self.rebuilds and drawn[7:] == key[7:]
                    and not self._settled and self._stamp_transform is not None
                    and self._dirty is not None):
                # Only the view moved, and it is still moving: the kept raster, moved.
                self._settle.start()
                self._blit_moved(painter, t, dpr, pad)
                return
            self._stamp(t, bw, bh, dpr, pad)
            self._drawn_key = key
            self._stamp_transform = QTransform(t)
            self._settled = False  # a following view change within SETTLE_MS is a move
        if self._dirty is None:
            return
        x0, y0, x1, y1 = self._dirty
        painter.save()
        painter.resetTransform()
        painter.drawImage(QPointF((x0 - pad) / dpr, (y0 - pad) / dpr), self._image,
                          QRectF(x0, y0, x1 - x0, y1 - y0))
        painter.restore()

    def _view_settled(self) -> None:
        self._settled = True
        self.update()

    def _blit_moved(self, painter: QPainter, t, dpr: float, pad: int) -> None:
        """The raster made for the stamp's view, drawn where those trails are now."""
        self.moving_blits += 1
        inverse, ok = self._stamp_transform.inverted()
        if not ok:
            return
        painter.save()
        painter.setTransform(inverse * t)
        painter.drawImage(QPointF(-pad / dpr, -pad / dpr), self._image)
        painter.restore()

    def _stamp(self, t, bw: int, bh: int, dpr: float, pad: int) -> None:
        """Rasterise every level and the highlight for the view ``t`` into the image."""
        self.stamps += 1
        if self._image_key != (bw, bh, dpr):
            self._image = QImage(bw, bh, QImage.Format.Format_ARGB32_Premultiplied)
            self._image.setDevicePixelRatio(dpr)
            self._image.fill(0)
            self._image_key = (bw, bh, dpr)
            self._dirty = None
        buf = np.frombuffer(self._image.bits(), dtype=np.uint32, count=bw * bh)
        if self._dirty is not None:
            x0, y0, x1, y1 = self._dirty
            buf.reshape(bh, bw)[y0:y1, x0:x1] = 0
            self._dirty = None
        a, b, c, d, e, f = (t.m11() * dpr, t.m12() * dpr, t.m21() * dpr, t.m22() * dpr,
                            t.m31() * dpr + pad, t.m32() * dpr + pad)
        lo_x, lo_y, hi_x, hi_y = bw, bh, -1, -1
        layers = [(seg, TRAIL_WIDTH, colour) for seg, colour in
                  zip(self.levels, self._colours, strict=False)][::-1]  # oldest first
        layers.append((self.highlight_segments, HIGHLIGHT_WIDTH, self._highlight_colour))
        for seg, width, colour in layers:
            if not len(seg):
                continue
            sx, sy, ex, ey = seg[:, 0], seg[:, 1], seg[:, 2], seg[:, 3]
            px0, py0 = sx * a + sy * c + e, sx * b + sy * d + f
            px1, py1 = ex * a + ey * c + e, ex * b + ey * d + f
            margin = round(width * dpr) / 2.0 + 1.0  # the stamp's reach beyond the line
            box = (margin, margin, bw - 1 - margin, bh - 1 - margin)
            px0, py0, px1, py1 = clip_segments(px0, py0, px1, py1, box)
            if not px0.size:
                continue
            stamp_segments(buf, bw, bh, px0, py0, px1, py1, width * dpr, colour)
            reach = math.ceil(margin)
            lo_x = min(lo_x, int(min(px0.min(), px1.min())) - reach)
            lo_y = min(lo_y, int(min(py0.min(), py1.min())) - reach)
            hi_x = max(hi_x, int(max(px0.max(), px1.max())) + reach + 1)
            hi_y = max(hi_y, int(max(py0.max(), py1.max())) + reach + 1)
        if hi_x >= 0:
            self._dirty = (max(0, lo_x), max(0, lo_y), min(bw, hi_x), min(bh, hi_y))

    def _paint_paths(self, painter: QPainter) -> None:
        # The oldest level first, so the newest draws on top.
        for pen, path in reversed(list(zip(self._pens, self.paths, strict=False))):
            if not path.isEmpty():
                painter.setPen(pen)
                painter.drawPath(path)
        if not self.highlight_path.isEmpty():
            painter.setPen(self._highlight_pen)
            painter.drawPath(self.highlight_path)
