"""巡查统计: patrol compliance per worker and day for a period and a street.

What ``patrol report`` prints, on screen: ``db.field.patrol_report`` read on a pool
thread (this module holds no SQL), one row per worker-day with the sessions, their
total, the coverage of the own grid, the time outside it and whether the day meets the
rule; the worker's compliance over the period (weeks of ``days_per_week`` complying
days) beside it.  A required day that does not comply is marked red, so a duty leader
sorting by anything still sees who is behind; a click on a row lists that day's
sessions.  The rule is the seeds' (daily by default, 全科网格 on choice) and every
number of it can be changed.  The workbook is written off the GUI thread
(``console.patrol_export``).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from PySide6.QtCore import (
    QAbstractTableModel,
    QDate,
    QModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from console.i18n import tr
from console.tasks import run_in_thread
from db.clock import hall_timezone
from db.engine import Engine
from db.errors import GridError
from maps.patrol import RULES, PatrolRule
from widgets.worker_board import WEEKDAYS

log = logging.getLogger(__name__)

RULE_NAMES = {"daily": "每日巡查", "quanke": "全科网格"}
# The verdicts next to the names, so a narrow dock still shows who is behind.
COLUMNS = ["姓名", "网格", "日期", "当日", "周期达标", "巡查段", "巡查次数", "巡查分钟", "覆盖率",
           "网格外分钟"]
(COL_WORKER, COL_GRID, COL_DATE, COL_DAY, COL_PERIOD, COL_SESSIONS, COL_PATROLS, COL_MINUTES,
 COL_COVERAGE, COL_OUTSIDE) = range(len(COLUMNS))
SORT_ROLE = Qt.ItemDataRole.UserRole
MISSED_ROLE = Qt.ItemDataRole.UserRole + 1  # True on a required day that does not comply
MISSED = QColor("#e53935")
OPEN = QColor("#ef8c00")  # today, not met yet: a warning, not a miss


def this_week(today: date) -> tuple[date, date]:
    """Monday of ``today``'s week and ``today`` (both shown): the week so far, so that days
    still to come are not counted as missed."""
    return today - timedelta(days=today.weekday()), today


def hall_today() -> date:
    return datetime.now(hall_timezone()).date()


def day_state(day: dict, today: date | None = None) -> str:
    """``ok`` (a required day that complies), ``missed`` (required, does not), ``free``
    (not a duty day), ``open`` (today, not met yet) or ``future`` (not come yet)."""
    when = date.fromisoformat(day["date"])
    today = today or hall_today()
    if when > today:
        return "future"
    if not day["required"]:
        return "free"
    if day["compliant"]:
        return "ok"
    return "open" if when == today else "missed"


class PatrolModel(QAbstractTableModel):
    """One row per (worker, day) of a ``patrol_report``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[tuple[dict, dict]] = []
        self.today = hall_today()

    def set_report(self, report: dict | None, today: date | None = None) -> None:
        self.beginResetModel()
        self.today = today or hall_today()
        self.rows = [(w, d) for w in (report or {}).get("workers", []) for d in w["days"]]
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return tr(COLUMNS[section])
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        w, d = self.rows[index.row()]
        col = index.column()
        state = day_state(d, self.today)
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(w, d, col, state)
        if role == SORT_ROLE:
            return self._key(w, d, col, state)
        if role == MISSED_ROLE:
            return state == "missed"
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == COL_DAY and state in ("missed", "open"):
                return QBrush(MISSED if state == "missed" else OPEN)
            if col == COL_PERIOD and not w["compliant"]:
                return QBrush(MISSED)
            return None
        if role == Qt.ItemDataRole.BackgroundRole and state == "missed":
            return QBrush(QColor(229, 57, 53, 40))
        if role == Qt.ItemDataRole.TextAlignmentRole and col >= COL_DAY:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter) \
                if col >= COL_SESSIONS else int(Qt.AlignmentFlag.AlignCenter)
        if role == Qt.ItemDataRole.ToolTipRole and col == COL_WORKER:
            return f"{w['name']} {w['worker']}"
        if role == Qt.ItemDataRole.ToolTipRole and col == COL_COVERAGE:
            return tr("到访 {n}/{m} 个单元网格").format(n=d["cells_visited"], m=d["cells"])
        return None

    @staticmethod
    def _text(w: dict, d: dict, col: int, state: str) -> str:
        if col == COL_WORKER:
            return w["name"]
        if col == COL_GRID:
            return w["grid"] or ""
        if col == COL_DATE:
            day = date.fromisoformat(d["date"])
            return f"{d['date'][5:]} {tr(WEEKDAYS[day.weekday()])}"
        if col == COL_SESSIONS:
            return str(len(d["sessions"]))
        if col == COL_PATROLS:
            return str(d["patrols"])
        if col == COL_MINUTES:
            return f"{d['patrol_minutes']:.0f}"
        if col == COL_COVERAGE:
            return "—" if d["coverage"] is None else f"{d['coverage']:.0%}"
        if col == COL_OUTSIDE:
            return f"{d['outside_minutes']:.0f}"
        if col == COL_DAY:
            return {"ok": tr("✓ 达标"), "missed": tr("✗ 未达标"), "free": tr("休息"),
                    "open": tr("今日进行中"), "future": tr("未到")}[state]
        mark = "✓" if w["compliant"] else "✗"
        return f"{mark} {w['compliant_days']}/{w['required_days']}"

    @staticmethod
    def _key(w: dict, d: dict, col: int, state: str):
        if col == COL_WORKER:
            return w["worker"]
        if col == COL_GRID:
            return w["grid"] or ""
        if col == COL_DATE:
            return d["date"] + w["worker"]
        if col == COL_SESSIONS:
            return len(d["sessions"])
        if col == COL_PATROLS:
            return d["patrols"]
        if col == COL_MINUTES:
            return d["patrol_minutes"]
        if col == COL_COVERAGE:
            return -1.0 if d["coverage"] is None else d["coverage"]
        if col == COL_OUTSIDE:
            return d["outside_minutes"]
        if col == COL_DAY:
            return {"missed": 0, "open": 1, "ok": 2, "free": 3, "future": 4}[state]
        return (int(w["compliant"]), w["compliant_days"] - w["required_days"])


