"""Text as a pixel mask, painted with Qt's fonts: the demo scenes' camera names in Chinese.

``console/video/scene.py`` has no QtGui; the window hands it this function.  Painting
into a QImage is allowed off the GUI thread, which is where scenes are made.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter


def render_mask(text: str, height_px: int) -> np.ndarray:
    """A boolean mask of ``text`` about ``height_px`` pixels high."""
    font = QFont()
    font.setPixelSize(max(8, int(height_px)))
    metrics = QFontMetrics(font)
    w = max(1, metrics.horizontalAdvance(text) + 4)
    h = max(1, metrics.height())
    img = QImage(w, h, QImage.Format.Format_Grayscale8)
    img.fill(0)
    p = QPainter(img)
    p.setFont(font)
    p.setPen(QColor(255, 255, 255))
    p.drawText(img.rect(), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, text)
    p.end()
    data = np.frombuffer(img.constBits(), np.uint8).reshape(h, img.bytesPerLine())[:, :w]
    return data > 110
