"""The operator's case queue: a filter bar over one table of every open case.

Operators live in this table for a whole shift, so it is a model/view table
(``CaseQueueModel`` → ``CaseFilterProxy`` → ``QueueTable``), never a widget
per row: a live change touches one row (a case coming, going or moving off
screen repaints nothing, one on screen only the rows from it down, and the
top visible row stays put), the 1 s clock repaints only the visible age and
countdown cells, and nothing here waits on the database —
saved filters and the filter bar's choices load on pool threads
(``console.tasks.run_in_thread``) through ``db`` functions.

Selection follows the case, not the row number: when rows move or other
cases come and go the operator's case stays selected; when the selected case
itself leaves the queue (closed elsewhere, or filtered out) the selection is
cleared instead of jumping to a neighbour, and ``current_case_left`` says so.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QModelIndex, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractSlider,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QScrollBar,
    QStyle,
    QStyleOptionSlider,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from console.case_filter import CaseFilter
from console.case_store import CaseRow, CaseStore
from console.i18n import tr
from console.tasks import run_in_thread
from db.case_queries import queue_choices
from db.engine import Engine
from db.errors import GridError
from db.saved_filters import delete_filter, list_filters, save_filter
from db.users import Actor
from db.workflow import OPEN_STATUS_ORDER, SOURCE_LABELS, SOURCES, STATUS_LABELS, label
from widgets.case_model import (
    COL_AGE,
    COL_CATEGORY,
    COL_COUNTDOWN,
    COL_DEPARTMENT,
    COL_ESCALATION,
    COL_NUMBER,
    COL_PLACE,
    COL_SEVERITY,
    COL_STATUS,
    CaseQueueModel,
    current_lang,
)
from widgets.case_proxy import CaseFilterProxy

log = logging.getLogger(__name__)

TEXT_DEBOUNCE_MS = 250
COLUMN_WIDTHS = {
    COL_NUMBER: 150,
    COL_STATUS: 120,
    COL_CATEGORY: 130,
    COL_SEVERITY: 80,
    COL_PLACE: 210,
    COL_DEPARTMENT: 110,
    COL_AGE: 100,
    COL_COUNTDOWN: 150,
    COL_ESCALATION: 130,
}
QUEUE_STATUSES = OPEN_STATUS_ORDER


def _rewire(old: list, model, wanted) -> list:
    """Drop the ``old`` connections; connect ``wanted`` (signal name, slot) on ``model``.

    Connection handles, not (signal, bound method) pairs, are kept: a widget
    holding its own bound methods is a reference cycle, freed only by the
    cyclic garbage collector, which may run on a pool thread and there
    delete a widget — a deadlock with the GUI thread.
    """
    for connection in old:
        QObject.disconnect(connection)
    if model is None:
        return []
    return [getattr(model, name).connect(slot) for name, slot in wanted]


class _QuietScrollBar(QScrollBar):
    """A scroll bar that repaints only when what it draws changed.

    With 100,000 rows one row more or less moves the handle by a small
    fraction of a pixel, yet ``QScrollBar`` repaints on every range change —
    with the house style sheet that paint (and the scroll area's frame behind
    it) is 0.6–2 ms, more than the rest of an off-screen change.  The look is
    the handle's rectangle and whether the value sits at either end (the
    arrows' state); a range or value change that keeps it skips the repaint.
    """

    def __init__(self, orientation: Qt.Orientation, parent: QWidget | None = None):
        super().__init__(orientation, parent)
        self._shown: tuple | None = None  # the look last painted

    def _look(self) -> tuple:
        opt = QStyleOptionSlider()
        self.initStyleOption(opt)
        handle = self.style().subControlRect(
            QStyle.ComplexControl.CC_ScrollBar, opt, QStyle.SubControl.SC_ScrollBarSlider, self
        )
        lo, hi, value = self.minimum(), self.maximum(), self.value()
        return handle.getRect(), value <= lo, value >= hi, lo == hi

    def sliderChange(self, change: QAbstractSlider.SliderChange) -> None:
        if (
            change in _QUIET_CHANGES
            and self._shown is not None
            and not self.isSliderDown()
            and self._look() == self._shown
        ):
            return
        super().sliderChange(change)

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        self._shown = self._look()


class _ColumnHeader(QHeaderView):
    """The column header, which has nothing to do when rows move or cells change.

    Every item view answers ``rowsMoved`` with a delayed full layout, and for
    a header that means repainting every section (Python ``headerData``
    calls for each role of each): about 0.5 ms on each case that changes
    place in the queue.  A layout owed to row moves alone is skipped;
    anything else (a reset, a layout change, columns) gets Qt's own.

    ``QHeaderView.dataChanged`` forgets the header's size hint on every cell
    change, so the view's next layout measures every section again (0.15 ms
    with the style sheet); only sections sized to their contents depend on
    cells, and the queue has none (see ``CaseQueueView``), so without them
    a cell change leaves the header alone.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.setSectionsClickable(True)  # as QTableView's own header
        self.setHighlightSections(True)
        self._moves_only = False
        self._fits_cells: bool | None = None  # a section sized to its cells (None: look)
        self._model_connections: list = []

    def setModel(self, model) -> None:
        super().setModel(model)
        self._moves_only = False
        self._fits_cells = None
        other = self._other
        self._model_connections = _rewire(
            self._model_connections,
            model,
            (
                ("rowsAboutToBeMoved", self._before_move),
                ("modelReset", other),
                ("layoutChanged", other),
                ("columnsInserted", other),
                ("columnsRemoved", other),
                ("columnsMoved", other),
            ),
        )

    def _before_move(self, *_args) -> None:
        if not self._moves_only:
            self.executeDelayedItemsLayout()  # one something else left pending runs whole
            self._moves_only = True

    def _other(self, *_args) -> None:
        self._moves_only = False
        self._fits_cells = None  # the columns may have changed

    def reset(self) -> None:
        super().reset()
        self._moves_only = False

    def setSectionResizeMode(self, *args) -> None:
        super().setSectionResizeMode(*args)
        self._fits_cells = None

    def dataChanged(self, top_left, bottom_right, roles=()) -> None:
        if self._fits_cells is None:
            fit = QHeaderView.ResizeMode.ResizeToContents
            self._fits_cells = any(self.sectionResizeMode(c) == fit for c in range(self.count()))
        if self._fits_cells:
            super().dataChanged(top_left, bottom_right, list(roles or ()))

    def doItemsLayout(self) -> None:
        moves_only, self._moves_only = self._moves_only, False
        if not moves_only:
            super().doItemsLayout()


