"""The replay's controls: who and when (beside the map, with the totals table) and the
transport under it (play, pause, step, speed, follow, GPX, the timeline).

The totals table shows, by default, each worker's totals *up to T* — what a duty leader
scrubbing to 16:00 asks ("how far had each gone by then, who had stood where"), and the
same moment the map shows; its scope box switches to the whole window (the day's
figures).  Up to T the stops counted are those the map marks at T (standing at least
the set minutes by T).  The table is a model over numpy columns (``TotalsModel``): a
new T changes the columns and the order, and the view draws only the rows in sight;
the refresh is coalesced (``TABLE_MS``), never done on every frame.
"""

from __future__ import annotations

from datetime import datetime, time

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QDateTime,
    QModelIndex,
    Qt,
    QTimer,
    QTimeZone,
    Signal,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateTimeEdit,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QStyle,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from console.i18n import tr
from console.replay_store import SPEEDS, WHO
from db.clock import hall_timezone
from widgets.map.replay_timeline import ReplayTimeline

WHO_LABELS = {"everyone": "所有人", "workers": "网格员（编号，逗号分隔）", "grid": "网格（编码）",
              "street": "街道（编码）"}
COLUMNS = ("网格员", "里程km", "行进", "停留", "最高", "均速", "停点")
COLUMN_TIPS = ("", "里程（公里）", "行进时间（时:分）", "停留时间（时:分）", "最高速度（公里/时）",
               "平均速度（行进中，公里/时）", "停留点（停留≥设定分钟）")
SIDE_WIDTH = 490


def hm(seconds: float) -> str:
    minutes = round(seconds / 60.0)
    return f"{minutes // 60}:{minutes % 60:02d}"


TABLE_MS = 120  # the totals up to T follow T at most this often
SCOPES = (("at_t", "截至T"), ("window", "整个时段"))
_FIELDS = ("distance_m", "moving_s", "stopped_s", "max_kmh", "avg_kmh", "stops")
_DISPLAY, _TIP, _ALIGN, _USER = (int(r.value) for r in (
    Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.TextAlignmentRole,
    Qt.ItemDataRole.UserRole))
_ROLES = frozenset((_DISPLAY, _TIP, _ALIGN, _USER))
_RIGHT = int((Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter).value)


