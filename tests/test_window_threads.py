"""The window never waits on the database on its GUI thread (issue 10, "The window and its
threads"), and the change feed loses nothing when a receiver fails.

How it is seen: every statement and connection attempt an engine makes is
recorded with the thread it ran on (SQLAlchemy's own events, on the real
database); during the operator's gestures (the first action, logging out,
closing) none may run on the GUI thread.  The feed, the detail's photos and the
actions' tooltips are checked on a real console window (pytest-qt).
"""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QColor, QImage
from sqlalchemy import event, text

from console.config import Settings
from console.live import LiveFeed
from db.case_actions import perform
from db.engine import make_engine
from db.feed import ChangeFeed, current_seq, dsn_of
from db.layouts import load_layout
from db.users import get_actor
from tests.conftest import wait_for
from tests.flows import REPORT, case_in, report
from widgets.app import make_app
from widgets.main_window import MainWindow


class GuiThreadSQL:
    """Every statement and connection attempt ``engine`` makes on the GUI (main) thread."""

    def __init__(self, engine):
        self.engine = engine
        self.hits: list[str] = []
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "do_connect", self._connect)

    def _statement(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if threading.current_thread() is threading.main_thread():
            self.hits.append(statement[:120])

    def _connect(self, dialect, conn_rec, cargs, cparams) -> None:
        if threading.current_thread() is threading.main_thread():
            self.hits.append("connect")

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "do_connect", self._connect)


@pytest.fixture
def window(qtbot, db_url, tmp_path):
    make_app()
    opened = []

    def open_window(user: str, workstation: str = "ws-threads"):
        engine = make_engine(db_url)
        actor = get_actor(engine, user, workstation)
        win = MainWindow(engine, actor, Settings(database_url=db_url, data_dir=tmp_path))
        layout = qtbot.waitSignal(win.layout_loaded, timeout=10_000)
        qtbot.addWidget(win)
        win.resize(1400, 900)
        win.show()
        opened.append((win, engine))
        layout.wait()
        qtbot.waitUntil(lambda: win.store.is_loaded and win.live.feed.online, timeout=15_000)
        return win, engine

    yield open_window
    for win, engine in opened:
        win.shutdown()
        win.close()
        engine.dispose()


# --- the change feed -------------------------------------------------------------------------


def test_a_live_feed_is_made_without_asking_the_database(qtbot, engine, actors):
    """Issue: LiveFeed's constructor read the current sequence on the GUI thread."""
    make_app()
    gone = make_engine("postgresql://nobody@127.0.0.1:1/nothing")
    LiveFeed(gone)  # used to raise (or wait out the connect timeout) right here
    gone.dispose()
    recorder = GuiThreadSQL(engine)
    try:
        live = LiveFeed(engine)
        with qtbot.waitSignal(live.ready, timeout=10_000) as started:
            live.start()
        assert recorder.hits == []
    finally:
        recorder.close()
    try:
        assert started.args[0] == current_seq(engine)  # where the feed begins: the newest
        with qtbot.waitSignal(live.entries, timeout=10_000) as got:
            report(engine, actors)
        assert got.args[0][-1].action == "report"
    finally:
        live.stop()


def test_history_starts_the_feed_that_many_entries_back(qtbot, engine, actors):
    make_app()
    for _ in range(3):
        report(engine, actors)
    newest = current_seq(engine)
    live = LiveFeed(engine, history=2)
    try:
        with qtbot.waitSignal(live.ready, timeout=10_000) as started:
            live.start()
        assert started.args[0] == newest - 2
        qtbot.waitUntil(lambda: live.last_seq == newest, timeout=10_000)
    finally:
        live.stop()


def test_a_receiver_that_fails_gets_the_same_entries_again(engine, actors):
    """Issue: the feed advanced ``last_seq`` before the callback ran, so a callback that
    raised lost that batch for good."""
    start = current_seq(engine)
    made = [report(engine, actors).seq for _ in range(3)]
    calls: list[list[int]] = []
    delivered: list[int] = []

    def receive(entries) -> None:
        calls.append([e.seq for e in entries])
        if len(calls) == 1:
            raise RuntimeError("a receiver's bug")
        delivered.extend(e.seq for e in entries)

    feed = ChangeFeed(dsn_of(engine), receive, start_seq=start, heartbeat=0.2, max_backoff=0.2)
    feed.start()
    try:
        assert wait_for(lambda: delivered[-1:] == made[-1:], 15)
    finally:
        feed.stop()
    assert calls[0] == made  # the first delivery raised …
    assert delivered == made  # … and was made again, whole, in order
    assert feed.last_seq == made[-1]


