"""A label that shows as much of a long one-line text as fits, eliding the middle.

Why: the status window shows the database address and the server's version; on a
machine whose data directory lies deep (a CI checkout, a user's home with long names)
those strings are hundreds of pixels wide, and a plain ``QLabel`` makes the whole window
at least that wide. This label asks for almost no width, elides the middle (both the
start and the end of a path or URL say something) and keeps the whole text in its
tooltip and for copying.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class ElidedLabel(QLabel):
    """One line of text, elided in the middle to the label's width; full text as tooltip."""

    def __init__(self, text: str = "", parent: QWidget | None = None):
        super().__init__(text, parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setToolTip(text)

    def setText(self, text: str) -> None:
        super().setText(text)
        self.setToolTip(text)

    def minimumSizeHint(self) -> QSize:
        return QSize(
            self.fontMetrics().horizontalAdvance("…") * 4, super().minimumSizeHint().height()
        )

    def sizeHint(self) -> QSize:
        return QSize(min(super().sizeHint().width(), 400), super().sizeHint().height())

    def displayed(self) -> str:
        """The text as drawn at the current width (what an operator reads)."""
        rect = self.contentsRect()
        return self.fontMetrics().elidedText(
            self.text(), Qt.TextElideMode.ElideMiddle, rect.width()
        )

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(
            self.contentsRect(), self.alignment() | Qt.AlignmentFlag.AlignVCenter, self.displayed()
        )
        painter.end()
