"""The window the console opens today: database status, live from the change feed."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from console.config import Settings
from console.live import LiveFeed
from tests.flows import report, step
from widgets.app import StatusWindow, make_app


@pytest.fixture
def window(qtbot, db_url, tmp_path):
    make_app()
    win = StatusWindow(Settings(database_url=db_url, data_dir=tmp_path, lang="zh"))
    qtbot.addWidget(win)
    win.show()
    win.open()
    qtbot.waitUntil(
        lambda: win.loaded and win.live is not None and win.live.feed.online, timeout=20_000
    )
    yield win
    win.shutdown()


def test_live_feed_signals_arrive_on_the_gui_thread(qtbot, engine, actors):
    from PySide6.QtCore import QThread

    make_app()
    live = LiveFeed(engine).start()
    threads = []
    live.entries.connect(lambda entries: threads.append(QThread.currentThread()))
    try:
        with qtbot.waitSignal(live.entries, timeout=5000) as blocker:
            report(engine, actors)
        assert blocker.args[0][0].action == "report"
        assert threads and threads[0] is QThread.currentThread()
    finally:
        live.stop()


def test_status_window_shows_the_database_and_updates_live(window, qtbot, engine, actors):
    view = window.view
    from db.migrate import head_revision

    assert view.fields["schema"].text().startswith(head_revision())
    assert view.fields["cases"].text() == "0"
    assert "在线" in view.fields["feed"].text()
    case = report(engine, actors)
    step(engine, actors, case, "accept")
    qtbot.waitUntil(lambda: view.recent.count() == 2, timeout=5000)
    assert case.number in view.recent.item(0).text() and "受理" in view.recent.item(0).text()
    qtbot.waitUntil(lambda: view.fields["cases"].text() == "1", timeout=5000)


def test_status_window_goes_offline_and_catches_up(
    window, qtbot, engine, actors, pg_server, db_url
):
    view = window.view
    feed = view.fields["feed"]
    assert "在线" in feed.text() and not feed.property("alarm")
    name = make_url(db_url).database
    admin = pg_server.admin()
    try:
        # Keep the feed out (new connections refused) long enough to be seen offline.
        with admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            cur.execute("SELECT pg_terminate_backend(%s)", (window.live.feed.backend_pid,))
        qtbot.waitUntil(lambda: "离线" in feed.text(), timeout=5000)
        assert "在线" not in feed.text() and feed.property("alarm") is True
        # Work goes on while the window is cut off (a connection the pool already holds).
        missed = report(engine, actors)
        assert view.recent.count() == 0
    finally:
        with admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()
    qtbot.waitUntil(lambda: "在线" in feed.text(), timeout=10_000)
    assert not feed.property("alarm")
    # Back online, it caught up with what it missed.
    qtbot.waitUntil(lambda: view.recent.count() == 1, timeout=10_000)
    assert missed.number in view.recent.item(0).text()


def test_unreachable_database_shows_a_message(qtbot, tmp_path):
    make_app()
    win = StatusWindow(
        Settings(database_url="postgresql+psycopg2://x@127.0.0.1:1/none", data_dir=tmp_path)
    )
    qtbot.addWidget(win)
    win.open()
    qtbot.waitUntil(lambda: win.loaded, timeout=20_000)
    assert "无法连接数据库" in win.view.subtitle.text()
    win.shutdown()