class TotalsModel(QAbstractTableModel):
    """One row per worker: name and the six totals as numpy columns; sorted by numpy."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.device = np.zeros(0, np.int64)
        self.names: list[str] = []
        self.tips: list[str] = []
        self.values = {f: np.zeros(0) for f in _FIELDS}
        self.order = np.zeros(0, np.int64)  # row → index into the columns
        self.sort_column, self.sort_order = 1, Qt.SortOrder.DescendingOrder

    def set_rows(self, device, names, tips, values) -> None:
        """Other workers (a window loaded): the whole table anew."""
        self.beginResetModel()
        self.device = np.asarray(device, np.int64)
        self.names, self.tips = list(names), list(tips)
        self.values = values
        self.order = self._ordered()
        self.endResetModel()

    def set_values(self, values) -> None:
        """The same workers' figures at another T: the columns and the order change; the
        selection follows its worker (persistent indexes moved with the rows)."""
        self.layoutAboutToBeChanged.emit()
        old = self.persistentIndexList()
        at = [self.order[i.row()] if 0 <= i.row() < self.order.size else -1 for i in old]
        self.values = values
        self.order = self._ordered()
        row_of = np.empty(self.order.size, np.int64)
        row_of[self.order] = np.arange(self.order.size)
        self.changePersistentIndexList(old, [self.index(int(row_of[k]), i.column())
                                             if k >= 0 else QModelIndex()
                                             for i, k in zip(old, at, strict=True)])
        self.layoutChanged.emit()

    def _ordered(self) -> np.ndarray:
        n = self.device.size
        if self.sort_column == 0:
            keys = sorted(range(n), key=lambda k: self.names[k])
            order = np.asarray(keys, np.int64)
        else:
            v = self.values[_FIELDS[self.sort_column - 1]]
            order = np.argsort(np.nan_to_num(v, nan=-1.0), kind="stable")
        if self.sort_order == Qt.SortOrder.DescendingOrder:
            order = order[::-1]
        return np.ascontiguousarray(order, np.int64)

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        self.sort_column, self.sort_order = int(column), order
        if self.device.size:
            self.set_values(self.values)

    def rowCount(self, parent=None) -> int:
        return 0 if parent is not None and parent.isValid() else int(self.device.size)

    def columnCount(self, parent=None) -> int:
        return 0 if parent is not None and parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return tr(COLUMNS[section])
        if role == Qt.ItemDataRole.ToolTipRole and COLUMN_TIPS[section]:
            return tr(COLUMN_TIPS[section])
        return None

    def text(self, row: int, column: int) -> str:
        k = int(self.order[row])
        if column == 0:
            return self.names[k]
        v = float(self.values[_FIELDS[column - 1]][k])
        if column == 1:
            return f"{v / 1000:.2f}"
        if column in (2, 3):
            return hm(v)
        if column == 6:
            return str(int(v))
        return "—" if not np.isfinite(v) else f"{v:.1f}"

    def data(self, index, role=_DISPLAY):
        # The view asks seven roles of every cell in sight at every refresh: the ones
        # not answered leave at once, compared as plain ints.
        role = int(role)
        if role not in _ROLES or not index.isValid():
            return None
        row, column = index.row(), index.column()
        if role == _DISPLAY:
            return self.text(row, column)
        if role == _USER:
            return int(self.device[self.order[row]])
        if role == _TIP:
            return self.tips[int(self.order[row])] if column == 0 else None
        return _RIGHT if column else None


class ReplaySide(QFrame):
    """Who and when, the stop threshold, and the per-worker totals.

    ``load_asked(datetime, datetime, who, value, stop_min_s)``, ``stop_min(float)``,
    ``worker_chosen(int)`` (a row of the table).
    """

    load_asked = Signal(object, object, str, object, float)
    stop_min = Signal(float)
    worker_chosen = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("replaySide")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setFixedWidth(SIDE_WIDTH)
        self._zone = QTimeZone(hall_timezone().key.encode())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.addWidget(QLabel(f"<b>{tr('轨迹回放')}</b>"))
        form = QFormLayout()
        self.who = QComboBox()
        self.who.setObjectName("replayWho")
        for key in WHO:
            self.who.addItem(tr(WHO_LABELS[key]), key)
        self.value = QLineEdit()
        self.value.setObjectName("replayWhoValue")
        self.value.setPlaceholderText(tr("编号或编码"))
        self.value.setEnabled(False)
        self.who.currentIndexChanged.connect(
            lambda _i: self.value.setEnabled(self.who.currentData() != "everyone"))
        form.addRow(tr("回放对象"), self.who)
        form.addRow("", self.value)
        self.start = QDateTimeEdit()
        self.end = QDateTimeEdit()
        for edit, name in ((self.start, "replayFrom"), (self.end, "replayTo")):
            edit.setObjectName(name)
            edit.setDisplayFormat("yyyy-MM-dd HH:mm")
            edit.setCalendarPopup(True)
            edit.setTimeZone(self._zone)  # the hall's clock, whatever the workstation's
        form.addRow(tr("从"), self.start)
        form.addRow(tr("到"), self.end)
        self.stop_spin = QSpinBox()
        self.stop_spin.setObjectName("replayStopMinutes")
        self.stop_spin.setRange(1, 240)
        self.stop_spin.setValue(5)
        self.stop_spin.setSuffix(" " + tr("分钟"))
        self.stop_spin.valueChanged.connect(lambda m: self.stop_min.emit(m * 60.0))
        form.addRow(tr("停留≥"), self.stop_spin)
        layout.addLayout(form)
        self.load_button = QPushButton(tr("加载回放"))
        self.load_button.setObjectName("replayLoad")
        self.load_button.clicked.connect(self.ask_load)
        layout.addWidget(self.load_button)
        self.status = QLabel("")
        self.status.setObjectName("replayStatus")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.model = TotalsModel(self)
        self.table = QTableView()
        self.table.setObjectName("replayTotals")
        self.table.setModel(self.model)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.setWordWrap(False)  # a number per cell: no text layout to wrap it
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        # Widths once per window (ResizeToContents would measure every row at every T).
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(1, Qt.SortOrder.DescendingOrder)  # the longest way first
        self.table.clicked.connect(lambda index: self._row_clicked(index.row(), index.column()))
        self.scope = QComboBox()
        self.scope.setObjectName("replayTotalsScope")
        for key, label in SCOPES:
            self.scope.addItem(tr(label), key)
        self.scope.setToolTip(tr("截至T：到回放时刻为止的合计；整个时段：所选时段的合计"))
        self.scope.currentIndexChanged.connect(lambda _i: self.refresh_totals())
        self.caption = QLabel("")
        self.caption.setObjectName("replayTotalsCaption")
        head = QHBoxLayout()
        head.addWidget(self.caption, 1)
        head.addWidget(self.scope)
        layout.addLayout(head)
        layout.addWidget(self.table, 1)
        self.data = None
        self.t: float | None = None
        self._table_timer = QTimer(self, singleShot=True, interval=TABLE_MS)
        self._table_timer.timeout.connect(self.refresh_totals)
        self.set_today()

    def set_today(self, now: datetime | None = None) -> None:
        """The default window: today so far (the hall's day)."""
        tz = hall_timezone()
        now = (now or datetime.now(tz)).astimezone(tz)
        self.set_window(datetime.combine(now.date(), time(), tz), now)

    def set_window(self, t0: datetime, t1: datetime) -> None:
        self.start.setDateTime(QDateTime.fromSecsSinceEpoch(int(t0.timestamp()), self._zone))
        self.end.setDateTime(QDateTime.fromSecsSinceEpoch(round(t1.timestamp()), self._zone))

    def window(self) -> tuple[datetime, datetime]:
        tz = hall_timezone()
        return (datetime.fromtimestamp(self.start.dateTime().toSecsSinceEpoch(), tz),
                datetime.fromtimestamp(self.end.dateTime().toSecsSinceEpoch(), tz))

    def ask_load(self) -> None:
        t0, t1 = self.window()
        who = self.who.currentData()
        text = self.value.text().strip()
        value = None if who == "everyone" else (
            [v.strip() for v in text.split(",") if v.strip()] if who == "workers" else text)
        self.load_asked.emit(t0, t1, who, value, self.stop_spin.value() * 60.0)

    def show_totals(self, data) -> None:
        """One row per worker replayed (sorted by distance, the longest first), the totals
        of the scope chosen: up to T, or the whole window."""
        self.data = data
        devices = sorted(data.totals)
        names, tips = [], []
        for device in devices:
            meta = data.meta.get(device, {})
            names.append(meta.get("name") or meta.get("code") or str(device))
            tips.append(f"{meta.get('code') or ''}\n{tr('网格')} {meta.get('grid_code') or '—'}"
                        f" {meta.get('grid_name') or ''}")
        dev = np.asarray(devices, np.int64)
        whole = {f: np.zeros(dev.size) for f in _FIELDS}
        starts, owner = [], []
        for k, device in enumerate(devices):
            trip = data.totals[device]
            for f in _FIELDS[:4]:
                whole[f][k] = trip[f]
            whole["avg_kmh"][k] = np.nan if trip["avg_kmh"] is None else trip["avg_kmh"]
            whole["stops"][k] = len(trip["stops"])
            starts += [s["start"] for s in trip["stops"]]
            owner += [k] * len(trip["stops"])
        self._whole = whole
        self._stop_start = np.asarray(starts, float)
        self._stop_owner = np.asarray(owner, np.int64)
        self._stop_min_s = float(data.stop_min_s)
        tracks = data.tracks
        self._rank = np.searchsorted(tracks.devices, dev) if tracks.devices.size else dev
        self.model.set_rows(dev, names, tips, self._values())
        self.table.resizeColumnsToContents()
        self._caption()

    def set_time(self, when: float) -> None:
        """T moved: the totals up to T follow, coalesced (at most every ``TABLE_MS``)."""
        self.t = float(when)
        if self.scope.currentData() == "at_t" and not self._table_timer.isActive():
            self._table_timer.start()

    @property
    def pending(self) -> bool:
        return self._table_timer.isActive()

    def refresh_totals(self) -> None:
        self._table_timer.stop()
        if self.data is None:
            return
        self.model.set_values(self._values())
        self._caption()

    def _values(self) -> dict[str, np.ndarray]:
        data = self.data
        if self.scope.currentData() == "window" or data.progress is None:
            return self._whole
        t = data.t1 if self.t is None else min(max(self.t, data.t0), data.t1)
        at = data.progress.at(t)
        out = {f: at[f][self._rank] for f in _FIELDS[:5]}
        shown = self._stop_start + self._stop_min_s <= t  # as the map marks them at T
        out["stops"] = np.bincount(self._stop_owner[shown], minlength=self._rank.size).astype(
            float)
        return out

    def _caption(self) -> None:
        data = self.data
        tz = hall_timezone()
        a, b = datetime.fromtimestamp(data.t0, tz), datetime.fromtimestamp(data.t1, tz)
        if self.scope.currentData() == "window" or self.t is None:
            self.caption.setText(f"{tr('整个时段合计')} {a:%m-%d %H:%M}–{b:%m-%d %H:%M}")
        else:
            at = datetime.fromtimestamp(min(max(self.t, data.t0), data.t1), tz)
            self.caption.setText(f"{tr('截至')} {at:%H:%M:%S} {tr('合计')}（{tr('自')} "
                                 f"{a:%m-%d %H:%M}）")

    def row_of(self, device: int) -> int:
        """The table row showing ``device`` (-1 when none)."""
        model = self.model
        hit = np.flatnonzero(model.device[model.order] == device) if model.order.size else []
        return int(hit[0]) if len(hit) else -1

    def cell_text(self, row: int, column: int) -> str:
        """What the table shows in a cell (for the tests and the screenshot)."""
        return self.model.text(row, column)

    def select_device(self, device: int | None) -> None:
        row = -1 if device is None else self.row_of(device)
        self.table.blockSignals(True)
        if row >= 0:
            self.table.selectRow(row)
            self.table.scrollTo(self.model.index(row, 0))
        else:
            self.table.clearSelection()
        self.table.blockSignals(False)

    def _row_clicked(self, row: int, _col: int) -> None:
        if 0 <= row < self.model.rowCount():
            self.worker_chosen.emit(int(self.model.device[self.model.order[row]]))


class ReplayBar(QFrame):
    """Play, pause, step, speed, follow, export GPX, leave; the time and the timeline."""

    play_toggled = Signal()
    step = Signal(int)  # -1 back, +1 forward
    speed = Signal(float)
    follow = Signal(bool)
    export_gpx = Signal()
    leave = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("replayBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.setSpacing(2)
        row = QHBoxLayout()
        self.back_button = QToolButton()
        self.back_button.setObjectName("replayStepBack")
        icons = self.style()
        self._play_icon = icons.standardIcon(QStyle.StandardPixmap.SP_MediaPlay)
        self._pause_icon = icons.standardIcon(QStyle.StandardPixmap.SP_MediaPause)
        self.back_button.setIcon(icons.standardIcon(QStyle.StandardPixmap.SP_MediaSkipBackward))
        self.back_button.setToolTip(tr("后退一步"))
        self.play_button = QToolButton()
        self.play_button.setObjectName("replayPlay")
        self.play_button.setIcon(self._play_icon)
        self.play_button.setToolTip(tr("播放 / 暂停"))
        self.step_button = QToolButton()
        self.step_button.setObjectName("replayStep")
        self.step_button.setIcon(icons.standardIcon(QStyle.StandardPixmap.SP_MediaSkipForward))
        self.step_button.setToolTip(tr("前进一步"))
        self.back_button.clicked.connect(lambda: self.step.emit(-1))
        self.play_button.clicked.connect(self.play_toggled.emit)
        self.step_button.clicked.connect(lambda: self.step.emit(1))
        self.speed_combo = QComboBox()
        self.speed_combo.setObjectName("replaySpeed")
        for s in SPEEDS:
            self.speed_combo.addItem(f"{s}×", float(s))
        self.speed_combo.currentIndexChanged.connect(
            lambda _i: self.speed.emit(self.speed_combo.currentData()))
        self.time_label = QLabel("")
        self.time_label.setObjectName("replayTime")
        self.follow_box = QCheckBox(tr("跟随所选"))
        self.follow_box.setObjectName("replayFollow")
        self.follow_box.setChecked(True)
        self.follow_box.toggled.connect(self.follow.emit)
        self.gpx_button = QPushButton(tr("导出 GPX"))
        self.gpx_button.setObjectName("replayGpx")
        self.gpx_button.setEnabled(False)
        self.gpx_button.clicked.connect(self.export_gpx.emit)
        self.leave_button = QPushButton(tr("返回实时"))
        self.leave_button.setObjectName("replayLeave")
        self.leave_button.clicked.connect(self.leave.emit)
        for w in (self.back_button, self.play_button, self.step_button, self.speed_combo):
            row.addWidget(w)
        row.addWidget(self.time_label, 1)
        for w in (self.follow_box, self.gpx_button, self.leave_button):
            row.addWidget(w)
        layout.addLayout(row)
        self.timeline = ReplayTimeline()
        layout.addWidget(self.timeline)

    def set_playing(self, playing: bool) -> None:
        self.play_button.setIcon(self._pause_icon if playing else self._play_icon)

    def set_time_text(self, when: float, t0: float, t1: float) -> None:
        tz = hall_timezone()
        at = datetime.fromtimestamp(when, tz)
        a, b = datetime.fromtimestamp(t0, tz), datetime.fromtimestamp(t1, tz)
        self.time_label.setText(f"<b>{at:%Y-%m-%d %H:%M:%S}</b>  "
                                f"{tr('时段')} {a:%m-%d %H:%M}–{b:%m-%d %H:%M}")
