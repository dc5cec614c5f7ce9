"""The operator console as operators use it: login, actions, two workstations, outages."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox, QToolBar
from sqlalchemy import text

from console.config import Settings
from db.engine import make_engine
from db.users import MAX_FAILURES, authenticate, get_actor
from tests.conftest import PASSWORD
from tests.flows import case_in
from tests.workflow_spec import ROLE_MAY, enabled_for
from widgets.app import make_app
from widgets.login_dialog import LoginDialog
from widgets.main_window import MainWindow

ROLE_USER = {"intake": "intake1", "dispatcher": "dispatcher1", "department": "dept_huanwei",
             "verifier": "verifier1", "leader": "leader1", "admin": "admin1", "wall": "wall1"}


@pytest.fixture
def windows(qtbot, db_url, tmp_path):
    """Open main windows on their own engines (own connections), closed at the end.

    Each window is handed over once its user's saved layout has been read
    (``layout_applied``: whether there was one), so no test races the restore.
    """
    make_app()
    opened = []

    def open_window(user: str, workstation: str = "ws-test", start_feed: bool = True):
        engine = make_engine(db_url)
        actor = get_actor(engine, user, workstation)
        win = MainWindow(engine, actor, Settings(database_url=db_url, data_dir=tmp_path),
                         start_feed=start_feed)
        # Connected before the event loop runs, so the answer cannot slip past.
        layout = qtbot.waitSignal(win.layout_loaded, timeout=10_000)
        qtbot.addWidget(win)
        win.resize(1400, 900)
        win.show()
        opened.append((win, engine))
        layout.wait()
        win.layout_applied = layout.args[0]
        qtbot.waitUntil(lambda: win.store.is_loaded, timeout=10_000)
        if start_feed:
            qtbot.waitUntil(lambda: win.live.feed.online, timeout=10_000)
        return win

    yield open_window
    for win, engine in opened:
        win.shutdown()
        win.close()
        engine.dispose()


def select(qtbot, win, case_id: int) -> None:
    qtbot.waitUntil(lambda: win.store.get(case_id) is not None, timeout=10_000)
    win.queue.select_case(case_id)
    win.open_case(case_id)
    qtbot.waitUntil(lambda: win.current is not None and win.current["id"] == case_id,
                    timeout=10_000)


def confirm(dialog) -> None:
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()


def case_status(engine, number: str) -> tuple[str, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(text('SELECT status, version FROM "case" WHERE number = :n'),
                                  {"n": number}).one())


def test_login_success_failure_and_lockout(qtbot, engine):
    make_app()
    dialog = LoginDialog(lambda n, p: authenticate(engine, n, p, "ws-login"))
    qtbot.addWidget(dialog)
    dialog.user.setText("dispatcher1")
    for _ in range(MAX_FAILURES):
        dialog.password.setText("wrong")
        dialog.submit()
        qtbot.waitUntil(lambda: dialog.buttons.isEnabled(), timeout=5000)
        assert dialog.message.text() == "用户名或密码错误。"
    dialog.password.setText(PASSWORD)
    dialog.submit()
    qtbot.waitUntil(lambda: "锁定" in dialog.message.text(), timeout=5000)
    other = LoginDialog(lambda n, p: authenticate(engine, n, p, "ws-login"))
    qtbot.addWidget(other)
    other.user.setText("intake1")
    other.password.setText(PASSWORD)
    with qtbot.waitSignal(other.logged_in, timeout=5000) as got:
        other.submit()
    assert got.args[0].name == "intake1" and got.args[0].role == "intake"


def enabled_actions(win) -> set[str]:
    return {n for n, a in win.actions_by_name.items() if a.isEnabled()}


def test_each_role_sees_exactly_its_actions(qtbot, windows, engine, actors):
    # Expected: the README's role table and DOMAIN's lifecycle (tests/workflow_spec.py).
    cases = {status: case_in(engine, actors, status)
             for status in ("reported", "accepted", "filed", "dispatched", "in_progress",
                            "awaiting_verification")}
    for role, user in ROLE_USER.items():
        win = windows(user, start_feed=False)
        assert role in win.windowTitle() or win.actor.display_name in win.windowTitle()
        # The toolbar holds exactly what the role may do, in the README's words.
        bar = win.findChild(QToolBar, "actionBar")
        shown = {a.objectName().removeprefix("act_") for a in bar.actions() if a.isVisible()}
        assert shown == ROLE_MAY[role], role
        assert enabled_actions(win) == enabled_for(role, None), role  # no case selected
        for status, case in cases.items():
            select(qtbot, win, case.case_id)
            assert enabled_actions(win) == enabled_for(role, status), (role, status)
            win.current = None
            win.current_id = None


def test_dispatch_through_the_dialog_and_see_it_on_another_console(qtbot, windows, engine,
                                                                      actors):
    case = case_in(engine, actors, "filed")
    a = windows("dispatcher1", "ws-a")
    b = windows("intake1", "ws-b")
    select(qtbot, a, case.case_id)
    qtbot.waitUntil(lambda: b.store.get(case.case_id) is not None, timeout=10_000)
    a.start_action("dispatch")
    dialog = a.dialog
    assert dialog.widgets["department"].currentData() == "huanwei"  # recommended
    confirm(dialog)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=10_000)
    assert case_status(engine, case.number) == ("dispatched", case.version + 1)
    # Console B sees the row change within a second, without a refresh.
    qtbot.waitUntil(lambda: b.store.get(case.case_id).status == "dispatched", timeout=2000)
    # And A's detail timeline shows who did it.
    qtbot.waitUntil(lambda: a.current["status"] == "dispatched", timeout=5000)
    assert a.current["log"][-1]["actor_name"] == "王伟"


def test_two_consoles_act_on_one_case_one_gets_the_conflict(qtbot, windows, engine, actors):
    case = case_in(engine, actors, "filed")
    a = windows("dispatcher1", "ws-a")
    b = windows("dispatcher2", "ws-b")
    select(qtbot, a, case.case_id)
    select(qtbot, b, case.case_id)
    a.start_action("dispatch")
    b.start_action("dispatch")
    da, db_ = a.dialog, b.dialog
    confirm(da)
    qtbot.waitUntil(lambda: not da.isVisible(), timeout=10_000)
    confirm(db_)
    qtbot.waitUntil(lambda: "已被 王伟 于" in db_.error.text(), timeout=10_000)
    assert db_.isVisible()
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM case_log WHERE case_id = :i AND "
                              "action = 'dispatch'"), {"i": case.case_id}).scalar_one()
    assert n == 1
    db_.reject()


def test_presence_shows_who_else_is_looking(qtbot, windows, engine, actors):
    case = case_in(engine, actors, "filed")
    a = windows("dispatcher1", "ws-a")
    b = windows("intake1", "ws-b")
    select(qtbot, a, case.case_id)
    select(qtbot, b, case.case_id)
    qtbot.waitUntil(lambda: "王伟" in b.detail.presence.text(), timeout=5000)
    assert "正在查看" in b.detail.presence.text()


def test_offline_banner_and_catch_up(qtbot, windows, engine, actors, pg_server):
    case = case_in(engine, actors, "filed")
    win = windows("dispatcher1", "ws-a")
    select(qtbot, win, case.case_id)
    admin = pg_server.admin()
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (win.live.feed.backend_pid,))
    admin.close()
    qtbot.waitUntil(lambda: not win.offline_banner.isHidden(), timeout=5000)
    assert "中断" in win.offline_banner.text()
    assert not win.actions_by_name["dispatch"].isEnabled()
    # Work goes on elsewhere while this console is cut off.
    new = case_in(engine, actors, "reported")
    qtbot.waitUntil(lambda: win.offline_banner.isHidden(), timeout=10_000)
    qtbot.waitUntil(lambda: win.store.get(new.case_id) is not None, timeout=5000)
    qtbot.waitUntil(lambda: win.actions_by_name["dispatch"].isEnabled(), timeout=5000)


def test_emergency_report_raises_the_banner_everywhere(qtbot, windows, engine, actors):
    a = windows("dispatcher1", "ws-a")
    b = windows("leader1", "ws-b")
    from tests.flows import report

    urgent = report(engine, actors, severity="emergency", description="燃气泄漏")
    for win in (a, b):
        qtbot.waitUntil(lambda w=win: not w.emergency_banner.isHidden(), timeout=5000)
        assert urgent.number in win.emergency_banner.text()


def test_layout_follows_the_user(qtbot, windows, engine):
    win = windows("intake1", "ws-a", start_feed=False)
    assert win.layout_applied is False  # nothing saved yet: the default layout
    assert win.dockWidgetArea(win.queue_dock) == Qt.DockWidgetArea.LeftDockWidgetArea
    win.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, win.queue_dock)
    win.video_dock.close()
    win.shutdown()  # saves the layout for this user
    other = windows("intake1", "ws-b", start_feed=False)  # another workstation
    assert other.layout_applied is True
    assert other.dockWidgetArea(other.queue_dock) == Qt.DockWidgetArea.RightDockWidgetArea
    assert not other.video_dock.isVisible()
    third = windows("dispatcher1", "ws-b", start_feed=False)  # someone else: own layout
    assert third.layout_applied is False
    assert third.dockWidgetArea(third.queue_dock) == Qt.DockWidgetArea.LeftDockWidgetArea
    assert third.video_dock.isVisible()


def test_the_queue_and_the_map_keep_most_of_the_height(qtbot, windows):
    """The patrol panel's wide table set the bottom tabs' least height: at 1600×1000 the
    queue was left one row high. A first-time layout gives the bottom tabs a third."""
    win = windows("dispatcher1")
    win.resize(1600, 1000)
    qtbot.waitUntil(lambda: win.video_dock.height() > 0, timeout=5000)
    win._size_docks()  # what the first layout does once the window has its real size
    # The docks take their new sizes once the layout has run: wait for that, not a while.
    qtbot.waitUntil(lambda: win.queue_dock.height() > win.video_dock.height()
                    and win.video_dock.height() <= 0.4 * win.height(), timeout=5000)
    # The queue shows at least ten rows of cases.
    assert win.queue.table.viewport().height() >= 10 * win.queue.table.verticalHeader(
    ).defaultSectionSize()


def test_every_console_shows_when_the_chain_was_last_verified(qtbot, windows, engine, actors):
    """The wall's login too: "never", then "✓ time" after a verification, then red and the
    altered entry's number once a rewritten entry was found."""
    from db.audit import verify

    case_in(engine, actors, "filed")
    win = windows("wall1", "WALL-1")
    badge = win.audit_badge
    qtbot.waitUntil(lambda: badge.text() == "日志链 未校验", timeout=10_000)
    assert verify(engine).ok
    badge.refresh()
    qtbot.waitUntil(lambda: badge.text().startswith("日志链 ✓ "), timeout=10_000)
    assert not badge.property("alarm")
    with engine.begin() as conn:  # the owner (here: the superuser) rewrites one entry
        target = conn.execute(text("SELECT seq FROM case_log ORDER BY seq OFFSET 1 LIMIT 1")
                              ).scalar_one()
        conn.execute(text("ALTER TABLE case_log DISABLE TRIGGER case_log_no_update"))
        conn.execute(text("UPDATE case_log SET reason = '改写' WHERE seq = :s"), {"s": target})
        conn.execute(text("ALTER TABLE case_log ENABLE ALWAYS TRIGGER case_log_no_update"))
    assert not verify(engine).ok
    badge.refresh()
    qtbot.waitUntil(lambda: badge.text() == f"日志链 ✗ 第 {target} 条被改动", timeout=10_000)
    assert badge.property("alarm") is True