# --- the window's gestures ---------------------------------------------------------------------


def test_the_first_action_reads_nothing_on_the_gui_thread(qtbot, window):
    """Issue: the first action click read the departments and categories synchronously."""
    win, engine = window("intake1")
    qtbot.waitUntil(lambda: hasattr(win, "_reference"), timeout=10_000)  # read when it opened
    recorder = GuiThreadSQL(engine)
    try:
        win.start_action("report")
        assert win.dialog is not None and win.dialog.isVisible()
        assert win.dialog.widgets["category"].count() > 0  # the lists are there
    finally:
        recorder.close()
        if win.dialog is not None:
            win.dialog.reject()
    assert recorder.hits == []


def _presence_rows(engine, user_id: int) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM presence WHERE user_id = :u"),
                            {"u": user_id}).scalar_one()


@pytest.mark.parametrize("how", ["logout", "close"])
def test_leaving_writes_nothing_on_the_gui_thread(qtbot, window, engine, actors, how):
    """Issue: logout and close saved the layout and cleared presence on the GUI thread
    (up to twice the connect timeout with the database gone).  The writes still happen,
    on a thread of their own."""
    case = case_in(engine, actors, "reported")
    win, win_engine = window("intake1")
    qtbot.waitUntil(lambda: win.store.get(case.case_id) is not None, timeout=10_000)
    win.open_case(case.case_id)
    qtbot.waitUntil(lambda: _presence_rows(engine, win.actor.id) == 1, timeout=10_000)
    recorder = GuiThreadSQL(win_engine)
    try:
        if how == "logout":
            win.logout()
        else:
            win.close()
        assert recorder.hits == []
    finally:
        recorder.close()
    assert win.leaving is not None
    win.leaving.join(15)
    assert not win.leaving.is_alive()
    assert load_layout(engine, win.actor.id) is not None  # saved …
    assert _presence_rows(engine, win.actor.id) == 0  # … and presence cleared


def _jpeg(width: int, height: int) -> bytes:
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor("#3a7"))
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    assert image.save(buffer, "JPEG", 95)
    return bytes(data)


def test_the_detail_gets_thumbnails_made_off_the_gui_thread(qtbot, window, engine, actors):
    """Issue: the detail decoded up to six full photos on the GUI thread at every refresh."""
    big = _jpeg(4000, 3000)
    case = perform(engine, actors["intake1"], "report", **REPORT,
                   attachments=[("a.jpg", big), ("b.jpg", big)])
    win, _ = window("intake1")
    qtbot.waitUntil(lambda: win.store.get(case.case_id) is not None, timeout=10_000)
    win.open_case(case.case_id)
    qtbot.waitUntil(lambda: win.current is not None and win.current["id"] == case.case_id,
                    timeout=15_000)
    images = win.current["images"]
    assert [name for name, _ in images] == ["a.jpg", "b.jpg"]
    for _, picture in images:  # handed to the GUI thread already decoded and small
        assert isinstance(picture, QImage)
        assert picture.width() <= 120 and picture.height() <= 90
    assert win.detail.images.count() == 2


def test_tooltips_come_back_with_the_database(qtbot, window, pg_server):
    """Issue: after the database came back, the actions' tooltips still said it was gone."""
    win, _ = window("dispatcher1")
    act = win.actions_by_name["dispatch"]
    normal = act.toolTip()
    assert "中断" not in normal
    admin = pg_server.admin()
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (win.live.feed.backend_pid,))
    admin.close()
    qtbot.waitUntil(lambda: not win.offline_banner.isHidden(), timeout=5000)
    assert act.toolTip() == "数据库连接中断，暂不能操作"
    qtbot.waitUntil(lambda: win.offline_banner.isHidden(), timeout=10_000)
    assert act.toolTip() == normal


def test_the_case_detail_is_read_over_one_connection(engine, actors):
    """Issue: the detail was fetched over six connections (one per part); now one."""
    from db.case_context import case_view

    big = _jpeg(800, 600)
    case = perform(engine, actors["intake1"], "report", **REPORT, attachments=[("a.jpg", big)])
    checkouts: list[int] = []

    def checked_out(dbapi_connection, connection_record, connection_proxy) -> None:
        checkouts.append(1)

    event.listen(engine, "checkout", checked_out)
    try:
        view = case_view(engine, case.case_id, actors["dispatcher1"])
    finally:
        event.remove(engine, "checkout", checked_out)
    assert view["number"] == case.number and len(view["images"]) == 1
    assert "duplicates" in view and "workers" in view and "cameras" in view
    assert len(checkouts) == 1
