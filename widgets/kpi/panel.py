"""综合评价 panel: the metrics of a period, ranked, with trends and the cases behind a number.

Everything shown comes from ``db.metrics`` (read on a worker thread): the district's
figures as tiles, a ranking of the chosen grouping with a bar per group, the daily trend
of the period and the hourly trend of its last day (pyqtgraph).  A double click on a
street opens its communities, on a community its grids (the breadcrumb goes back); a
click on a count (or on a rate: the cases that miss it) asks the window to list those
cases in the queue (``cases_requested``).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import pyqtgraph as pg
from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateEdit,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QStyledItemDelegate,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from console.i18n import tr
from console.tasks import run_in_thread
from db.clock import hall_timezone
from db.engine import Engine
from db.errors import GridError
from db.metrics import (
    ASCENDING,
    COUNTS,
    GROUPING_LABELS,
    HOURS,
    METRIC_LABELS,
    METRICS,
    RATES,
    Period,
    cases_behind,
    report,
    trend,
)
from db.users import Actor

log = logging.getLogger(__name__)

PERIOD_KINDS = [("recent", "近30天"), ("day", "日"), ("week", "周"), ("month", "月"),
                ("quarter", "季"), ("year", "年"), ("custom", "自定义")]
RECENT_DAYS = 30
RANKED = ("street", "community", "grid", "department", "worker")
# Which cases a click on a rate lists: the ones that miss it.
MISSES = {
    "timely_filing": "filed_late",
    "timely_dispatch": "dispatched_late",
    "ontime_handling": "fed_back_late",
    "dispatch_accuracy": "misrouted",
    "rework": "reworked",
    "closure": "due_open",
    "ontime_closure": "closed_late",
}
DRILL_NEXT = {"street": "community", "community": "grid"}
COL_RANK, COL_NAME, COL_BAR = 0, 1, 2
TABLE_METRICS = [*COUNTS, *RATES, *HOURS]


def pick(pair: tuple[str, str]) -> str:
    """The Chinese or English name of a metric or grouping, as the application speaks."""
    from PySide6.QtCore import QCoreApplication

    english = tr("网格指挥调度台") != "网格指挥调度台" if QCoreApplication.instance() else False
    return pair[1] if english else pair[0]


def fmt(name: str, value) -> str:
    """A metric as the panel shows it; 无数据 where a rate has no denominator."""
    if value is None:
        return tr("无数据") if name in RATES or name in HOURS else "—"
    if name in RATES:
        return f"{value * 100:.1f}%"
    if name in HOURS:
        return f"{value:.1f} h"
    return str(value)


class BarDelegate(QStyledItemDelegate):
    """Paints the ranking metric's share of the best value as a bar under its text."""

    def paint(self, painter: QPainter, option, index) -> None:
        share = index.data(Qt.ItemDataRole.UserRole)
        if isinstance(share, float) and share > 0:
            painter.save()
            r = option.rect.adjusted(2, 4, -2, -4)
            r.setWidth(max(1, int(r.width() * min(share, 1.0))))
            painter.fillRect(r, QColor(59, 130, 196, 150))
            painter.restore()
        super().paint(painter, option, index)


