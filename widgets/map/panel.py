"""The layer panel: toggle and order the layers, choose the choropleth, read the legend."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from console.i18n import tr
from maps.layers import CASE_STATUSES, LEVELS, WORKER_STATUSES
from widgets.map import style

# Layer keys, top to bottom as the panel lists them by default.
LAYERS = [
    ("cases", "案件"),
    ("workers", "网格员"),
    ("trails", "实时轨迹"),
    ("cameras", "摄像头"),
    ("boundaries", "边界"),
    ("choropleth", "网格专题图"),
    ("basemap", "底图"),
]


def swatch(colour, shape: str = "circle", size: int = 12, hollow: bool = False) -> QIcon:
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    c = QColor(colour)
    p.setPen(QColor("#0b0f18"))
    p.setBrush(Qt.BrushStyle.NoBrush if hollow else c)
    if hollow:
        pen = p.pen()
        pen.setColor(c)
        pen.setWidth(2)
        p.setPen(pen)
    if shape == "square":
        p.drawRect(1, 1, size - 3, size - 3)
    else:
        p.drawEllipse(1, 1, size - 3, size - 3)
    p.end()
    return QIcon(pix)


class LayerPanel(QFrame):
    """Signals: ``visibility(key, bool)``, ``order(list[key] top→bottom)``,
    ``level_visibility(level, bool)``, ``metric(str)``, ``clustering(bool)``,
    ``trail_minutes(int)`` and ``trail_selected_only(bool)`` (the live trails)."""

    visibility = Signal(str, bool)
    order = Signal(list)
    level_visibility = Signal(str, bool)
    metric = Signal(str)
    clustering = Signal(bool)
    trail_minutes = Signal(int)
    trail_selected_only = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("mapLayerPanel")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(4)
        title = QLabel(f"<b>{tr('图层')}</b>")
        layout.addWidget(title)
        self.list = QListWidget()
        self.list.setObjectName("mapLayers")
        self.list.setDragDropMode(QListWidget.DragDropMode.InternalMove)
        self.list.setFixedHeight(len(LAYERS) * 22 + 6)
        for key, text in LAYERS:
            item = QListWidgetItem(tr(text))
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable
                          | Qt.ItemFlag.ItemIsDragEnabled)
            item.setCheckState(Qt.CheckState.Checked)
            self.list.addItem(item)
        self.list.itemChanged.connect(self._item_changed)
        self.list.model().rowsMoved.connect(lambda *_: self.order.emit(self.keys()))
        layout.addWidget(self.list)
        moves = QHBoxLayout()
        up, down = QPushButton("▲"), QPushButton("▼")
        up.setObjectName("layerUp")
        down.setObjectName("layerDown")
        up.setToolTip(tr("上移图层"))
        down.setToolTip(tr("下移图层"))
        up.clicked.connect(lambda: self.move_current(-1))
        down.clicked.connect(lambda: self.move_current(1))
        moves.addWidget(up)
        moves.addWidget(down)
        moves.addStretch(1)
        layout.addLayout(moves)
        levels = QHBoxLayout()
        self.level_boxes: dict[str, QCheckBox] = {}
        for level in LEVELS:
            box = QCheckBox(tr(style.LEVEL_LABELS[level]))
            box.setObjectName(f"level_{level}")
            box.setChecked(True)
            box.toggled.connect(lambda on, lv=level: self.level_visibility.emit(lv, on))
            self.level_boxes[level] = box
            levels.addWidget(box)
        layout.addLayout(levels)
        self.metric_combo = QComboBox()
        self.metric_combo.setObjectName("mapMetric")
        for key, text in style.CHOROPLETH_TITLES.items():
            self.metric_combo.addItem(tr(text), key)
        self.metric_combo.currentIndexChanged.connect(
            lambda _i: self.metric.emit(self.metric_combo.currentData()))
        row = QHBoxLayout()
        row.addWidget(QLabel(tr("专题")))
        row.addWidget(self.metric_combo, 1)
        layout.addLayout(row)
        self.cluster_box = QCheckBox(tr("案件聚合（紧急、超期不聚合）"))
        self.cluster_box.setObjectName("mapClustering")
        self.cluster_box.setChecked(True)
        self.cluster_box.toggled.connect(self.clustering.emit)
        layout.addWidget(self.cluster_box)
        trails = QHBoxLayout()
        trails.addWidget(QLabel(tr("轨迹")))
        self.trail_spin = QSpinBox()
        self.trail_spin.setObjectName("trailMinutes")
        self.trail_spin.setRange(1, 240)
        self.trail_spin.setValue(30)
        self.trail_spin.setSuffix(" " + tr("分钟"))
        self.trail_spin.valueChanged.connect(self.trail_minutes.emit)
        self.trail_only = QCheckBox(tr("仅所选"))
        self.trail_only.setObjectName("trailSelectedOnly")
        self.trail_only.setToolTip(tr("只显示所选网格员的轨迹"))
        self.trail_only.toggled.connect(self.trail_selected_only.emit)
        trails.addWidget(self.trail_spin)
        trails.addWidget(self.trail_only)
        trails.addStretch(1)
        layout.addLayout(trails)
        layout.addWidget(self._legend())
        self.scale_label = QLabel("")
        self.scale_label.setObjectName("choroplethScale")
        self.scale_label.setWordWrap(True)
        layout.addWidget(self.scale_label)

    def _legend(self) -> QWidget:
        box = QWidget()
        grid = QGridLayout(box)
        grid.setContentsMargins(0, 4, 0, 0)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(1)
        entries = [(style.CASE_STATUS_COLOURS[s], "circle", False, style.CASE_STATUS_LABELS[s])
                   for s in CASE_STATUSES]
        entries += [(style.WARNING.name(), "circle", False, "将到期"),
                    (style.OVERDUE.name(), "circle", False, "超期"),
                    (style.EMERGENCY.name(), "circle", False, "特急"),
                    (style.ESCALATED.name(), "circle", True, "督办"),
                    ("#cfd6e4", "square", False, "部件 ■ / 事件 ●")]
        entries += [(style.WORKER_STATUS_COLOURS[s], "circle", False,
                     "网格员·" + style.WORKER_STATUS_LABELS[s]) for s in WORKER_STATUSES]
        entries += [(style.WORKER_STATUS_COLOURS["on_duty"], "circle", True, "定位过时")]
        for i, (colour, shape, hollow, text) in enumerate(entries):
            icon = QLabel()
            icon.setPixmap(swatch(colour, shape, hollow=hollow).pixmap(12, 12))
            label = QLabel(tr(text))
            label.setObjectName("legendText")
            grid.addWidget(icon, i // 2, (i % 2) * 2)
            grid.addWidget(label, i // 2, (i % 2) * 2 + 1)
        return box

    def set_scale(self, title: str, breaks: list[float]) -> None:
        """The choropleth's classes under the legend: "0 · ≤1 · ≤3 · ≤5 · >5"."""
        if not breaks:
            self.scale_label.setText("")
            return
        parts = ["0"] + [f"≤{b:g}" for b in breaks[1:]] + [f">{breaks[-1]:g}"]
        colours = style.CHOROPLETH[: len(parts)]
        html = " ".join(f"<span style='color:{c.name()}'>■</span>{p}"
                        for c, p in zip(colours, parts, strict=False))
        self.scale_label.setText(f"{tr(title)}：{html}")

    def keys(self) -> list[str]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def set_checked(self, key: str, on: bool) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == key:
                item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def move_current(self, delta: int) -> None:
        row = self.list.currentRow()
        target = row + delta
        if row < 0 or not (0 <= target < self.list.count()):
            return
        self.list.blockSignals(True)
        item = self.list.takeItem(row)
        self.list.insertItem(target, item)
        self.list.setCurrentRow(target)
        self.list.blockSignals(False)
        self.order.emit(self.keys())

    def _item_changed(self, item: QListWidgetItem) -> None:
        self.visibility.emit(item.data(Qt.ItemDataRole.UserRole),
                             item.checkState() == Qt.CheckState.Checked)