class PatrolFilter(QSortFilterProxyModel):
    """Sorts by the numbers behind the texts; keeps the missed days only, or a search."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.missed_only = False
        self.text = ""

    def set_filter(self, missed_only: bool, text: str) -> None:
        self.missed_only, self.text = missed_only, text.strip().lower()
        self.invalidateRowsFilter()

    def filterAcceptsRow(self, row: int, parent: QModelIndex) -> bool:
        model: PatrolModel = self.sourceModel()
        w, d = model.rows[row]
        if self.missed_only and day_state(d, model.today) != "missed":
            return False
        if self.text:
            hay = f"{w['worker']} {w['name']} {w['grid'] or ''} {w['community'] or ''}".lower()
            return self.text in hay
        return True


class PatrolPanel(QWidget):
    """The patrol report of a period and street, per worker-day; ``message`` for the bar."""

    loaded = Signal()
    exported = Signal(str)
    message = Signal(str)

    def __init__(self, engine: Engine, lang: str = "zh", parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("patrolPanel")
        self.engine = engine
        self.lang = lang
        self.report: dict | None = None
        self.is_loaded = False
        self._loading = False
        self._again = False
        self._streets_read = False
        self._build()

    # -- construction --------------------------------------------------------------------

    def _build(self) -> None:
        first, last = this_week(hall_today())
        self.from_edit = self._date(first)
        self.to_edit = self._date(last)
        self.street_combo = QComboBox()
        self.street_combo.addItem(tr("全部街道"), None)
        self.street_combo.setMinimumContentsLength(8)
        self.rule_combo = QComboBox()
        for key, name in RULE_NAMES.items():
            self.rule_combo.addItem(tr(name), key)
        self.min_patrols = QSpinBox(minimum=0, maximum=20)
        self.min_patrols.setSuffix(tr(" 次"))
        self.min_minutes = QDoubleSpinBox(minimum=0, maximum=1440, decimals=0)
        self.min_minutes.setSuffix(tr(" 分钟"))
        self.days_per_week = QSpinBox(minimum=0, maximum=7)
        self.days_per_week.setSuffix(tr(" 天/周"))
        self.refresh_button = QPushButton(tr("刷新"))
        self.xlsx_button = QPushButton(tr("导出 XLSX"))
        self.xlsx_button.setEnabled(False)
        self.missed_box = QCheckBox(tr("只看未达标"))
        self.search = QLineEdit(placeholderText=tr("搜索姓名、编号、网格"))
        self.status_label = QLabel()
        self.summary_label = QLabel()

        top = QHBoxLayout()
        top.addWidget(QLabel(tr("日期")))
        top.addWidget(self.from_edit)
        top.addWidget(QLabel("–"))
        top.addWidget(self.to_edit)
        top.addWidget(self.street_combo)
        top.addSpacing(6)
        top.addWidget(QLabel(tr("规则")))
        top.addWidget(self.rule_combo)
        top.addWidget(self.min_patrols)
        top.addWidget(self.min_minutes)
        top.addWidget(self.days_per_week)
        top.addWidget(self.refresh_button)
        top.addStretch(1)
        top.addWidget(self.xlsx_button)
        second = QHBoxLayout()
        second.addWidget(self.search, 1)
        second.addWidget(self.missed_box)
        second.addWidget(self.summary_label)
        second.addStretch(1)
        second.addWidget(self.status_label)

        self.model = PatrolModel(self)
        self.proxy = PatrolFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setObjectName("patrolTable")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COL_DAY, Qt.SortOrder.AscendingOrder)  # the missed days first
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self._sized = False  # columns are measured once the style sheet's font applies
        self.table.selectionModel().currentRowChanged.connect(lambda cur, _prev:
                                                              self._show_sessions(cur))
        self.sessions_title = QLabel(tr("点击一行查看当日巡查段"))
        self.sessions_title.setWordWrap(True)
        self.sessions = QTableWidget(0, 3)
        self.sessions.setObjectName("patrolSessions")
        self.sessions.setHorizontalHeaderLabels([tr("开始"), tr("结束"), tr("分钟")])
        self.sessions.verticalHeader().hide()
        self.sessions.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.sessions.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(self.sessions_title)
        rv.addWidget(self.sessions, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(right)
        split.setStretchFactor(0, 5)
        split.setStretchFactor(1, 1)
        right.setMinimumWidth(150)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(top)
        lay.addLayout(second)
        lay.addWidget(split, 1)

        self._set_rule_fields(RULES["daily"])
        self.rule_combo.currentIndexChanged.connect(self._rule_changed)
        for w in (self.from_edit, self.to_edit):
            w.dateChanged.connect(lambda _d: self.reload())
        self.street_combo.currentIndexChanged.connect(lambda _i: self.reload())
        for w in (self.min_patrols, self.days_per_week):
            w.valueChanged.connect(lambda _v: self.reload())
        self.min_minutes.valueChanged.connect(lambda _v: self.reload())
        self.refresh_button.clicked.connect(self.reload)
        self.xlsx_button.clicked.connect(self._ask_export)
        self.missed_box.toggled.connect(self._apply_filter)
        self.search.textChanged.connect(self._apply_filter)

    @staticmethod
    def _date(d: date) -> QDateEdit:
        e = QDateEdit(QDate(d.year, d.month, d.day))
        e.setCalendarPopup(True)
        e.setDisplayFormat("yyyy-MM-dd")
        return e

    def _set_rule_fields(self, rule: PatrolRule) -> None:
        for w, value in ((self.min_patrols, rule.min_patrols),
                         (self.min_minutes, rule.min_minutes),
                         (self.days_per_week, rule.days_per_week)):
            w.blockSignals(True)
            w.setValue(value)
            w.blockSignals(False)

    def _rule_changed(self, *_args) -> None:
        self._set_rule_fields(RULES[self.rule_combo.currentData()])
        self.reload()

    # -- what is asked -------------------------------------------------------------------

    def period(self) -> tuple[date, date]:
        """[first, last + 1): the dates shown are both included."""
        return (self.from_edit.date().toPython(),
                self.to_edit.date().toPython() + timedelta(days=1))

    def set_period(self, first: date, last: date) -> None:
        """Show ``first``..``last`` (both included) and read it."""
        for w, d in ((self.from_edit, first), (self.to_edit, last)):
            w.blockSignals(True)
            w.setDate(QDate(d.year, d.month, d.day))
            w.blockSignals(False)
        self.reload()

    def rule(self) -> PatrolRule:
        return RULES[self.rule_combo.currentData()].with_changes(
            min_patrols=self.min_patrols.value(), min_minutes=self.min_minutes.value(),
            days_per_week=self.days_per_week.value())

    def street(self) -> str | None:
        return self.street_combo.currentData()

    def set_street(self, code: str | None) -> None:
        i = self.street_combo.findData(code)
        if i < 0:  # the list not read yet (or a street it does not have): add it
            self.street_combo.addItem(code or tr("全部街道"), code)
            i = self.street_combo.count() - 1
        self.street_combo.setCurrentIndex(i)

    # -- loading ---------------------------------------------------------------------------

    def _size_columns(self) -> None:
        """Each column as wide as its header or its widest usual text (measured, not
        fitted to thousands of rows on every read)."""
        fm = self.table.fontMetrics()
        samples = {COL_WORKER: "王一二", COL_GRID: "110101001001001", COL_DATE: "11-30 周一",
                   COL_DAY: tr("今日进行中"), COL_PERIOD: "✗ 10/10", COL_COVERAGE: "100%"}
        for col, head in enumerate(COLUMNS):
            text = max(tr(head), samples.get(col, "0000"), key=fm.horizontalAdvance)
            self.table.setColumnWidth(col, fm.horizontalAdvance(text) + 28)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._sized:
            self._sized = True
            self._size_columns()
        if not self._streets_read:
            self._read_streets()
        if not self.is_loaded and not self._loading:
            self.reload()

    def _read_streets(self) -> None:
        from db.case_queries import queue_choices

        self._streets_read = True
        engine = self.engine
        run_in_thread(lambda: queue_choices(engine)["streets"], self._fill_streets,
                      lambda exc: log.warning("streets not read: %s", exc), context=self)

    def _fill_streets(self, streets: list[dict]) -> None:
        current = self.street()
        self.street_combo.blockSignals(True)
        while self.street_combo.count() > 1:
            self.street_combo.removeItem(1)
        for s in streets:
            self.street_combo.addItem(f"{s['name']}", s["code"])
        i = self.street_combo.findData(current)
        self.street_combo.setCurrentIndex(max(i, 0))
        self.street_combo.blockSignals(False)

    def reload(self) -> None:
        """Read the report of the period, street and rule off the GUI thread (once shown)."""
        if not self.isVisible() and not self.is_loaded:
            return  # a hidden panel costs the console nothing
        if self._loading:
            self._again = True
            return
        from db.field import patrol_report

        (start, end), street, rule, engine = self.period(), self.street(), self.rule(), \
            self.engine
        self._loading = True
        self.status_label.setText(tr("读取中…"))
        run_in_thread(lambda: patrol_report(engine, start, end, street, rule),
                      self._on_loaded, self._on_error, context=self)

    def _on_loaded(self, report: dict) -> None:
        self._loading = False
        if self._again:  # asked for something else meanwhile: show that instead
            self._again = False
            self.reload()
            return
        self.report = report
        self.model.set_report(report)
        self._show_sessions(QModelIndex())
        workers = report["workers"]
        missed = sum(1 for w in workers for d in w["days"]
                     if day_state(d, self.model.today) == "missed")
        behind = sum(1 for w in workers if not w["compliant"])
        self.summary_label.setText(
            tr("{n} 名网格员，{b} 名未达标，{m} 个未达标日").format(
                n=len(workers), b=behind, m=missed))
        last = date.fromisoformat(report["to"]) - timedelta(days=1)
        self.status_label.setText(f"{report['from']} – {last.isoformat()}")
        self.xlsx_button.setEnabled(True)
        self.is_loaded = True
        self.loaded.emit()

    def _on_error(self, exc: Exception) -> None:
        self._loading = False
        self._again = False
        text = exc.message(self.lang) if isinstance(exc, GridError) else tr("读取巡查数据失败")
        if not isinstance(exc, GridError):
            log.warning("patrol report failed: %s", exc)
        self.status_label.setText(text)
        self.message.emit(text)

    # -- showing ---------------------------------------------------------------------------

    def _apply_filter(self, *_args) -> None:
        self.proxy.set_filter(self.missed_box.isChecked(), self.search.text())

    def shown_rows(self) -> list[tuple[dict, dict]]:
        """The (worker, day) pairs in the order the table shows them."""
        return [self.model.rows[self.proxy.mapToSource(self.proxy.index(i, 0)).row()]
                for i in range(self.proxy.rowCount())]

    def row_of(self, worker: str, day: str) -> int:
        """The table row showing ``worker`` on ``day`` (ISO date), or -1."""
        for i, (w, d) in enumerate(self.shown_rows()):
            if w["worker"] == worker and d["date"] == day:
                return i
        return -1

    def _show_sessions(self, index: QModelIndex) -> None:
        self.sessions.setRowCount(0)
        if not index.isValid():
            self.sessions_title.setText(tr("点击一行查看当日巡查段"))
            return
        w, d = self.model.rows[self.proxy.mapToSource(index).row()]
        self.sessions_title.setText(
            tr("{name} {day}：{n} 段，共 {m} 分钟").format(
                name=w["name"], day=d["date"], n=len(d["sessions"]),
                m=f"{d['patrol_minutes']:.0f}"))
        self.sessions.setRowCount(len(d["sessions"]))
        for i, s in enumerate(d["sessions"]):
            for j, text in enumerate((s["start"][11:16], s["end"][11:16],
                                      f"{s['minutes']:.0f}")):
                self.sessions.setItem(i, j, QTableWidgetItem(text))

    # -- export ----------------------------------------------------------------------------

    def _ask_export(self) -> None:
        if self.report is None:
            return
        start, end = self.report["from"], self.report["to"]
        suggested = f"巡查_{start}_{end}.xlsx"
        path, _ = QFileDialog.getSaveFileName(self, tr("导出"), suggested, "*.xlsx")
        if path:
            self.export(path)

    def export(self, path: str) -> None:
        """Write the report on screen as XLSX off the GUI thread; ``exported`` says where."""
        from console.patrol_export import write_xlsx

        report, lang = self.report, self.lang
        if report is None:
            return

        def done(out) -> None:
            text = f"{tr('已导出')} {out}"
            self.status_label.setText(text)
            self.message.emit(text)
            self.exported.emit(str(out))

        run_in_thread(lambda: write_xlsx(report, path, lang), done, self._on_error,
                      context=self)


__all__ = ["PatrolPanel", "day_state", "this_week"]
