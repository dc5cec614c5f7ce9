"""What the queue table repaints when rows come, go and move (widgets/case_queue.QueueTable).

The aim (issue: ~23 ms per change at 100,000 cases): a change to a row off
screen repaints nothing of the viewport; a change on screen repaints the rows
at and below it, within the visible rows; the top visible row keeps its place
when rows come or go above it; and what is on screen is always what a full
repaint would draw.

The stack is the real one (``CaseQueueModel`` → ``CaseFilterProxy`` →
``QueueTable``, the house style sheet, a shown window) fed with cases whose
deadlines are ten minutes apart, so the queue order is known by hand: proxy
row ``r`` shows case ``r + 1`` until something changes.  Paint events are
counted by an event filter on the viewport; the event loop runs until it has
nothing left to do (the view's delayed layout and repaint included), never
for a fixed time.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from PySide6.QtCore import QAbstractEventDispatcher, QEvent, QEventLoop, QObject, QRect, Qt
from PySide6.QtWidgets import QAbstractItemView, QApplication, QHeaderView

from console.case_filter import CaseFilter
from console.case_store import CaseRow
from tests.test_case_queue import _row
from widgets.app import make_app
from widgets.case_model import COL_NUMBER, CaseQueueModel
from widgets.case_proxy import CaseFilterProxy
from widgets.case_queue import QueueTable

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ROW = 28  # pixels, as the queue view sets them
CASES = 400
STEP = timedelta(minutes=10)  # between consecutive deadlines


def case(case_id: int, due: datetime) -> CaseRow:
    """An open case due at ``due``, its other times fixed (the screen must not tick)."""
    return _row(
        id=case_id,
        number=f"20261122-{case_id:05d}",
        reported_at=NOW - timedelta(hours=3),
        stage_started_at=NOW - timedelta(hours=2),
        stage_due_at=due,
        updated_at=NOW,
    )


class PaintSpy(QObject):
    """Records the rectangle of every paint event its widget receives."""

    def __init__(self, widget):
        super().__init__()
        self.rects: list[QRect] = []
        widget.installEventFilter(self)

    def eventFilter(self, _obj, event) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.rects.append(QRect(event.rect()))
        return False


def settle() -> None:
    """Run the event loop until a pass handles nothing (at most 50 passes)."""
    dispatcher = QAbstractEventDispatcher.instance()
    for _ in range(50):
        if not dispatcher.processEvents(QEventLoop.ProcessEventsFlag.AllEvents):
            return


class Queue:
    """A shown queue table over ``CASES`` cases; proxy row r holds case r + 1."""

    def __init__(self, proxy_class=CaseFilterProxy):
        make_app()
        self.model = CaseQueueModel(lang="zh", tick_ms=0)
        self.model.set_clock(lambda: NOW.timestamp())
        self.model.set_rows(case(i, NOW + i * STEP) for i in range(1, CASES + 1))
        self.proxy = proxy_class()
        self.proxy.setSourceModel(self.model)
        t = self.table = QueueTable()
        t.setModel(self.proxy)
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        rows = t.verticalHeader()
        rows.hide()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        rows.setDefaultSectionSize(ROW)
        t.resize(900, 500)
        t.show()
        settle()
        self.viewport = t.viewport()
        self.spy = PaintSpy(self.viewport)
        self.next_id = 10_000

    def due_before(self, row: int) -> datetime:
        """A deadline that sorts just before the case now at proxy ``row``."""
        at = self.proxy.case_at(row).stage_due_at
        if row == 0:
            return at - STEP / 2
        return at - (at - self.proxy.case_at(row - 1).stage_due_at) / 2

    def insert_at(self, row: int) -> int:
        self.next_id += 1
        self.model.upsert(case(self.next_id, self.due_before(row)))
        return self.next_id

    def remove_at(self, row: int) -> int:
        case_id = self.proxy.case_id_at(row)
        self.model.remove(case_id)
        return case_id

    def move(self, row: int, to: int) -> int:
        """Give the case at ``row`` a deadline that sorts it just before the one at ``to``."""
        old = self.proxy.case_at(row)
        due = self.due_before(to) if to < self.proxy.rowCount() else NOW + 10_000 * STEP
        self.model.upsert(replace(old, stage_due_at=due, version=old.version + 1))
        return old.id

    def paints(self, change) -> list[QRect]:
        """The viewport's paint rectangles for ``change`` and the view's update after it."""
        settle()
        self.spy.rects.clear()
        change()
        settle()
        return list(self.spy.rects)

    def from_row(self, visible_row: int) -> QRect:
        """The viewport from the top of its ``visible_row``-th row down to the bottom."""
        y = visible_row * ROW
        return QRect(0, y, self.viewport.width(), self.viewport.height() - y)

    def whole(self) -> QRect:
        return self.viewport.rect()

    def top_case(self) -> int:
        return self.proxy.case_id_at(self.table.rowAt(0))

    def y_of(self, case_id: int) -> int:
        return self.table.rowViewportPosition(self.proxy.row_of(case_id))

    def close(self) -> None:
        self.table.close()
        for obj in (self.table, self.proxy, self.model):
            obj.deleteLater()
        QApplication.sendPostedEvents(None, 0)
        QApplication.processEvents()


@pytest.fixture
def queue(qtbot):
    q = Queue()
    yield q
    q.close()


class CountingProxy(CaseFilterProxy):
    """The queue's proxy, counting the column header's questions."""

    header_questions = 0

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        self.header_questions += 1
        return super().headerData(section, orientation, role)


def test_changes_off_screen_repaint_nothing(queue):
    q = queue
    shown = q.viewport.height() // ROW  # rows on screen (17 at 500 px)
    assert q.table.rowAt(0) == 0 and 10 < shown < 40 < 300
    bar = q.table.verticalScrollBar()
    page = bar.pageStep()  # rows per page, as Qt counts them
    assert bar.maximum() == CASES - page

    new = None

    def insert():
        nonlocal new
        new = q.insert_at(300)

    assert q.paints(insert) == []
    assert q.proxy.row_of(new) == 300
    assert bar.maximum() == CASES + 1 - page  # the range follows: the end stays reachable

    gone = None

    def remove():
        nonlocal gone
        gone = q.remove_at(350)

    assert q.paints(remove) == []
    assert q.proxy.row_of(gone) is None
    assert bar.maximum() == CASES - page

    moved = None

    def move():
        nonlocal moved
        moved = q.move(200, 320)

    assert q.paints(move) == []
    assert q.proxy.row_of(moved) == 319  # before the case that was at 320, itself now one up

    def update():
        old = q.proxy.case_at(250)
        q.model.upsert(replace(old, escalation=1, version=old.version + 1))

    assert q.paints(update) == []

    # Nothing moved on screen either: the top rows hold cases 1, 2, 3 … still.
    assert [q.proxy.case_id_at(r) for r in range(shown)] == list(range(1, shown + 1))


def test_changes_on_screen_repaint_from_the_change_down(queue):
    q = queue
    assert q.paints(lambda: q.remove_at(5)) == [q.from_row(5)]
    assert q.paints(lambda: q.insert_at(3)) == [q.from_row(3)]
    # Case at row 10 moves to row 2: rows 2–10 shift, the repaint starts at 2.
    assert q.paints(lambda: q.move(10, 2)) == [q.from_row(2)]
    # From row 2 on screen down to beyond it: rows from 2 shift up.
    assert q.paints(lambda: q.move(2, 300)) == [q.from_row(2)]
    # One row updated in place: that row only (Qt adds the grid line below it).
    row7 = QRect(0, 7 * ROW, q.viewport.width(), ROW + 1)

    def update():
        old = q.proxy.case_at(7)
        q.model.upsert(replace(old, escalation=2, version=old.version + 1))

    assert q.paints(update) == [row7]


SCROLL_MODES = pytest.mark.parametrize(
    "scroll",
    [QAbstractItemView.ScrollMode.ScrollPerItem, QAbstractItemView.ScrollMode.ScrollPerPixel],
    ids=["per-row", "per-pixel"],  # the queue's, and what some styles choose
)


@SCROLL_MODES
def test_rows_above_the_top_row_leave_it_in_place(queue, scroll):
    q = queue
    q.table.setVerticalScrollMode(scroll)
    unit = 1 if scroll == QAbstractItemView.ScrollMode.ScrollPerItem else ROW  # a row, in value
    bar = q.table.verticalScrollBar()
    settle()
    bar.setValue(100 * unit)
    settle()
    assert q.top_case() == 101
    q.table.selectRow(105)  # case 106
    settle()

    def still(rows_above: int) -> None:
        assert q.top_case() == 101 and q.y_of(101) == 0
        assert bar.value() == rows_above * unit
        assert q.table.currentIndex().row() == q.proxy.row_of(106)
        assert [i.row() for i in q.table.selectionModel().selectedRows()] == [q.proxy.row_of(106)]

    assert q.paints(lambda: q.insert_at(50)) == []
    still(101)
    assert q.paints(lambda: q.remove_at(20)) == []
    still(100)
    assert q.paints(lambda: q.move(30, 300)) == []  # from above the screen to below it
    still(99)
    assert q.paints(lambda: q.move(350, 10)) == []  # from below the screen to above it
    still(100)
    # The top row itself goes: the next case takes its place, everything shown moves.
    assert q.paints(lambda: q.model.remove(101)) == [q.whole()]
    assert q.top_case() == 102 and q.y_of(102) == 0
    # At the very head of the queue a new first case is shown, pushing the others down.
    bar.setValue(0)
    settle()
    first = q.top_case()
    new = None

    def insert_first():
        nonlocal new
        new = q.insert_at(0)

    assert q.paints(insert_first) == [q.whole()]
    assert q.top_case() == new and q.y_of(first) == ROW


def test_row_changes_leave_the_column_header_alone(qtbot):
    """Moved rows and changed cells neither repaint nor re-measure the column header.

    (Qt's header repaints every section after rows move and measures every
    section again after any cell change: Python ``headerData`` calls each time.)
    """
    q = Queue(CountingProxy)
    try:
        asked = q.proxy
        header = q.table.horizontalHeader()
        height = header.height()
        settle()
        asked.header_questions = 0
        changes = (
            lambda: q.insert_at(300),
            lambda: q.remove_at(310),
            lambda: q.move(200, 320),
            lambda: q.move(5, 250),  # on screen: the rows repaint, the header does not
            lambda: q.model.upsert(replace(q.proxy.case_at(3), escalation=2)),
        )
        for change in changes:
            change()
            settle()
        assert asked.header_questions == 0
        assert header.height() == height
        # The header's own changes still reach it.
        q.model.set_lang("zh")  # headerDataChanged for every column
        settle()
        assert asked.header_questions > 0
    finally:
        q.close()


def test_a_column_sized_to_its_cells_still_follows_them(queue):
    q = queue
    header = q.table.horizontalHeader()
    header.setSectionResizeMode(COL_NUMBER, QHeaderView.ResizeMode.ResizeToContents)
    settle()
    narrow = header.sectionSize(COL_NUMBER)
    first = q.proxy.case_at(0)
    q.model.upsert(replace(first, number=first.number + " " + "很长的编号" * 6))
    settle()
    assert header.sectionSize(COL_NUMBER) > narrow + 100


@SCROLL_MODES
def test_what_is_on_screen_is_what_a_full_repaint_draws(queue, scroll):
    """Many changes at random (fixed seed), anywhere, with the view anywhere.

    After each, the window's pixels (the offscreen platform's backing store,
    i.e. what the operator sees) are compared with those after repainting the
    whole table: a stale row, a row drawn at the wrong place or a scroll
    bar handle left behind shows as a difference.
    """
    q = queue
    q.table.setVerticalScrollMode(scroll)
    settle()
    rnd = random.Random(20261122)
    bar = q.table.verticalScrollBar()
    screen = QApplication.primaryScreen()

    def on_screen():
        return screen.grabWindow(q.table.winId()).toImage()

    def near_screen() -> int:
        n = q.proxy.rowCount()
        if rnd.random() < 0.6:
            return max(0, min(n - 1, q.table.rowAt(0) + rnd.randint(-3, 22)))
        return rnd.randrange(n)

    changes = {
        "insert": lambda: q.insert_at(near_screen()),
        "remove": lambda: q.remove_at(near_screen()),
        "move": lambda: q.move(near_screen(), near_screen()),
        "update": lambda: q.model.upsert(replace(q.proxy.case_at(near_screen()), escalation=1)),
    }
    # (A check that compares nothing would pass: make sure the pixels can differ.
    # The clock moves an hour without the model saying so: ages and countdowns
    # drawn again differ from those on screen.)
    before = on_screen()
    q.model.now += 3600
    settle()
    assert on_screen() == before
    q.viewport.update()
    settle()
    assert on_screen() != before

    for k in range(120):
        if k % 15 == 0:  # the head, the very end, anywhere
            bar.setValue(rnd.choice([0, bar.maximum(), rnd.randint(0, bar.maximum())]))
        if k % 11 == 0:
            q.table.selectRow(near_screen())
        if k == 60:
            q.proxy.sort(COL_NUMBER)
        if k == 90:
            q.proxy.set_filter(CaseFilter(escalated_only=False, text="2026"))
        settle()
        kinds = [rnd.choice(list(changes)) for _ in range(rnd.choice([1, 1, 1, 3]))]
        for kind in kinds:  # one change, or a burst before the view updates
            changes[kind]()
        settle()
        shown = on_screen()
        q.viewport.update()
        bar.update()
        settle()
        assert shown == on_screen(), f"change {k} ({', '.join(kinds)}) left the screen stale"