class KpiPanel(QWidget):
    """The evaluation for one period and grouping; ``cases_requested(ids, caption)``."""

    cases_requested = Signal(object, str)
    loaded = Signal()
    message = Signal(str)

    def __init__(self, engine: Engine, actor: Actor | None = None, lang: str = "zh",
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("kpiPanel")
        self.engine = engine
        self.actor = actor
        self.lang = lang
        self.data: dict | None = None
        self.is_loaded = False
        self._loading = False
        self._again = False
        self.prefix = ""  # drill-down: only the groups whose code starts so
        self.crumbs: list[tuple[str, str, str]] = []  # (grouping, prefix, name) to go back to
        self._build()

    # -- construction --------------------------------------------------------------------

    def _build(self) -> None:
        self.kind_combo = QComboBox()
        for kind, text in PERIOD_KINDS:
            self.kind_combo.addItem(tr(text), kind)
        self.kind_combo.setCurrentIndex(0)  # the last 30 days
        today = datetime.now(hall_timezone()).date()
        self.day_edit = self._date(today)
        self.from_edit = self._date(today.replace(day=1))
        self.to_edit = self._date(today + timedelta(days=1))
        self.by_combo = QComboBox()
        for by in RANKED:
            self.by_combo.addItem(pick(GROUPING_LABELS[by]), by)
        self.rank_combo = QComboBox()
        self.rank_combo.addItem(tr("默认排序"), None)
        for m in METRICS:
            self.rank_combo.addItem(pick(METRIC_LABELS[m]), m)
        self.refresh_button = QPushButton(tr("刷新"))
        self.xlsx_button = QPushButton(tr("导出 XLSX"))
        self.pdf_button = QPushButton(tr("导出 PDF"))
        self.handover_button = QPushButton(tr("交接班…"))
        self.handover_button.setObjectName("handoverButton")
        self.up_button = QToolButton(text=tr("上一级"))
        self.up_button.setEnabled(False)
        self.crumb_label = QLabel()
        self.status_label = QLabel()

        top = QHBoxLayout()
        top.addWidget(QLabel(tr("统计期")))
        top.addWidget(self.kind_combo)
        top.addWidget(self.day_edit)
        top.addWidget(self.from_edit)
        top.addWidget(QLabel("–"))
        top.addWidget(self.to_edit)
        top.addSpacing(8)
        top.addWidget(QLabel(tr("分组")))
        top.addWidget(self.by_combo)
        top.addWidget(QLabel(tr("排名")))
        top.addWidget(self.rank_combo)
        top.addWidget(self.refresh_button)
        top.addStretch(1)
        top.addWidget(self.status_label)
        top.addWidget(self.xlsx_button)
        top.addWidget(self.pdf_button)
        top.addWidget(self.handover_button)

        self.tiles: dict[str, QToolButton] = {}
        tiles = QGridLayout()
        for i, m in enumerate(METRICS):
            b = QToolButton()
            b.setObjectName(f"tile_{m}")
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            b.setMinimumWidth(96)
            b.setToolTip(tr("点击列出这些案件") if m in COUNTS else tr("点击列出未达标的案件"))
            b.clicked.connect(lambda _=False, name=m: self._tile_clicked(name))
            self.tiles[m] = b
            tiles.addWidget(b, i // 7, i % 7)

        self.table = QTableWidget(0, 3 + len(TABLE_METRICS))
        self.table.setObjectName("kpiTable")
        self.table.setHorizontalHeaderLabels(
            [tr("排名"), tr("名称"), ""] + [pick(METRIC_LABELS[m]) for m in TABLE_METRICS])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.setItemDelegateForColumn(COL_BAR, BarDelegate(self.table))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.setColumnWidth(COL_RANK, 44)
        self.table.setColumnWidth(COL_NAME, 150)
        self.table.setColumnWidth(COL_BAR, 110)
        for j in range(3, self.table.columnCount()):
            self.table.setColumnWidth(j, 78)
        self.table.cellClicked.connect(self._cell_clicked)
        self.table.cellDoubleClicked.connect(self._cell_double_clicked)

        self.daily = pg.PlotWidget()
        self.daily.setObjectName("dailyTrend")
        self.daily.setMinimumHeight(150)
        self.daily.addLegend(offset=(6, 6))
        self.daily.showGrid(y=True, alpha=0.25)
        self.hourly = pg.PlotWidget()
        self.hourly.setObjectName("hourlyTrend")
        self.hourly.setMinimumHeight(150)
        self.hourly.addLegend(offset=(6, 6))
        self.hourly.showGrid(y=True, alpha=0.25)
        for plot, title in ((self.daily, tr("逐日：上报、结案与结案率")),
                            (self.hourly, tr("逐时（统计期最后一天）"))):
            plot.setTitle(title, size="9pt")
            plot.setMouseEnabled(x=False, y=False)
            plot.hideButtons()
        self.rate_axis = pg.ViewBox()
        self.daily.scene().addItem(self.rate_axis)
        self.daily.getPlotItem().showAxis("right")
        self.daily.getPlotItem().getAxis("right").linkToView(self.rate_axis)
        self.rate_axis.setXLink(self.daily.getPlotItem())
        self.rate_axis.setYRange(0, 1.05)
        self.daily.getPlotItem().vb.sigResized.connect(
            lambda: self.rate_axis.setGeometry(self.daily.getPlotItem().vb.sceneBoundingRect()))

        crumb = QHBoxLayout()
        crumb.addWidget(self.up_button)
        crumb.addWidget(self.crumb_label, 1)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addLayout(crumb)
        lv.addWidget(self.table, 1)
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(self.daily, 1)
        rv.addWidget(self.hourly, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addLayout(tiles)
        layout.addWidget(split, 1)

        self.kind_combo.currentIndexChanged.connect(self._kind_changed)
        for w in (self.day_edit, self.from_edit, self.to_edit):
            w.dateChanged.connect(lambda _d: self.reload())
        self.by_combo.currentIndexChanged.connect(self._by_changed)
        self.rank_combo.currentIndexChanged.connect(lambda _i: self.reload())
        self.refresh_button.clicked.connect(self.reload)
        self.up_button.clicked.connect(self.drill_up)
        self.xlsx_button.clicked.connect(lambda: self._ask_export("xlsx"))
        self.pdf_button.clicked.connect(lambda: self._ask_export("pdf"))
        self.handover_button.clicked.connect(self.open_handover)
        self._kind_changed()

    @staticmethod
    def _date(d: date) -> QDateEdit:
        e = QDateEdit(QDate(d.year, d.month, d.day))
        e.setCalendarPopup(True)
        e.setDisplayFormat("yyyy-MM-dd")
        return e

    # -- what is asked -------------------------------------------------------------------

    def period(self) -> Period:
        kind = self.kind_combo.currentData()
        if kind == "custom":
            return Period(self.from_edit.date().toPython(), self.to_edit.date().toPython())
        day = self.day_edit.date().toPython()
        if kind == "recent":
            return Period(day - timedelta(days=RECENT_DAYS - 1), day + timedelta(days=1))
        return Period.of(kind, day)

    def grouping(self) -> str:
        return self.by_combo.currentData()

    def rank_by(self) -> str | None:
        return self.rank_combo.currentData()

    def set_period(self, period: Period) -> None:
        """Show ``period`` (a custom range), e.g. from a test or another view."""
        for w in (self.kind_combo, self.from_edit, self.to_edit):
            w.blockSignals(True)
        self.kind_combo.setCurrentIndex(len(PERIOD_KINDS) - 1)
        self.from_edit.setDate(QDate(period.start.year, period.start.month, period.start.day))
        self.to_edit.setDate(QDate(period.end.year, period.end.month, period.end.day))
        for w in (self.kind_combo, self.from_edit, self.to_edit):
            w.blockSignals(False)
        self._show_date_edits()
        self.reload()

    def set_grouping(self, by: str, prefix: str = "") -> None:
        self.prefix = prefix
        self.by_combo.blockSignals(True)
        self.by_combo.setCurrentIndex(self.by_combo.findData(by))
        self.by_combo.blockSignals(False)
        self.reload()

    def _kind_changed(self, *_args) -> None:
        self._show_date_edits()
        self.reload()

    def _show_date_edits(self) -> None:
        custom = self.kind_combo.currentData() == "custom"
        self.day_edit.setVisible(not custom)
        self.from_edit.setVisible(custom)
        self.to_edit.setVisible(custom)

    def _by_changed(self, *_args) -> None:
        self.prefix = ""
        self.crumbs.clear()
        self.reload()

    # -- loading ---------------------------------------------------------------------------

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self.is_loaded and not self._loading:
            self.reload()

    def reload(self) -> None:
        """Read the period's figures off the GUI thread (once visible)."""
        if not self.isVisible() and not self.is_loaded:
            return  # read when first shown: a hidden panel costs the console nothing
        if self._loading:
            self._again = True
            return
        try:
            period = self.period()
        except GridError as exc:
            self.status_label.setText(exc.message(self.lang))
            return
        by, rank_by, engine = self.grouping(), self.rank_by(), self.engine
        today = datetime.now(hall_timezone()).date()
        last = min(period.end - timedelta(days=1), today)  # the hours of a day that has been
        last_day = Period(last, last + timedelta(days=1))

        def work() -> dict:
            groups = report(engine, period, by, rank_by)
            district = report(engine, period, "district", fold=False)
            days = trend(engine, period, "day", fold=False) \
                if (period.end - period.start).days <= 400 else []
            hours = trend(engine, last_day, "hour", fold=False)
            return {"period": period, "groups": groups, "district": district["rows"][0],
                    "days": days, "hours": hours}

        self._loading = True
        self.status_label.setText(tr("读取中…"))
        run_in_thread(work, self._on_loaded, self._on_error, context=self)

    def _on_loaded(self, data: dict) -> None:
        self._loading = False
        self.data = data
        self._fill_tiles(data["district"])
        self._fill_table(data["groups"])
        self._fill_trends(data["days"], data["hours"])
        p = data["period"]
        self.status_label.setText(f"[{p.start.isoformat()}, {p.end.isoformat()})")
        self.is_loaded = True
        self.loaded.emit()
        if self._again:
            self._again = False
            self.reload()

    def _on_error(self, exc: Exception) -> None:
        self._loading = False
        text = exc.message(self.lang) if isinstance(exc, GridError) else tr("读取评价数据失败")
        log.warning("kpi load failed: %s", exc)
        self.status_label.setText(text)
        self.message.emit(text)

    # -- showing ---------------------------------------------------------------------------

    def _fill_tiles(self, row: dict) -> None:
        for m, b in self.tiles.items():
            b.setText(f"{pick(METRIC_LABELS[m])}\n{fmt(m, row.get(m))}")

    def visible_rows(self) -> list[dict]:
        rows = (self.data or {}).get("groups", {}).get("rows", [])
        if self.prefix:
            rows = [r for r in rows if (r.get("key") or "").startswith(self.prefix)]
        return rows

    def _fill_table(self, rep: dict) -> None:
        rows = self.visible_rows()
        metric = rep["rank_by"]
        values = [r[metric] for r in rows if r.get(metric) is not None and r.get("key")]
        best = (min(values) if metric in ASCENDING else max(values)) if values else None
        self.table.setRowCount(len(rows))
        self.table.horizontalHeaderItem(COL_BAR).setText(pick(METRIC_LABELS[metric]))
        for i, r in enumerate(rows):
            rank = QTableWidgetItem("" if r.get("rank") is None else str(r["rank"]))
            name = QTableWidgetItem(r.get("name") or tr("未派遣"))
            name.setToolTip(str(r.get("key") or ""))
            name.setData(Qt.ItemDataRole.UserRole + 1, r.get("key"))
            bar = QTableWidgetItem(fmt(metric, r.get(metric)))
            value = r.get(metric)
            if value is not None and best and r.get("key"):
                share = (best / value if metric in ASCENDING and value else value / best)
                bar.setData(Qt.ItemDataRole.UserRole, float(share))
            self.table.setItem(i, COL_RANK, rank)
            self.table.setItem(i, COL_NAME, name)
            self.table.setItem(i, COL_BAR, bar)
            for j, m in enumerate(TABLE_METRICS, start=3):
                item = QTableWidgetItem(fmt(m, r.get(m)))
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(i, j, item)
        self._update_crumbs()

    def _fill_trends(self, days: list[dict], hours: list[dict]) -> None:
        self.daily.clear()
        self.rate_axis.clear()
        if days:
            x = list(range(len(days)))
            self.daily.plot(x, [d["reported"] for d in days], pen=pg.mkPen("#3b82c4", width=2),
                            name=tr("上报数"))
            self.daily.plot(x, [d["closed"] for d in days], pen=pg.mkPen("#2e9d5b", width=2),
                            name=tr("结案数"))
            rates = [(i, d["closure"]) for i, d in enumerate(days) if d["closure"] is not None]
            if rates:
                curve = pg.PlotDataItem([i for i, _ in rates], [v for _, v in rates],
                                        pen=None, symbol="o", symbolSize=5,
                                        symbolBrush="#e0a030")
                self.rate_axis.addItem(curve)
            ticks = [(i, d["start"][5:10]) for i, d in enumerate(days)
                     if i % max(1, len(days) // 8) == 0]
            self.daily.getPlotItem().getAxis("bottom").setTicks([ticks])
        self.hourly.clear()
        if hours:
            x = list(range(len(hours)))
            self.hourly.addItem(pg.BarGraphItem(x=x, height=[h["reported"] for h in hours],
                                                width=0.4, brush="#3b82c4", name=tr("上报数")))
            self.hourly.addItem(pg.BarGraphItem(x=[i + 0.4 for i in x],
                                                height=[h["closed"] for h in hours], width=0.4,
                                                brush="#2e9d5b", name=tr("结案数")))
            self.hourly.getPlotItem().getAxis("bottom").setTicks(
                [[(i, f"{i:02d}") for i in range(0, len(hours), 3)]])

    def _update_crumbs(self) -> None:
        parts = [tr("全区"), *[name for _, _, name in self.crumbs]]
        grouping = pick(GROUPING_LABELS[self.grouping()])
        self.crumb_label.setText(" › ".join(parts) + f" · {grouping}")
        self.up_button.setEnabled(bool(self.crumbs))

    # -- drill-down ------------------------------------------------------------------------

    def drill_into(self, row: int) -> bool:
        """Street → its communities, community → its grids; False when there is no lower."""
        by = self.grouping()
        nxt = DRILL_NEXT.get(by)
        rows = self.visible_rows()
        if nxt is None or not (0 <= row < len(rows)) or not rows[row].get("key"):
            return False
        self.crumbs.append((by, self.prefix, rows[row]["name"]))
        self.set_grouping(nxt, rows[row]["key"])
        return True

    def drill_up(self) -> None:
        if not self.crumbs:
            return
        by, prefix, _name = self.crumbs.pop()
        self.set_grouping(by, prefix)

    def _cell_double_clicked(self, row: int, column: int) -> None:
        if column in (COL_RANK, COL_NAME, COL_BAR):
            self.drill_into(row)

    def _cell_clicked(self, row: int, column: int) -> None:
        if column < 3:
            return
        rows = self.visible_rows()
        if 0 <= row < len(rows):
            self.request_cases(TABLE_METRICS[column - 3], rows[row])

    def _tile_clicked(self, metric: str) -> None:
        if self.data is not None:
            self.request_cases(metric, None)

    def request_cases(self, metric: str, row: dict | None) -> None:
        """The cases behind ``metric`` of ``row`` (None: the district) → ``cases_requested``."""
        which = metric if metric in COUNTS else MISSES.get(metric)
        if which is None or self.data is None:
            return
        period = self.data["period"]
        by = "district" if row is None else self.data["groups"]["by"]
        key = None if row is None else row.get("key")
        where = tr("全区") if row is None else (row.get("name") or tr("未派遣"))
        what = pick(METRIC_LABELS[metric])
        if metric not in COUNTS:
            what = f"{what} {tr('未达标')}"
        caption = f"{where} · {what} · [{period.start.isoformat()}, {period.end.isoformat()})"
        engine = self.engine

        def work():
            return [r["id"] for r in cases_behind(engine, period, which, by, key, fold=False)]

        run_in_thread(work, lambda ids: self.cases_requested.emit(ids, caption),
                      self._on_error, context=self)

    # -- exports and the handover ----------------------------------------------------------

    def _ask_export(self, kind: str) -> None:
        p = self.period()
        suggested = f"综合评价_{p.start.isoformat()}_{p.end.isoformat()}.{kind}"
        path, _ = QFileDialog.getSaveFileName(self, tr("导出"), suggested, f"*.{kind}")
        if path:
            self.export(kind, path)

    def export(self, kind: str, path: str) -> None:
        """Write the period's XLSX or PDF off the GUI thread; ``message`` says where."""
        from console.kpi_export import gather, write_pdf, write_xlsx

        period, engine, lang, rank_by = self.period(), self.engine, self.lang, self.rank_by()

        def work() -> str:
            ev = gather(engine, period, rank_by=rank_by)
            return str((write_xlsx if kind == "xlsx" else write_pdf)(ev, path, lang))

        def done(out: str) -> None:
            self.status_label.setText(f"{tr('已导出')} {out}")
            self.message.emit(f"{tr('已导出')} {out}")

        run_in_thread(work, done, self._on_error, context=self)

    def open_handover(self) -> None:
        from widgets.kpi.handover_dialog import HandoverDialog

        dialog = HandoverDialog(self.engine, self.actor, self.lang, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.handover_dialog = dialog
        dialog.show()


__all__ = ["KpiPanel", "fmt"]
