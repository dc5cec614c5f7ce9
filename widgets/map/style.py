"""The map's fixed palette: one colour, brush and pen per status, made once.

pyqtgraph's symbol atlas keys on the brush and pen objects, so a brush made
per point defeats it (and costs a render per point); every visual takes its
brushes from the tables here.  Colours follow the queue: amber from 80 % of a
stage's limit, red when overdue (docs/DOMAIN.md "Time limits").
"""

from __future__ import annotations

from PySide6.QtGui import QBrush, QColor, QPen

from maps.layers import CASE_STATUSES, WORKER_STATUSES

BACKGROUND = "#1b2230"
LAND = QColor("#222b3b")

CASE_STATUS_COLOURS = {
    "reported": "#5aa9ff",
    "accepted": "#7fc8ff",
    "filed": "#b48cff",
    "dispatched": "#3ccf91",
    "in_progress": "#2fb37a",
    "awaiting_verification": "#e3d26f",
}
CASE_STATUS_LABELS = {
    "reported": "上报",
    "accepted": "受理",
    "filed": "立案",
    "dispatched": "派遣",
    "in_progress": "处置中",
    "awaiting_verification": "待核查",
}
OVERDUE = QColor("#ff4d4f")
WARNING = QColor("#ffb020")
EMERGENCY = QColor("#ff2d55")
ESCALATED = QColor("#ffd400")
ESCALATED_RED = QColor("#ff3030")

WORKER_STATUS_COLOURS = {
    "on_duty": "#33d17a",
    "patrolling": "#4fc3f7",
    "handling": "#ff9f43",
    "off_duty": "#8a93a6",
    "offline": "#5c6370",
}
WORKER_STATUS_LABELS = {
    "on_duty": "在岗",
    "patrolling": "巡查中",
    "handling": "处置中",
    "off_duty": "下班",
    "offline": "离线",
}

CAMERA = QColor("#9fd3ff")
HIGHLIGHT = QColor("#00e5ff")
SELECTED = QColor("#ffffff")

# Boundary pens by level (cosmetic: widths in pixels whatever the zoom).
LEVEL_COLOURS = {
    "district": QColor(235, 240, 255, 235),
    "street": QColor(200, 210, 235, 200),
    "community": QColor(160, 175, 205, 150),
    "grid": QColor(130, 145, 175, 95),
}
LEVEL_WIDTHS = {"district": 2.6, "street": 1.6, "community": 1.0, "grid": 0.6}
LEVEL_LABELS = {"district": "区县", "street": "街道", "community": "社区", "grid": "网格"}

# The choropleth: five classes, light to dark (colour-blind safe sequential).
CHOROPLETH = [QColor(c) for c in ("#2b3a55", "#3d5a80", "#5a7fb0", "#e09f3e", "#e4572e")]
CHOROPLETH_ALPHA = 150
CHOROPLETH_TITLES = {"open": "在办案件数", "overdue": "超期案件数", "weekly": "近一周日均案件"}


def _brush(colour) -> QBrush:
    return QBrush(QColor(colour))


def _pen(colour, width: float = 1.0) -> QPen:
    pen = QPen(QColor(colour))
    pen.setWidthF(width)
    pen.setCosmetic(True)
    return pen


# One brush per case status, plus the urgency fills; one pen per escalation mark.
CASE_BRUSHES = [_brush(CASE_STATUS_COLOURS[s]) for s in CASE_STATUSES]
CASE_BRUSH_OVERDUE = _brush(OVERDUE)
CASE_BRUSH_WARNING = _brush(WARNING)
CASE_BRUSH_EMERGENCY = _brush(EMERGENCY)
CASE_PEN_PLAIN = _pen("#0b0f18", 1.0)
CASE_PEN_URGENT = _pen("#ffffff", 2.0)
CASE_PEN_ESCALATED = _pen(ESCALATED, 2.5)
CASE_PEN_ESCALATED_RED = _pen(ESCALATED_RED, 2.5)


def argb(colour) -> int:
    """A colour as the premultiplied 32-bit ARGB value a raster buffer holds."""
    c = QColor(colour)
    a = c.alpha()
    return (a << 24) | ((c.red() * a // 255) << 16) | ((c.green() * a // 255) << 8) | (
        c.blue() * a // 255)


WORKER_ARGB = [argb(WORKER_STATUS_COLOURS[s]) for s in WORKER_STATUSES]
OUTLINE_ARGB = argb("#0b0f18")
