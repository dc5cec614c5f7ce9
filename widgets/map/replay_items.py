"""The replay's stops on the map: a marker and the dwell's duration, one item for all.

A worker stands five minutes or more a handful of times a day; for a whole district that
is still a couple of thousand markers, which would bury the map at district zoom.  So with
a worker selected only their stops are drawn, and everyone's only from street zoom in
(``ALL_BELOW_M_PER_PX``).  Painted with QPainter in viewport pixels, only those inside the
view; the label of each is its duration at T (a stop still going on counts up to T).
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPen

from console.i18n import tr
from widgets.map.point_items import _WorldItem
from widgets.map.sprites import Sprites, device_ratio

STOP_COLOUR = QColor("#ff7a59")
SIDE = 15.0  # the marker's square, pixels
ALL_BELOW_M_PER_PX = 4.0  # everyone's stops from this zoom in (a street fills the view)


def duration_text(seconds: float) -> str:
    """``12分`` or ``1时05分`` (the stop's dwell, whole minutes)."""
    minutes = round(seconds / 60.0)
    if minutes < 60:
        return f"{minutes}{tr('分')}"
    return f"{minutes // 60}{tr('时')}{minutes % 60:02d}{tr('分')}"


class StopItem(_WorldItem):
    """Stops (``x``, ``y`` metres, ``start``, ``end`` epoch s) shown as qualified at T."""

    def __init__(self):
        super().__init__()
        self.setZValue(70)
        self.x = self.y = self.start = self.end = np.zeros(0)
        self.device = np.zeros(0, np.int64)
        self.stop_min_s = 300.0
        self.t = 0.0
        self.focus: int | None = None  # the selected worker: only theirs at any zoom
        self._font = QFont()
        self._font.setPointSizeF(8.0)
        self._font.setBold(True)
        self._sprites = Sprites(limit=512)
        self._metrics = QFontMetricsF(self._font)
        self._widths: dict[str, int] = {}

    def set_stops(self, device, x, y, start, end, stop_min_s: float) -> None:
        self.device = np.asarray(device, np.int64)
        self.x, self.y = np.asarray(x, float), np.asarray(y, float)
        self.start, self.end = np.asarray(start, float), np.asarray(end, float)
        self.stop_min_s = float(stop_min_s)
        self.update()

    def set_time(self, when: float) -> None:
        self.t = float(when)
        self.update()

    def set_focus(self, device: int | None) -> None:
        self.focus = device
        self.update()

    def shown(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the stops qualified at T (of the focused worker, if one) and each one's
        duration at T (seconds)."""
        ok = self.start + self.stop_min_s <= self.t
        if self.focus is not None:
            ok &= self.device == self.focus
        rows = np.flatnonzero(ok)
        return rows, np.minimum(self.end[rows], self.t) - self.start[rows]

    def sprite(self, text: str, dpr: float):
        """The marker with its label to the right, drawn once per duration text."""
        fm = self._metrics
        width = self._widths.get(text)
        if width is None:  # the label's width asked once per text, not per stop per frame
            if len(self._widths) > 1024:
                self._widths.clear()
            width = self._widths[text] = SIDE + 8 + math.ceil(fm.horizontalAdvance(text)) + 4
        height = SIDE + 4

        def draw(p: QPainter) -> None:
            box = QRectF(2, 2, SIDE, SIDE)
            ring = QPen(QColor("#0b0f18"))
            ring.setWidthF(1.5)
            p.setPen(ring)
            p.setBrush(QBrush(STOP_COLOUR))
            p.drawRoundedRect(box, 3, 3)
            p.setFont(self._font)
            p.setPen(QPen(QColor("#ffffff")))
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, "P")
            path = QPainterPath()
            path.addText(QPointF(SIDE + 7, 2 + SIDE / 2 + fm.ascent() / 2 - 1), self._font, text)
            halo = QPen(QColor(8, 12, 20, 230))
            halo.setWidthF(3.0)
            p.strokePath(path, halo)
            p.fillPath(path, QBrush(STOP_COLOUR.lighter(130)))

        return self._sprites.get(text, width, height, dpr, draw)

    def paint(self, painter: QPainter, *args) -> None:
        m = 1.0 / max(abs(painter.transform().m11()), 1e-12)  # not the ViewBox: mid-paint
        if self.focus is None and m > ALL_BELOW_M_PER_PX:
            return
        rows, seconds = self.shown()
        if not rows.size:
            return
        px, py = self.to_px(painter, self.x[rows], self.y[rows])
        vp = painter.viewport()
        inside = (px > -80) & (px < vp.width() + 20) & (py > -20) & (py < vp.height() + 20)
        dpr = device_ratio(painter)
        painter.save()
        painter.resetTransform()
        # Each look (a duration) is drawn once; a frame copies one small image per stop.
        for x, y, s in zip(px[inside].tolist(), py[inside].tolist(),
                           seconds[inside].tolist(), strict=True):
            image = self.sprite(duration_text(s), dpr)
            left = round((x - SIDE / 2 - 2) * dpr) / dpr
            top = round((y - SIDE / 2 - 2) * dpr) / dpr
            painter.drawImage(QPointF(left, top), image)
        painter.restore()
