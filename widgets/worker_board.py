"""The worker board (网格员): the roster by street, community and grid with derived status.

Observes ``console.worker_board.WorkerBoardStore`` (no SQL here); items are built once per
worker and updated in place on each refresh, so a district's 7,700 roster rows do not
rebuild the tree every 15 s.  A click on a worker with a terminal asks the map to show
and follow them (``show_on_map``).  The duty schedule decides who is off duty, so it is
shown per worker; an administrator edits it from here (``ScheduleDialog``, through
``db.field.set_schedule`` on a pool thread — the database checks the role again), other
roles are not offered the button.  ``patrol_requested`` asks the window for the patrol
panel.
"""

from __future__ import annotations

from datetime import time

from PySide6.QtCore import Qt, QTime, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTimeEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from console.i18n import tr
from console.tasks import run_in_thread
from console.worker_board import WorkerBoardStore
from db.errors import GridError
from db.field import DutySchedule, schedule_of
from db.users import Actor

ROLE_NAMES = {"instructor": "网格指导员", "grid_leader": "网格长", "full_time": "专职网格员",
              "part_time": "兼职网格员"}
STATUS_NAMES = {"on_duty": "在岗", "patrolling": "巡查中", "handling": "处置中",
                "off_duty": "下班", "offline": "离线"}
STATUS_COLOURS = {"on_duty": "#2e7d32", "patrolling": "#1565c0", "handling": "#ef6c00",
                  "off_duty": "#757575", "offline": "#9e9e9e"}
ALERT_NAMES = {"left_grid": "离开网格", "offline_on_duty": "在岗离线", "no_patrol": "未巡查"}
COLUMNS = ["姓名", "角色", "状态", "最后定位", "电量", "今日巡查", "覆盖率", "告警", "值班"]
WORKER_ROLE = Qt.ItemDataRole.UserRole
WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")


