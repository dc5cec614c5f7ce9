"""The replay's timeline: a slider over the window with the day's events marked under it.

Marks (cases reported, dispatched, closed; worker events) are ticks in a strip drawn
under the slider, each at the fraction ``(at − t0) / (t1 − t0)`` of the groove, in one
colour per kind; hundreds of marks are one ``drawLines`` per kind, drawn once into an
image kept while the window, the marks and the strip's size stay the same: a frame of
the replay (T moved) blits that image and draws T's line, instead of working out every
mark's fraction in Python again (5,000 marks of a day: 4–8 ms a frame).
"""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import QLineF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QLabel, QSlider, QStyle, QStyleOptionSlider, QVBoxLayout, QWidget

from console.i18n import tr
from db.clock import hall_timezone

STEPS = 10_000  # slider resolution over the window
MARK_COLOURS = {
    "report": QColor("#5aa9ff"),
    "dispatch": QColor("#3ccf91"),
    "close": QColor("#e3d26f"),
    "worker": QColor("#ff9f43"),  # left/returned to the grid, offline/online
}
_T_PEN = QPen(QColor("#ffffff"))  # T's line, made once (a frame only draws it)
MARK_ROWS = {"report": 0, "dispatch": 1, "close": 2, "worker": 3}
MARK_LABELS = {"report": "上报", "dispatch": "派遣", "close": "结案", "worker": "网格员事件"}


def mark_kind(mark: dict) -> str:
    return mark["kind"] if mark["kind"] in ("report", "dispatch", "close") else "worker"


class MarkStrip(QWidget):
    """The ticks of the events, aligned with the slider's groove above."""

    def __init__(self, timeline: ReplayTimeline):
        super().__init__(timeline)
        self.timeline = timeline
        self.setMinimumHeight(4 * 5 + 4)
        self._ticks: QImage | None = None
        self._ticks_key = None
        self.tick_draws = 0

    def paintEvent(self, ev) -> None:
        tl = self.timeline
        left, width = tl.groove()
        dpr = self.devicePixelRatioF()
        key = (self.width(), self.height(), dpr, left, width, tl.t0, tl.t1, tl.version)
        if key != self._ticks_key:
            self._ticks = self._draw_ticks(left, width, dpr)
            self._ticks_key = key
        p = QPainter(self)
        p.drawImage(0, 0, self._ticks)
        # T's position through the strip
        f = tl.fraction(tl.t)
        p.setPen(_T_PEN)
        p.drawLine(QLineF(left + f * width, 0, left + f * width, self.height()))
        p.end()

    def _draw_ticks(self, left: float, width: float, dpr: float) -> QImage:
        """The background and every mark, once (one ``drawLines`` per kind)."""
        self.tick_draws += 1
        tl = self.timeline
        image = QImage(max(1, round(self.width() * dpr)), max(1, round(self.height() * dpr)),
                       QImage.Format.Format_ARGB32_Premultiplied)
        image.setDevicePixelRatio(dpr)
        image.fill(0)
        p = QPainter(image)
        p.fillRect(self.rect(), QColor(12, 16, 24, 160))
        for kind, row in MARK_ROWS.items():
            xs = [left + f * width for f in tl.fractions(kind)]
            if not xs:
                continue
            pen = QPen(MARK_COLOURS[kind])
            pen.setWidthF(1.0)
            p.setPen(pen)
            y0 = 2 + row * 5
            p.drawLines([QLineF(x, y0, x, y0 + 4) for x in xs])
        p.end()
        return image


class ReplayTimeline(QWidget):
    """``scrubbed(float)``: the operator moved the slider to a time (epoch seconds)."""

    scrubbed = Signal(float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("replayTimeline")
        self.t0, self.t1, self.t = 0.0, 1.0, 0.0
        self.marks: list[dict] = []
        self.version = 0  # counts the windows set (the strip's ticks are kept until then)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("replaySlider")
        self.slider.setRange(0, STEPS)
        self.slider.valueChanged.connect(self._slid)
        self.strip = MarkStrip(self)
        self.legend = QLabel(" ".join(
            f"<span style='color:{MARK_COLOURS[k].name()}'>▮</span>{tr(v)}"
            for k, v in MARK_LABELS.items()))
        self.legend.setObjectName("replayLegend")
        layout.addWidget(self.slider)
        layout.addWidget(self.strip)
        layout.addWidget(self.legend)

    def set_window(self, t0: float, t1: float, marks: list[dict]) -> None:
        self.t0, self.t1 = float(t0), max(float(t1), float(t0) + 1.0)
        self.marks = [m for m in marks if self.t0 <= m["at"] <= self.t1]
        self.version += 1
        self.strip.update()

    def set_time(self, when: float) -> None:
        self.t = float(when)
        self.slider.blockSignals(True)
        self.slider.setValue(round(self.fraction(when) * STEPS))
        self.slider.blockSignals(False)
        self.strip.update()

    def fraction(self, when: float) -> float:
        return min(1.0, max(0.0, (when - self.t0) / (self.t1 - self.t0)))

    def fractions(self, kind: str | None = None) -> list[float]:
        """Where the marks (of ``kind``: report, dispatch, close, worker) lie, 0…1."""
        return [self.fraction(m["at"]) for m in self.marks
                if kind is None or mark_kind(m) == kind]

    def groove(self) -> tuple[float, float]:
        """The x of the slider's value 0 and the width to its value ``STEPS``, in the
        strip's pixels (the handle's centre travels that span)."""
        opt = QStyleOptionSlider()
        self.slider.initStyleOption(opt)
        style = self.slider.style()
        handle = style.subControlRect(QStyle.ComplexControl.CC_Slider, opt,
                                      QStyle.SubControl.SC_SliderHandle, self.slider)
        groove = style.subControlRect(QStyle.ComplexControl.CC_Slider, opt,
                                      QStyle.SubControl.SC_SliderGroove, self.slider)
        half = handle.width() / 2.0
        left = groove.left() + half
        width = max(1.0, groove.width() - handle.width())
        return self.slider.x() + left, width

    def _slid(self, value: int) -> None:
        when = self.t0 + value / STEPS * (self.t1 - self.t0)
        self.t = when
        self.strip.update()
        self.scrubbed.emit(when)

    def label(self, when: float) -> str:
        return datetime.fromtimestamp(when, hall_timezone()).strftime("%Y-%m-%d %H:%M:%S")
