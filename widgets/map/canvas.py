"""The map canvas: a pyqtgraph view in Web Mercator metres, without plot axes.

Pan with the mouse (left drag) or the arrow keys, zoom with the wheel or
+/−; the view keeps one metre the same on both axes.  On top of the layers it
paints what every map needs: a scale bar in ground metres (Web Mercator
stretches by 1/cos(latitude)), a north arrow, and the WGS-84 coordinates
and grid under the cursor (``set_readout``).  Painting happens in pixels of
the viewport, so it is crisp on a HiDPI screen.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView

from maps.mercator import from_mercator, ground_scale, metres_per_pixel, zoom_of
from widgets.map.sprites import Sprites
from widgets.map.style import BACKGROUND

MIN_M_PER_PX = 0.05  # about zoom 21.5: closer than any basemap
MAX_M_PER_PX = 2000.0  # about zoom 6: a province
KEY_PAN_SHARE = 0.2  # an arrow key moves a fifth of the view
KEY_ZOOM = 2.0


class MapViewBox(pg.ViewBox):
    """A ViewBox that pans with the left button only and reports clicks in metres."""

    clicked = Signal(object, object, object)  # QPointF metres, Qt.MouseButton, QPointF screen

    def __init__(self):
        super().__init__(lockAspect=True, enableMenu=False, invertY=False)
        self.setMouseEnabled(True, True)
        self.disableAutoRange()
        self.setLimits(minXRange=200 * MIN_M_PER_PX, maxXRange=4000 * MAX_M_PER_PX)

    def mouseClickEvent(self, ev) -> None:
        ev.accept()
        self.clicked.emit(self.mapSceneToView(ev.scenePos()), ev.button(), ev.screenPos())

    # Called with the point (metres) where a left drag starts: True when it started a drag
    # of its own (a camera dragged onto the video wall) instead of a pan.
    drag_start_hook = None

    def mouseDragEvent(self, ev, axis=None) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            if ev.isStart() and self.drag_start_hook is not None \
                    and self.drag_start_hook(self.mapSceneToView(ev.buttonDownScenePos())):
                ev.accept()
                return
            super().mouseDragEvent(ev, axis)
            self.sigUserMoved.emit()
        else:
            ev.ignore()

    def wheelEvent(self, ev, axis=None) -> None:
        super().wheelEvent(ev, axis)
        self.sigUserMoved.emit()

    sigUserMoved = Signal()


class MapCanvas(pg.GraphicsView):
    """The view: ``vb`` holds the layer items (data coordinates = canvas metres).

    Signals: ``view_changed()`` whenever the visible rectangle changes,
    ``user_moved()`` when the operator panned or zoomed (follow mode stops),
    ``clicked(QPointF, button, QPointF screen)`` and ``hovered(QPointF)`` in metres.
    """

    view_changed = Signal()
    user_moved = Signal()
    clicked = Signal(object, object, object)
    hovered = Signal(object)
    left = Signal()

    def __init__(self, parent=None):
        super().__init__(parent, background=BACKGROUND)
        self.setObjectName("mapCanvas")
        self.vb = MapViewBox()
        self.setCentralItem(self.vb)
        # Every frame repaints the whole map anyway (the items follow the view): one full
        # update, no region bookkeeping; a plain fill for the background instead of a
        # cached pixmap; no BSP index for a few world-sized items that change every frame.
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.setCacheMode(QGraphicsView.CacheModeFlag.CacheNone)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing, True)
        self.scene().setItemIndexMethod(QGraphicsScene.ItemIndexMethod.NoIndex)
        # The view paints its own background brush over every pixel: the viewport's
        # palette fill underneath would be a second full-screen fill per frame.
        self.viewport().setAutoFillBackground(False)
        self.viewport().setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        self.vb.sigRangeChanged.connect(lambda *_: self.view_changed.emit())
        self.vb.sigUserMoved.connect(self.user_moved.emit)
        self.vb.clicked.connect(self.clicked.emit)
        self.scene().sigMouseMoved.connect(self._moved)
        self.readout = ""
        self.note = ""
        self.opaque_cover = None  # () -> bool: True when a layer paints every pixel opaque
        self._font = QFont()
        self._font.setPointSizeF(9.0)
        self._small = QFont()
        self._small.setPointSizeF(8.0)
        self._sprites = Sprites(limit=64)

    # -- the view --------------------------------------------------------------------

    def view_rect(self) -> tuple[float, float, float, float]:
        """(min_x, min_y, max_x, max_y) in metres of what is visible."""
        (x0, x1), (y0, y1) = self.vb.viewRange()
        return x0, y0, x1, y1

    def m_per_px(self) -> float:
        """Canvas metres per logical pixel."""
        (x0, x1), _ = self.vb.viewRange()
        width = max(1.0, self.vb.width() or self.viewport().width())
        return (x1 - x0) / width

    def zoom(self) -> float:
        """The web zoom level of the view."""
        return zoom_of(self.m_per_px())

    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.view_rect()
        return (x0 + x1) / 2.0, (y0 + y1) / 2.0

    def set_view(self, cx: float, cy: float, m_per_px: float) -> None:
        """Centre on (cx, cy) metres at ``m_per_px``."""
        m_per_px = min(MAX_M_PER_PX, max(MIN_M_PER_PX, m_per_px))
        w = max(1.0, self.viewport().width())
        h = max(1.0, self.viewport().height())
        self.vb.setRange(xRange=(cx - w * m_per_px / 2, cx + w * m_per_px / 2),
                         yRange=(cy - h * m_per_px / 2, cy + h * m_per_px / 2), padding=0)

    def set_zoom(self, cx: float, cy: float, zoom: float) -> None:
        self.set_view(cx, cy, metres_per_pixel(zoom))

    def fit(self, bbox: tuple[float, float, float, float], padding: float = 0.06,
            min_m_per_px: float = 0.25) -> None:
        """Show a box of metres whole, with a margin (a point box gets ``min_m_per_px``)."""
        x0, y0, x1, y1 = bbox
        w = max(1.0, self.viewport().width())
        h = max(1.0, self.viewport().height())
        span = max((x1 - x0) / w, (y1 - y0) / h) * (1.0 + 2 * padding)
        self.set_view((x0 + x1) / 2.0, (y0 + y1) / 2.0, max(span, min_m_per_px))

    def pan_to(self, x: float, y: float) -> None:
        self.set_view(x, y, self.m_per_px())

    def zoom_by(self, factor: float) -> None:
        cx, cy = self.centre()
        self.set_view(cx, cy, self.m_per_px() / factor)

    # -- input -----------------------------------------------------------------------

    def keyPressEvent(self, ev) -> None:
        key = ev.key()
        cx, cy = self.centre()
        x0, y0, x1, y1 = self.view_rect()
        dx, dy = (x1 - x0) * KEY_PAN_SHARE, (y1 - y0) * KEY_PAN_SHARE
        moves = {Qt.Key.Key_Left: (-dx, 0), Qt.Key.Key_Right: (dx, 0),
                 Qt.Key.Key_Up: (0, dy), Qt.Key.Key_Down: (0, -dy)}
        if key in moves:
            mx, my = moves[key]
            self.pan_to(cx + mx, cy + my)
            self.user_moved.emit()
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_by(KEY_ZOOM)
            self.user_moved.emit()
        elif key in (Qt.Key.Key_Minus, Qt.Key.Key_Underscore):
            self.zoom_by(1.0 / KEY_ZOOM)
            self.user_moved.emit()
        else:
            super().keyPressEvent(ev)

    def _moved(self, scene_pos) -> None:
        if self.vb.sceneBoundingRect().contains(scene_pos):
            self.hovered.emit(self.vb.mapSceneToView(scene_pos))

    def leaveEvent(self, ev) -> None:
        self.left.emit()
        super().leaveEvent(ev)

    def set_readout(self, text: str) -> None:
        if text != self.readout:
            self.readout = text
            self.viewport().update()

    def set_note(self, text: str) -> None:
        if text != self.note:
            self.note = text
            self.viewport().update()

    # -- background -----------------------------------------------------------------------

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        """The background colour, unless an opaque layer (``opaque_cover()``) hides it all."""
        if self.opaque_cover is not None and self.opaque_cover():
            return
        super().drawBackground(painter, rect)

    # -- overlays --------------------------------------------------------------------------

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        """Scale bar, north arrow and the two badges, each blitted from a cached sprite.

        Antialiased text and paths cost about a millisecond a frame; they change
        only with the zoom (the bar) or the text, so each is drawn once per look.
        """
        painter.save()
        painter.resetTransform()
        w, h = self.viewport().width(), self.viewport().height()
        bar = self._scale_bar_spec()
        if bar is not None:
            text, px = bar
            painter.drawImage(QPointF(16 - 7, h - 34 - 19), self._sprite(
                ("bar", text, px), px + 14, 28, lambda p: self._scale_bar(p, 7, 19, text, px)))
        painter.drawImage(QPointF(w - 34 - 21, h - 70 - 39), self._sprite(
            ("north",), 42, 60, lambda p: self._north_arrow(p, 21, 39)))
        for text, left in ((self.readout, True), (self.note, False)):
            if not text:
                continue
            tw, th = self._badge_size(text)
            x = 12 if left else w - 12 - tw
            painter.drawImage(QPointF(x, h - 12 - th), self._sprite(
                ("badge", text), tw, th, lambda p, t=text, a=tw, b=th: self._badge(p, t, a, b)))
        painter.restore()

    def _sprite(self, key, width: float, height: float, draw) -> QImage:
        """A small transparent image at the screen's pixel ratio, drawn once per ``key``."""
        return self._sprites.get(key, width, height, max(1.0, self.devicePixelRatioF()), draw)

    def _badge_size(self, text: str) -> tuple[float, float]:
        fm = QFontMetricsF(self._small)
        return math.ceil(fm.horizontalAdvance(text) + 12), math.ceil(fm.height() + 6)

    def _badge(self, painter: QPainter, text: str, tw: float, th: float) -> None:
        painter.setFont(self._small)
        box = QRectF(0, 0, tw, th)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(12, 16, 24, 190))
        painter.drawRoundedRect(box, 4, 4)
        painter.setPen(QColor("#dfe6f3"))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)

    def _scale_bar_spec(self) -> tuple[str, float] | None:
        """The bar's label and its length in pixels: a round ground distance near 120 px."""
        _, cy = self.centre()
        _, lat = from_mercator(0.0, cy)
        ground_per_px = self.m_per_px() * ground_scale(lat)
        if not math.isfinite(ground_per_px) or ground_per_px <= 0:
            return None
        target = 120 * ground_per_px
        exp = 10 ** math.floor(math.log10(target))
        length = max(m * exp for m in (1, 2, 5) if m * exp <= target) if target >= exp else exp
        px = round(length / ground_per_px * 2) / 2  # half pixels: a few sprites per zoom band
        text = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
        return text, px

    def _scale_bar(self, painter: QPainter, x: float, y: float, text: str, px: float) -> None:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(12, 16, 24, 170))
        painter.drawRoundedRect(QRectF(x - 6, y - 18, px + 12, 26), 4, 4)
        pen = QPen(QColor("#f0f4fa"))
        pen.setWidthF(2.0)
        painter.setPen(pen)
        painter.drawLine(QPointF(x, y), QPointF(x + px, y))
        painter.drawLine(QPointF(x, y - 5), QPointF(x, y + 3))
        painter.drawLine(QPointF(x + px, y - 5), QPointF(x + px, y + 3))
        painter.setFont(self._small)
        painter.drawText(QRectF(x, y - 18, px, 14), Qt.AlignmentFlag.AlignCenter, text)

    def _north_arrow(self, painter: QPainter, x: float, y: float) -> None:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(12, 16, 24, 170))
        painter.drawEllipse(QPointF(x, y), 20, 20)
        path = QPainterPath()
        path.moveTo(x, y - 15)
        path.lineTo(x + 8, y + 9)
        path.lineTo(x, y + 4)
        path.lineTo(x - 8, y + 9)
        path.closeSubpath()
        painter.setBrush(QColor("#f0f4fa"))
        painter.drawPath(path)
        painter.setFont(self._small)
        painter.setPen(QColor("#f0f4fa"))
        painter.drawText(QRectF(x - 10, y - 38, 20, 16), Qt.AlignmentFlag.AlignCenter, "N")