def schedule_text(schedule: DutySchedule | None) -> str:
    """``一至五 08:30–17:30`` (or ``一、三、五 …``); ``—`` without a schedule (the roster's
    status decides)."""
    if schedule is None:
        return "—"
    days = sorted(schedule.days)
    names = [tr(WEEKDAYS[d - 1]) for d in days]
    if len(days) > 2 and days == list(range(days[0], days[-1] + 1)):
        text = f"{names[0]}{tr('至')}{names[-1]}"
    else:
        text = "、".join(names)
    return f"{text} {schedule.start:%H:%M}–{schedule.end:%H:%M}"


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return tr("{n} 秒前").format(n=int(seconds))
    if seconds < 3600:
        return tr("{n} 分钟前").format(n=int(seconds // 60))
    return tr("{n} 小时前").format(n=int(seconds // 3600))


class WorkerBoard(QWidget):
    show_on_map = Signal(int)  # a device id
    patrol_requested = Signal()  # 巡查统计: the window brings the patrol panel forward

    def __init__(self, store: WorkerBoardStore, parent: QWidget | None = None,
                 actor: Actor | None = None, lang: str = "zh"):
        super().__init__(parent)
        self.store = store
        self.actor = actor
        self.lang = lang
        self.dialog: ScheduleDialog | None = None
        self.search = QLineEdit(placeholderText=tr("搜索姓名、编号、网格"))
        self.status_filter = QComboBox()
        self.status_filter.addItem(tr("全部状态"), "")
        for key, name in STATUS_NAMES.items():
            self.status_filter.addItem(tr(name), key)
        self.status_filter.addItem(tr("有告警"), "alert")
        self.summary = QLabel()
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels([tr(c) for c in COLUMNS])
        self.tree.setUniformRowHeights(True)
        self._sized = False  # columns are measured once the style sheet's font applies
        self.patrol_button = QPushButton(tr("巡查统计"))
        self.patrol_button.setToolTip(tr("按日统计巡查段、覆盖率与达标情况"))
        self.patrol_button.clicked.connect(self.patrol_requested)
        # Only an administrator edits duty schedules: no one else is offered the button.
        self.schedule_button: QPushButton | None = None
        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.status_filter)
        top.addWidget(self.summary)
        top.addWidget(self.patrol_button)
        if actor is not None and actor.role == "admin":
            self.schedule_button = QPushButton(tr("值班表…"))
            self.schedule_button.setObjectName("scheduleButton")
            self.schedule_button.setEnabled(False)
            self.schedule_button.clicked.connect(self.edit_schedule)
            top.addWidget(self.schedule_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(top)
        lay.addWidget(self.tree)
        self._items: dict[int, QTreeWidgetItem] = {}
        self._groups: dict[str, QTreeWidgetItem] = {}
        self.search.textChanged.connect(self._apply_filter)
        self.status_filter.currentIndexChanged.connect(self._apply_filter)
        self.tree.itemClicked.connect(self._clicked)
        self.tree.currentItemChanged.connect(self._current_changed)
        store.changed.connect(self._update)
        if store.rows:
            self._update()

    # -- building ----------------------------------------------------------------------

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._sized:
            self._sized = True
            self._size_columns()

    def _size_columns(self) -> None:
        """Each column as wide as its widest usual text (measured, not fitted to the rows:
        fitting 7,700 rows on every refresh would cost the GUI thread)."""
        samples = ["王一二 110101001001001-FU01", tr("专职网格员"), tr("巡查中"),
                   tr("{n} 分钟前").format(n=59), "100%", tr("{n} 分钟").format(n=120), "100%",
                   f"{tr('离开网格')}、{tr('未巡查')}", "周一至周五 08:30–17:30"]
        fm = self.tree.fontMetrics()
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, (head, sample) in enumerate(zip(COLUMNS, samples, strict=True)):
            indent = self.tree.indentation() * 4 if col == 0 else 0
            self.tree.setColumnWidth(col, indent + 18 + max(fm.horizontalAdvance(tr(head)),
                                                             fm.horizontalAdvance(sample)))

    def expand_first(self) -> None:
        """Open the first street down to its workers (a board that opens all folded shows
        only street names)."""
        if self.tree.topLevelItemCount():
            first = self.tree.topLevelItem(0)
            first.setExpanded(True)
            for i in range(first.childCount()):
                first.child(i).setExpanded(True)
                for j in range(first.child(i).childCount()):
                    first.child(i).child(j).setExpanded(True)

    def _group(self, key: str, label: str, parent: QTreeWidgetItem | None) -> QTreeWidgetItem:
        item = self._groups.get(key)
        if item is None:
            item = QTreeWidgetItem([label])
            if parent is None:
                self.tree.addTopLevelItem(item)
            else:
                parent.addChild(item)
            self._groups[key] = item
        return item

    def _update(self) -> None:
        counts: dict[str, int] = {}
        for r in self.store.rows:
            item = self._items.get(r["worker_id"])
            if item is None:
                street = self._group(f"s{r['street_code']}", r["street_name"] or tr("未分配"),
                                     None)
                community = self._group(f"c{r['community_code']}",
                                        r["community_name"] or "—", street)
                grid = self._group(f"g{r['grid_code']}",
                                   f"{r['grid_name'] or '—'} {r['grid_code'] or ''}", community)
                item = QTreeWidgetItem()
                grid.addChild(item)
                self._items[r["worker_id"]] = item
            st = r["state"]
            counts[st.status] = counts.get(st.status, 0) + 1
            battery = r.get("battery")
            cov = r.get("coverage")
            minutes = r.get("patrol_minutes")
            texts = [f"{r['name']} {r['code']}", tr(ROLE_NAMES.get(r["roster_role"],
                                                                   r["roster_role"])),
                     tr(STATUS_NAMES[st.status]),
                     age_text(st.fix_age_s) if r.get("device_id") else "",
                     f"{battery:.0f}%" if battery is not None else "",
                     tr("{n} 分钟").format(n=round(minutes)) if minutes is not None else "",
                     f"{cov:.0%}" if cov is not None else "",
                     "、".join(tr(ALERT_NAMES[a]) for a in st.alerts),
                     schedule_text(schedule_of(r))]
            for col, value in enumerate(texts):
                if item.text(col) != value:
                    item.setText(col, value)
            item.setForeground(2, QBrush(QColor(STATUS_COLOURS[st.status])))
            item.setData(0, WORKER_ROLE, r)
        self.summary.setText("  ".join(f"{tr(STATUS_NAMES[k])} {counts.get(k, 0)}"
                                       for k in STATUS_NAMES))
        self._apply_filter()

    # -- filtering and clicks ----------------------------------------------------------

    def matches(self, r: dict) -> bool:
        want = self.status_filter.currentData()
        st = r["state"]
        if want == "alert" and not st.alerts:
            return False
        if want and want != "alert" and st.status != want:
            return False
        text = self.search.text().strip().lower()
        if text:
            hay = " ".join(str(r.get(k) or "") for k in (
                "name", "code", "grid_code", "grid_name", "community_name", "street_name"))
            return text in hay.lower()
        return True

    def visible_workers(self) -> list[str]:
        """Codes of the workers the filter shows (what an operator sees listed)."""
        return [item.data(0, WORKER_ROLE)["code"] for item in self._items.values()
                if not item.isHidden()]

    def _apply_filter(self) -> None:
        for item in self._items.values():
            item.setHidden(not self.matches(item.data(0, WORKER_ROLE)))
        for item in self._groups.values():  # groups with nothing shown are hidden
            item.setHidden(False)
        for item in sorted(self._groups.values(), key=_depth, reverse=True):
            item.setHidden(all(item.child(i).isHidden() for i in range(item.childCount())))
        if self.search.text().strip() or self.status_filter.currentData():
            self.tree.expandAll()

    def _clicked(self, item: QTreeWidgetItem, column: int) -> None:
        r = item.data(0, WORKER_ROLE)
        if r and r.get("device_id") and r.get("ts") is not None:
            self.show_on_map.emit(int(r["device_id"]))

    def selected_worker(self) -> dict | None:
        item = self.tree.currentItem()
        return item.data(0, WORKER_ROLE) if item is not None else None

    def select_worker(self, code: str) -> bool:
        """Make ``code`` the current row (as a click would, without following it)."""
        for item in self._items.values():
            if item.data(0, WORKER_ROLE)["code"] == code:
                self.tree.setCurrentItem(item)
                return True
        return False

    def _current_changed(self, current, _previous) -> None:
        if self.schedule_button is not None:
            ok = current is not None and current.data(0, WORKER_ROLE) is not None
            self.schedule_button.setEnabled(ok)

    def edit_schedule(self) -> None:
        """The selected worker's duty schedule in a dialog (administrators only)."""
        row = self.selected_worker()
        if row is None or self.schedule_button is None:
            return
        self.dialog = ScheduleDialog(self.store.engine, self.actor, row, self.lang, self)
        self.dialog.saved.connect(lambda: self.store.refresh(patrol=True))
        self.dialog.open()


class ScheduleDialog(QDialog):
    """One worker's duty days and hours; saved by ``db.field.set_schedule`` off the GUI
    thread.  The database decides who may (``grid_duty_schedule_set``): a refusal or a bad
    value is one line in the dialog, and nothing changes."""

    saved = Signal()

    def __init__(self, engine, actor: Actor | None, row: dict, lang: str = "zh",
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.engine, self.actor, self.row, self.lang = engine, actor, row, lang
        self.setWindowTitle(f"{tr('值班表')} — {row['name']} {row['code']}")
        current = schedule_of(row)
        self.days: list[QCheckBox] = []
        days = QHBoxLayout()
        for i, name in enumerate(WEEKDAYS, start=1):
            box = QCheckBox(tr(name))
            box.setChecked(current is not None and i in current.days)
            self.days.append(box)
            days.addWidget(box)
        start = current.start if current else time(8, 30)
        end = current.end if current else time(17, 30)
        self.start = QTimeEdit(QTime(start.hour, start.minute))
        self.end = QTimeEdit(QTime(end.hour, end.minute))
        for edit in (self.start, self.end):
            edit.setDisplayFormat("HH:mm")
        self.clear_box = QCheckBox(tr("不设值班表（按花名册状态）"))
        self.clear_box.setChecked(current is None)
        self.clear_box.toggled.connect(self._clear_toggled)
        self.error = QLabel()
        self.error.setObjectName("scheduleError")
        self.error.setStyleSheet("color: #e53935")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow(tr("值班日"), days)
        hours = QHBoxLayout()
        hours.addWidget(self.start)
        hours.addWidget(QLabel("–"))
        hours.addWidget(self.end)
        hours.addStretch(1)
        form.addRow(tr("值班时间"), hours)
        form.addRow(tr("下班时间早于上班时间：跨过午夜"), QWidget())
        form.addRow(self.clear_box)
        form.addRow(self.error)
        form.addRow(self.buttons)
        self._clear_toggled(self.clear_box.isChecked())

    def _clear_toggled(self, clear: bool) -> None:
        for w in (*self.days, self.start, self.end):
            w.setEnabled(not clear)

    def chosen(self) -> tuple[list[int] | None, time | None, time | None]:
        """What the form says: (days, start, end), or (None, None, None) to clear."""
        if self.clear_box.isChecked():
            return None, None, None
        days = [i for i, box in enumerate(self.days, start=1) if box.isChecked()]
        return days, self.start.time().toPython(), self.end.time().toPython()

    def submit(self) -> None:
        from db.errors import BadInput
        from db.field import set_schedule

        days, start, end = self.chosen()
        if days is not None and not days:
            self.failed(BadInput("请至少选择一个值班日。", "Choose at least one duty day."))
            return
        if days is not None and start == end:
            self.failed(BadInput("上班与下班时间不能相同。",
                                 "The duty hours cannot start and end at the same time."))
            return
        self.error.setText("")
        self.buttons.setEnabled(False)
        engine, actor, code = self.engine, self.actor, self.row["code"]
        run_in_thread(lambda: set_schedule(engine, actor, code, days, start, end),
                      self._done, self.failed, context=self)

    def _done(self, _result) -> None:
        self.buttons.setEnabled(True)
        self.saved.emit()
        self.accept()

    def failed(self, exc: Exception) -> None:
        self.buttons.setEnabled(True)
        text = exc.message(self.lang) if isinstance(exc, GridError) else str(exc)
        self.error.setText(text.splitlines()[0] if text else tr("保存失败"))


def _depth(item: QTreeWidgetItem) -> int:
    d = 0
    while item.parent() is not None:
        item = item.parent()
        d += 1
    return d