_QUIET_CHANGES = (
    QAbstractSlider.SliderChange.SliderRangeChange,
    QAbstractSlider.SliderChange.SliderValueChange,
)
_PER_ITEM = QAbstractItemView.ScrollMode.ScrollPerItem


class QueueTable(QTableView):
    """The table: repaints only what changed on screen; says when it has painted.

    Qt repaints the whole viewport for a ``dataChanged`` range that runs past
    the visible rows (the clock tick spans every row); clamping the range to
    the visible rows keeps the tick to the age and countdown cells on screen.

    Rows inserted, removed or moved are worse: ``QTableView`` answers each
    with a delayed full layout whose last step repaints the whole viewport
    (20–30 ms at 1600×900), even for row 50,000 when rows 0–28 are shown.
    Here the view follows them itself (``doItemsLayout`` then only sets the
    scroll bar's range, once for a burst of changes) and repaints what moved:
    the rows at and below the change, within the visible rows — nothing at all
    for a change off screen.  The top visible row stays where it is when
    rows come or go above it (the scroll value follows it, without scrolling
    pixels), so the case the operator reads does not jump; only at the very
    head of the queue (scrolled to the top) do new rows push the others down,
    because there the operator watches the head.  Resets, layout changes
    (sorting, filtering), hidden rows and column changes keep Qt's own full
    layout.

    ``painted`` lets tests and the benchmark see a frame actually drawn.
    """

    painted = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setVerticalScrollBar(_QuietScrollBar(Qt.Orientation.Vertical, self))
        self.setHorizontalHeader(_ColumnHeader(self))
        self._light = False  # Qt's pending layout is for rows this view followed itself
        self._full = False  # something else asked for Qt's full layout
        self._partial = False  # a partial repaint was asked for and not yet painted
        self._removal: tuple | None = None  # the plan for rows about to go
        self._move: tuple | None = None  # the plan for rows about to move
        self._model_connections: list = []

    # -- the model -------------------------------------------------------------------

    def setModel(self, model) -> None:
        super().setModel(model)
        self._full = True
        full = self._need_full
        self._model_connections = _rewire(
            self._model_connections,
            model,
            (
                ("rowsAboutToBeInserted", self._before_rows),
                ("rowsRemoved", self._after_removal),
                ("rowsAboutToBeMoved", self._before_move),
                ("rowsMoved", self._after_move),
                ("modelReset", full),
                ("layoutChanged", full),
                ("columnsInserted", full),
                ("columnsRemoved", full),
                ("columnsMoved", full),
            ),
        )

    def setRootIndex(self, index) -> None:
        super().setRootIndex(index)
        self._full = True

    def reset(self) -> None:
        super().reset()
        self._full = True

    def _need_full(self, *_args) -> None:
        self._full = True

    # -- Qt's layout -----------------------------------------------------------------

    def doItemsLayout(self) -> None:
        light, full = self._light, self._full
        self._light = self._full = False
        if full or not light:
            super().doItemsLayout()
            return
        # QTableView's layout minus its viewport().update(): the rows on screen
        # were repainted (or left alone) when they changed.
        header = self.verticalHeader()
        offset = header.offset()
        self.updateGeometries()
        if header.offset() != offset:  # the new range moved the rows (the end of the list)
            self.viewport().update()
        if not header.updatesEnabled():  # QTableView turns them off on a removal
            header.setUpdatesEnabled(True)

    def scrollContentsBy(self, dx: int, dy: int) -> None:
        super().scrollContentsBy(dx, dy)
        if dy and self._partial:  # a partial repaint asked for before the pixels moved
            self.viewport().update()

    def paintEvent(self, event) -> None:
        self._partial = False
        super().paintEvent(event)
        self.painted.emit()

    # -- rows ------------------------------------------------------------------------

    def dataChanged(self, top_left, bottom_right, roles=()):
        if self._light:
            # Qt skips repaints while a layout is pending; ours is cheap, run it now.
            self.executeDelayedItemsLayout()
        first, last = top_left.row(), bottom_right.row()
        model = self.model()
        if top_left.isValid() and last > first and model is not None:
            shown_first = self.rowAt(0)
            if shown_first < 0:
                return  # nothing on screen
            shown_last = self.rowAt(self.viewport().height() - 1)
            if shown_last < 0:
                shown_last = model.rowCount() - 1
            lo, hi = max(first, shown_first), min(last, shown_last)
            if lo > hi:
                return
            top_left = model.index(lo, top_left.column())
            bottom_right = model.index(hi, bottom_right.column())
        super().dataChanged(top_left, bottom_right, list(roles or ()))

    def _follows(self, parent) -> bool:
        """Whether this view can follow a row change itself (else Qt's full layout)."""
        header = self.verticalHeader()
        ok = (
            parent == self.rootIndex()
            and not header.hiddenSectionCount()
            and not header.sectionsMoved()
        )
        if not ok:
            self._full = True
        return ok

    def _before_rows(self, parent, _first: int = 0, _last: int = 0) -> None:
        """Before rows change: run a layout something else left pending, then claim Qt's next."""
        if self._full or not self._light:
            self.executeDelayedItemsLayout()
            self._full = False
        self._light = True

    def rowsInserted(self, parent, first: int, last: int) -> None:
        super().rowsInserted(parent, first, last)
        if self._follows(parent):
            header = self.verticalHeader()
            value = self.verticalScrollBar().value()
            self._show(*self._rows_in(first, last, value, header.offset()))

    def rowsAboutToBeRemoved(self, parent, first: int, last: int) -> None:
        self._before_rows(parent)
        # Qt moves the current row off a removed one and would scroll to it first
        # (one row below the removed one: a jump for nothing once the rows close up).
        scroll = self.hasAutoScroll()
        self.setAutoScroll(False)
        try:
            super().rowsAboutToBeRemoved(parent, first, last)
        finally:
            self.setAutoScroll(scroll)
        if self._follows(parent):
            header = self.verticalHeader()
            value = self.verticalScrollBar().value()
            self._removal = self._rows_out(first, last, value, header.offset())

    def _after_removal(self, *_args) -> None:
        plan, self._removal = self._removal, None
        if plan is not None:
            self._show(*plan)

    def _before_move(self, parent, first: int, last: int, dest_parent, dest: int) -> None:
        self._before_rows(parent)
        if dest_parent != parent:
            self._full = True  # from one parent to another: not a table's move
        elif self._follows(parent):
            header = self.verticalHeader()
            value = self.verticalScrollBar().value()
            self._move = self._rows_out(first, last, value, header.offset())

    def _after_move(self, _parent, first: int, last: int, _dest_parent, dest: int) -> None:
        """A move is the rows leaving where they were, then arriving where they are now."""
        plan, self._move = self._move, None
        if plan is None:
            return
        value, dirty, offset = plan
        n = last - first + 1
        at = dest if dest < first else dest - n  # where the rows now start
        value, dirty_in, offset = self._rows_in(at, at + n - 1, value, offset)
        if dirty is None or (dirty_in is not None and dirty_in < dirty):
            dirty = dirty_in
        self._show(value, dirty, offset)

    # -- where rows are: scroll bar units, content and viewport pixels -----------------
    #
    # A plan is (scroll value, first viewport y to repaint or None, the header's
    # offset that keeps every row from the top row down where it was on screen,
    # or None when everything on screen is repainted anyway).

    def _units(self, first: int, last: int, top: int, bottom: int) -> int:
        """Rows ``first..last`` (pixels ``top..bottom``) in scroll bar units."""
        return last - first + 1 if self.verticalScrollMode() == _PER_ITEM else bottom - top

    def _span(self, first: int, last: int) -> tuple[int, int]:
        """Rows ``first..last`` in content pixels: (top, bottom)."""
        header = self.verticalHeader()
        return header.sectionPosition(first), header.sectionPosition(last) + header.sectionSize(
            last
        )

    def _rows_in(
        self, first: int, last: int, value: int, offset: int | None
    ) -> tuple[int, int | None, int | None]:
        """Plan for rows ``first..last`` that just arrived (the header has them)."""
        top, bottom = self._span(first, last)
        if offset is None:  # everything is repainted: only the scroll value matters
            per_item = self.verticalScrollMode() == _PER_ITEM
            above = value > 0 and (first if per_item else top) <= value
            grow = self._units(first, last, top, bottom) if above else 0
            return value + grow, 0, None
        if offset > 0 and top <= offset:  # at or above the top row: it keeps its place
            return value + self._units(first, last, top, bottom), None, offset + bottom - top
        return value, top - offset, offset

    def _rows_out(
        self, first: int, last: int, value: int, offset: int
    ) -> tuple[int, int | None, int | None]:
        """Plan for rows ``first..last`` about to go (the header still has them)."""
        top, bottom = self._span(first, last)
        if self.verticalScrollMode() == _PER_ITEM:
            gone_above = max(0, min(last + 1, value) - first)  # rows before the value's row
        else:
            gone_above = max(0, min(bottom, value) - top)
        value -= gone_above
        if bottom <= offset:  # all above the screen: the top row keeps its place
            return value, None, offset - (bottom - top)
        if top < offset:  # the top row goes: the first row after the gap takes its place
            return value, 0, None
        return value, top - offset, offset

    def _show(self, value: int, dirty: int | None, offset: int | None) -> None:
        """Scroll bar to ``value`` without moving pixels; repaint the viewport from ``dirty`` down.

        When the header's offset does not come out as ``offset`` (at the very
        end of the rows Qt aligns the last row with the bottom edge instead of
        the top row with the top), rows did move on screen: repaint them all.
        """
        bar = self.verticalScrollBar()
        viewport = self.viewport()
        if value != bar.value():
            blocked = bar.blockSignals(True)  # no scrollContentsBy: nothing on screen moves
            try:
                if value > bar.maximum():  # the range for the rows just inserted comes below
                    bar.setMaximum(value)
                bar.setValue(value)
            finally:
                bar.blockSignals(blocked)
            self.updateGeometries()  # the range, and the header's offset from the value
            if bar.value() != value or (
                offset is not None and self.verticalHeader().offset() != offset
            ):
                viewport.update()
                return
        if dirty is None:
            return
        height = viewport.height()
        dirty = max(dirty, 0)
        if dirty < height:
            viewport.update(0, dirty, viewport.width(), height - dirty)
            self._partial = True


