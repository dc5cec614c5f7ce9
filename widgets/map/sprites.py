"""Small images drawn once and blitted every frame: cluster bubbles, cameras, the map's badges.

Antialiased circles, wedges and text cost a QPainter call each, per marker and
per frame; the same look drawn once into a small image (at the screen's pixel
ratio) and copied at whole device pixels costs a fraction of that.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QImage, QPainter


class Sprites:
    """Images by key, each drawn once by ``draw(painter)`` on a transparent square of
    ``width`` × ``height`` logical pixels; forgotten all at once past ``limit``."""

    def __init__(self, limit: int = 256):
        self.limit = limit
        self._images: dict[tuple, QImage] = {}

    def get(self, key: Hashable, width: float, height: float, dpr: float,
            draw: Callable[[QPainter], None]) -> QImage:
        full = (key, dpr)
        image = self._images.get(full)
        if image is None:
            if len(self._images) >= self.limit:
                self._images.clear()
            image = QImage(max(1, math.ceil(width * dpr)), max(1, math.ceil(height * dpr)),
                           QImage.Format.Format_ARGB32_Premultiplied)
            image.setDevicePixelRatio(dpr)
            image.fill(Qt.GlobalColor.transparent)
            p = QPainter(image)
            p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            p.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
            try:
                draw(p)
            finally:
                p.end()
            self._images[full] = image
        return image

    def __len__(self) -> int:
        return len(self._images)


def blit_centred(painter: QPainter, image: QImage, x: float, y: float) -> None:
    """Draw ``image`` centred on (x, y) logical pixels, its corner on a whole device pixel
    (a plain copy, no resampling)."""
    dpr = image.devicePixelRatio()
    left = round((x - image.width() / dpr / 2.0) * dpr) / dpr
    top = round((y - image.height() / dpr / 2.0) * dpr) / dpr
    painter.drawImage(QPointF(left, top), image)


def device_ratio(painter: QPainter) -> float:
    """The pixel ratio of what the painter paints on (1 when it cannot say)."""
    device = painter.device()
    return max(1.0, float(device.devicePixelRatioF())) if device is not None else 1.0