class StatusPicker(QToolButton):
    """Pick any set of open statuses from a menu (none checked = all)."""

    changed = Signal()

    def __init__(self, lang: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.lang = lang
        self.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.menu_ = QMenu(self)
        self.actions_ = {}
        for status in QUEUE_STATUSES:
            action = self.menu_.addAction(label(STATUS_LABELS, status, lang))
            action.setCheckable(True)
            action.toggled.connect(self._toggled)
            self.actions_[str(status)] = action
        self.setMenu(self.menu_)
        self._update_text()

    def statuses(self) -> frozenset[str]:
        return frozenset(s for s, a in self.actions_.items() if a.isChecked())

    def set_statuses(self, statuses: frozenset[str]) -> None:
        for s, action in self.actions_.items():
            action.blockSignals(True)
            action.setChecked(s in statuses)
            action.blockSignals(False)
        self._update_text()

    def _toggled(self, _checked: bool) -> None:
        self._update_text()
        self.changed.emit()

    def _update_text(self) -> None:
        chosen = [label(STATUS_LABELS, s, self.lang) for s in self.actions_ if s in self.statuses()]
        shown = "、".join(chosen) if chosen else tr("全部")
        self.setText(tr("状态：{s}").format(s=shown))


class CaseQueueView(QWidget):
    """Filter bar + queue table over a ``CaseStore``; saved filters per ``user_id``.

    Signals: ``case_selected(int)`` when the operator moves to a case,
    ``case_activated(int)`` on double-click or Enter, ``current_case_left(int)``
    when the selected case left the queue or the filter, ``filter_changed()``,
    ``saved_filters_changed(list)`` with the names after every (re)load, and
    ``message(str)`` for an operator-facing error.
    """

    case_selected = Signal(int)
    case_activated = Signal(int)
    current_case_left = Signal(int)
    filter_changed = Signal()
    saved_filters_changed = Signal(list)
    message = Signal(str)

    def __init__(
        self,
        store: CaseStore,
        engine: Engine,
        user_id: int | Actor,  # an Actor proves its session when saving filters
        parent: QWidget | None = None,
        lang: str | None = None,
    ):
        super().__init__(parent)
        self.store = store
        self.engine = engine
        self.user_id = user_id
        self.lang = lang or current_lang()
        self.model = CaseQueueModel(store, self.lang, parent=self)
        self.proxy = CaseFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self._filter = CaseFilter()
        self._saved: dict[str, dict] = {}
        self._current_id: int | None = None
        self._leaving: int | None = None
        self._build()
        self._wire()
        self.reload_choices()
        self.reload_saved_filters()

    # -- construction ---------------------------------------------------------------

    def _build(self) -> None:
        self.text_edit = QLineEdit(placeholderText=tr("搜索编号、描述、地址、类别"))
        self.text_edit.setClearButtonEnabled(True)
        self.status_picker = StatusPicker(self.lang, self)
        self.status_picker.setMinimumWidth(140)
        self.class_combo = self._combo(tr("全部类别"))
        self.street_combo = self._combo(tr("全部街道"))
        self.grid_edit = QLineEdit(placeholderText=tr("网格编号"))
        self.grid_edit.setClearButtonEnabled(True)
        self.department_combo = self._combo(tr("全部处置单位"))
        self.source_combo = self._combo(tr("全部来源"))
        for source in SOURCES:
            self.source_combo.addItem(label(SOURCE_LABELS, source, self.lang), source)
        self.overdue_check = QCheckBox(tr("仅超时"))
        self.escalated_check = QCheckBox(tr("仅督办"))
        self.saved_combo = QComboBox()
        self.saved_combo.setMinimumWidth(160)
        self.saved_combo.setToolTip(tr("已保存的筛选"))
        self.save_button = QPushButton(tr("保存筛选"))
        self.delete_button = QPushButton(tr("删除筛选"))
        self.clear_button = QPushButton(tr("清除筛选"))
        self.order_button = QPushButton(tr("默认排序"))
        self.order_button.setToolTip(tr("特急案件优先，其次超时，再按期限远近"))
        self.count_label = QLabel()
        # A drill-down from the evaluation panel: which number's cases these are.
        self.drill_label = QLabel()
        self.drill_label.setObjectName("drillLabel")
        self.drill_back = QPushButton(tr("返回队列"))
        self.drill_back.setObjectName("drillBack")
        self.message_label = QLabel()
        self.message_label.setProperty("alarm", True)

        self.table = QueueTable(self)
        t = self.table
        t.setModel(self.proxy)
        t.setAlternatingRowColors(True)
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.setWordWrap(False)
        t.setTextElideMode(Qt.TextElideMode.ElideRight)
        t.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        t.setTabKeyNavigation(False)
        rows = t.verticalHeader()
        rows.hide()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # uniform rows: O(1) layout
        rows.setDefaultSectionSize(28)
        header = t.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        # Stretch, never ResizeToContents: that would measure every row.
        header.setSectionResizeMode(COL_PLACE, QHeaderView.ResizeMode.Stretch)
        header.setHighlightSections(False)
        for column, width in COLUMN_WIDTHS.items():
            t.setColumnWidth(column, width)
        # A cleared indicator is the queue order (emergency, overdue, nearest deadline).
        header.setSortIndicatorClearable(True)
        header.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        t.setSortingEnabled(True)

        bar1 = QHBoxLayout()
        bar1.addWidget(self.text_edit, 3)
        bar1.addWidget(self.status_picker)
        bar1.addWidget(self.class_combo, 1)
        bar1.addWidget(self.street_combo, 1)
        bar1.addWidget(self.grid_edit, 1)
        bar1.addWidget(self.department_combo, 1)
        bar1.addWidget(self.source_combo, 1)
        bar2 = QHBoxLayout()
        bar2.addWidget(self.overdue_check)
        bar2.addWidget(self.escalated_check)
        bar2.addWidget(self.clear_button)
        bar2.addSpacing(12)
        bar2.addWidget(self.saved_combo)
        bar2.addWidget(self.save_button)
        bar2.addWidget(self.delete_button)
        bar2.addWidget(self.order_button)
        bar2.addStretch(1)
        bar2.addWidget(self.message_label)
        bar2.addWidget(self.count_label)
        self.drill_bar = QWidget()
        bar0 = QHBoxLayout(self.drill_bar)
        bar0.setContentsMargins(0, 0, 0, 0)
        bar0.addWidget(self.drill_label, 1)
        bar0.addWidget(self.drill_back)
        self.drill_bar.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.drill_bar)
        layout.addLayout(bar1)
        layout.addLayout(bar2)
        layout.addWidget(self.table, 1)
        self._fill_saved_combo()
        self._update_count()

    def _combo(self, everything: str) -> QComboBox:
        combo = QComboBox()
        combo.addItem(everything, None)
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        return combo

    def _wire(self) -> None:
        self._text_timer = QTimer(self, singleShot=True, interval=TEXT_DEBOUNCE_MS)
        self._text_timer.timeout.connect(self._apply_widgets)
        self.text_edit.textChanged.connect(self._text_timer.start)
        self.grid_edit.textChanged.connect(self._text_timer.start)
        self.status_picker.changed.connect(self._apply_widgets)
        for combo in (self.class_combo, self.street_combo, self.department_combo):
            combo.currentIndexChanged.connect(self._apply_widgets)
        self.source_combo.currentIndexChanged.connect(self._apply_widgets)
        self.overdue_check.toggled.connect(self._apply_widgets)
        self.escalated_check.toggled.connect(self._apply_widgets)
        self.clear_button.clicked.connect(lambda: self.set_filter(CaseFilter()))
        self.drill_back.clicked.connect(lambda: self.set_filter(CaseFilter()))
        self.order_button.clicked.connect(self.default_order)
        self.saved_combo.activated.connect(self._saved_chosen)
        self.save_button.clicked.connect(self._ask_save)
        self.delete_button.clicked.connect(lambda: self.delete_saved_filter())
        self.table.selectionModel().currentRowChanged.connect(self._on_current)
        self.table.activated.connect(self._on_activated)
        self.proxy.case_leaving.connect(self._on_case_leaving)
        self.proxy.modelReset.connect(self._on_reset)
        self.proxy.rowsRemoved.connect(self._on_rows_left)
        for sig in (
            self.proxy.rowsInserted,
            self.proxy.rowsRemoved,
            self.proxy.modelReset,
            self.proxy.layoutChanged,
        ):
            sig.connect(self._update_count)

    # -- public API ------------------------------------------------------------------

    def filter(self) -> CaseFilter:
        return self._filter

    def set_filter(self, f: CaseFilter) -> None:
        """Apply ``f`` and show it in the filter bar."""
        self._text_timer.stop()
        self._filter = f
        self._sync_widgets()
        self._apply(f)

    def show_cases(self, case_ids, caption: str) -> None:
        """List exactly these cases, of any status (the cases behind a number)."""
        ids = frozenset(int(i) for i in case_ids)
        self.store.pin(ids)
        self.drill_label.setText(f"{caption}（{len(ids)} {tr('件')}）")
        self.set_filter(CaseFilter(case_ids=ids or frozenset({-1})))

    def select_case(self, case_id: int) -> bool:
        """Select and scroll to a case; False when it is not in the (filtered) queue."""
        row = self.proxy.row_of(case_id)
        if row is None:
            return False
        index = self.proxy.index(row, 0)
        self.table.setCurrentIndex(index)
        self.table.scrollTo(index, QAbstractItemView.ScrollHint.EnsureVisible)
        return True

    def current_case(self) -> CaseRow | None:
        index = self.table.currentIndex()
        return self.proxy.case_at(index.row()) if index.isValid() else None

    def default_order(self) -> None:
        """Back to the queue order: emergencies first, then overdue, then nearest deadline."""
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.proxy.sort(-1)

    def reload_choices(self) -> None:
        engine = self.engine
        run_in_thread(lambda: queue_choices(engine), self._on_choices, self._on_error, context=self)

    def reload_saved_filters(self) -> None:
        engine, uid = self.engine, self.user_id
        run_in_thread(
            lambda: list_filters(engine, uid), self._on_saved, self._on_error, context=self
        )

    def save_current_filter(self, name: str) -> None:
        """Save the current filter under ``name`` for this user (replacing one so named)."""
        engine, uid, criteria = self.engine, self.user_id, self._filter.to_criteria()
        run_in_thread(
            lambda: save_filter(engine, uid, name, criteria),
            self._on_saved_one,
            self._on_error,
            context=self,
        )

    def delete_saved_filter(self, name: str | None = None) -> None:
        """Delete a saved filter (by default the one chosen in the list)."""
        if name is None:
            name = self.saved_combo.currentData()
            if not name:
                self._show_error(tr("请先在列表中选择要删除的筛选。"))
                return
        engine, uid = self.engine, self.user_id
        run_in_thread(
            lambda: delete_filter(engine, uid, name),
            lambda _deleted: self.reload_saved_filters(),
            self._on_error,
            context=self,
        )

    def apply_saved_filter(self, name: str) -> bool:
        criteria = self._saved.get(name)
        if criteria is None:
            return False
        self.set_filter(CaseFilter.from_criteria(criteria))
        index = self.saved_combo.findData(name)
        if index >= 0:
            self.saved_combo.setCurrentIndex(index)
        return True

    def saved_filter_names(self) -> list[str]:
        return list(self._saved)

    def shutdown(self) -> None:
        """Stop the clock; the window calls this before it deletes the view."""
        self.model.timer.stop()
        self._text_timer.stop()

    # -- filter bar ---------------------------------------------------------------------

    def _apply_widgets(self) -> None:
        f = CaseFilter(
            statuses=self.status_picker.statuses(),
            category_class=self.class_combo.currentData(),
            street_code=self.street_combo.currentData(),
            grid_prefix=self.grid_edit.text(),
            department_code=self.department_combo.currentData(),
            overdue_only=self.overdue_check.isChecked(),
            escalated_only=self.escalated_check.isChecked(),
            source=self.source_combo.currentData(),
            text=self.text_edit.text(),
        )
        self._filter = f
        self._apply(f)

    def _apply(self, f: CaseFilter) -> None:
        if not f.case_ids and self.store.pinned:
            self.store.pin(())  # leaving a drill-down: the closed cases go again
        self.drill_bar.setVisible(bool(f.case_ids))
        keep = self._current_id
        self.proxy.set_filter(f)
        if keep is not None and self.proxy.row_of(keep) is None:
            self._drop_current(keep)
        self.filter_changed.emit()

    def _sync_widgets(self) -> None:
        f = self._filter
        widgets = (
            self.text_edit,
            self.grid_edit,
            self.status_picker,
            self.class_combo,
            self.street_combo,
            self.department_combo,
            self.source_combo,
            self.overdue_check,
            self.escalated_check,
        )
        for w in widgets:
            w.blockSignals(True)
        try:
            self.text_edit.setText(f.text)
            self.grid_edit.setText(f.grid_prefix)
            self.status_picker.set_statuses(f.statuses)
            self._choose(self.class_combo, f.category_class)
            self._choose(self.street_combo, f.street_code)
            self._choose(self.department_combo, f.department_code)
            self._choose(self.source_combo, f.source)
            self.overdue_check.setChecked(f.overdue_only)
            self.escalated_check.setChecked(f.escalated_only)
        finally:
            for w in widgets:
                w.blockSignals(False)

    @staticmethod
    def _choose(combo: QComboBox, code: str | None) -> None:
        index = combo.findData(code) if code is not None else 0
        if index < 0:  # a saved code the list does not (yet) have: show it as is
            combo.addItem(code, code)
            index = combo.count() - 1
        combo.setCurrentIndex(index)

    def _on_choices(self, choices: dict) -> None:
        en = self.lang == "en"

        def fill(combo: QComboBox, items: list[dict], text) -> None:
            combo.blockSignals(True)
            while combo.count() > 1:
                combo.removeItem(1)
            for item in items:
                combo.addItem(text(item), item["code"])
            combo.blockSignals(False)

        fill(
            self.class_combo,
            choices["classes"],
            lambda c: f"{c['code']} {c['name_en'] if en and c['name_en'] else c['name']}",
        )
        fill(self.street_combo, choices["streets"], lambda s: s["name"])
        fill(
            self.department_combo,
            choices["departments"],
            lambda d: d["name_en"] if en and d["name_en"] else d["name"],
        )
        self._sync_widgets()

    # -- saved filters ------------------------------------------------------------------------

    def _on_saved(self, items: list[tuple[str, dict]]) -> None:
        self._saved = dict(items)
        self._fill_saved_combo()
        self.saved_filters_changed.emit(list(self._saved))

    def _fill_saved_combo(self) -> None:
        current = self.saved_combo.currentData()
        combo = self.saved_combo
        combo.blockSignals(True)
        combo.clear()
        combo.addItem(tr("— 已保存的筛选 —"), None)
        for name in self._saved:
            combo.addItem(name, name)
        index = combo.findData(current) if current else 0
        combo.setCurrentIndex(max(0, index))
        combo.blockSignals(False)

    def _saved_chosen(self, index: int) -> None:
        name = self.saved_combo.itemData(index)
        if name:
            self.apply_saved_filter(name)

    def _on_saved_one(self, name: str) -> None:
        self.message_label.clear()
        self._saved[name] = self._filter.to_criteria()
        self._fill_saved_combo()
        index = self.saved_combo.findData(name)
        if index >= 0:
            self.saved_combo.setCurrentIndex(index)
        self.reload_saved_filters()

    def _ask_save(self) -> None:
        name, ok = QInputDialog.getText(self, tr("保存筛选"), tr("筛选名称："))
        if ok:
            self.save_current_filter(name)

    def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, GridError):
            self._show_error(exc.message(self.lang))
        else:
            log.warning("case queue: %s", exc)
            self._show_error(tr("数据库暂时不可用，请稍后重试。"))

    def _show_error(self, text: str) -> None:
        self.message_label.setText(text)
        self.message.emit(text)

    # -- selection ---------------------------------------------------------------------------

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self._leaving is not None:
            return  # Qt moves the current row off a removed case; we clear it instead
        cid = self.proxy.case_id_at(current.row()) if current.isValid() else None
        if cid is not None and cid != self._current_id:
            self._current_id = cid
            self.case_selected.emit(cid)

    def _on_activated(self, index: QModelIndex) -> None:
        cid = self.proxy.case_id_at(index.row()) if index.isValid() else None
        if cid is not None:
            self.case_activated.emit(cid)

    def _on_reset(self) -> None:
        self._current_id = None  # a (re)load clears the selection

    def _on_case_leaving(self, case_id: int) -> None:
        if case_id == self._current_id:
            self._leaving = case_id

    def _on_rows_left(self, *_args) -> None:
        leaving, self._leaving = self._leaving, None
        if leaving is not None:
            self._drop_current(leaving)

    def _drop_current(self, case_id: int) -> None:
        self._leaving = case_id
        try:
            selection = self.table.selectionModel()
            selection.clearSelection()
            selection.clearCurrentIndex()
        finally:
            self._leaving = None
        self._current_id = None
        self.current_case_left.emit(case_id)

    def _update_count(self, *_args) -> None:
        self.count_label.setText(
            tr("显示 {shown} / 共 {total} 件").format(
                shown=self.proxy.rowCount(), total=self.model.rowCount()
            )
        )


__all__ = [
    "COLUMN_WIDTHS",
    "CaseFilter",
    "CaseFilterProxy",
    "CaseQueueModel",
    "CaseQueueView",
    "QueueTable",
    "StatusPicker",
]
