"""The window shell as a new user meets it: where it opens, how to leave, 帮助, the login.

- The window opens maximised the first time and, after that, where this user
  left it (saved per user in the database, like the dock layout).
- 系统 → 退出 (Ctrl+Q) leaves the console cleanly; 帮助 → 关于 says which
  version, which database (never a password) and which keys.
- The login dialog on the embedded demo says it is the demo and lists the
  README's demo logins; on a shared server it never does.

Expected values come from the README (its login and key tables, its role
table) and pyproject.toml, not from the code under test.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from PySide6.QtCore import QRect, Qt, QTimer
from PySide6.QtGui import QAction
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLabel
from sqlalchemy import text

from console.config import Settings
from db.engine import make_engine
from db.layouts import load_layout
from db.users import get_actor
from tests.conftest import PASSWORD
from widgets.about_dialog import AboutDialog
from widgets.app import ConsoleController, make_app
from widgets.main_window import MainWindow

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text("utf-8")


def readme_table(header: str) -> list[list[str]]:
    """The rows of the README table whose header line starts with ``header``."""
    lines = README.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return rows


def readme_keys() -> dict[str, str]:
    """README's key table: key → action (``F8 / F9`` split into both keys)."""
    keys = {}
    for row in readme_table("| key | action |"):
        for key, action in ((row[0], row[1]), (row[2], row[3])):
            names = [a.strip() for a in action.split("/")]
            # "verification pass / fail": the second shares the first's noun.
            names = [names[0]] + [n if " " in n else " ".join([*names[0].split()[:-1], n])
                                  for n in names[1:]]
            for k, name in zip([k.strip() for k in key.split("/")], names, strict=True):
                keys[k] = name
    return keys


def readme_case_actions() -> set[str]:
    """README's list of case actions (``Actions: `report, accept, …```)."""
    listed = re.search(r"Actions: `([^`]*)`", README, re.S).group(1)
    return {a.strip() for a in listed.replace("\n", " ").split(",")}


def readme_roles() -> dict[str, str]:
    """README's role table: role → the actions it may take (the cell's text)."""
    return {row[0].split()[0]: row[1] for row in readme_table("| role | may |")}


@pytest.fixture
def window(qtbot, db_url, tmp_path):
    """``window(user)``: a main window on its own engine, not yet shown."""
    make_app()
    opened = []

    def open_window(user: str, station: str = "ws-shell") -> MainWindow:
        engine = make_engine(db_url)
        win = MainWindow(engine, get_actor(engine, user, station),
                         Settings(database_url=db_url, data_dir=tmp_path), start_feed=False)
        qtbot.addWidget(win)
        opened.append((win, engine))
        return win

    yield open_window
    for win, engine in opened:
        win.shutdown()
        win.close()
        engine.dispose()


# --- where the window opens -------------------------------------------------------------


def test_window_opens_maximised_then_where_the_user_left_it(qtbot, window, engine):
    first = window("intake1")
    first.present()
    qtbot.waitUntil(lambda: first.isVisible(), timeout=10_000)
    assert first.isMaximized()  # nothing saved yet for this user
    first.showNormal()
    # Larger than the window's minimum size (its toolbar), placed off the origin.
    first.setGeometry(QRect(60, 40, 1300, 760))
    qtbot.waitUntil(lambda: first.size().width() == 1300 and not first.isMaximized(),
                    timeout=5000)
    first.shutdown()  # leaving saves the layout and the geometry for this user
    first.close()
    uid = first.actor.id
    assert load_layout(engine, uid, "geometry") is not None

    again = window("intake1", "ws-other")  # the same user, another workstation
    again.present()
    qtbot.waitUntil(lambda: again.isVisible(), timeout=10_000)
    assert not again.isMaximized()
    # Restored, not maximised.  The offscreen screen is 800 px wide, narrower than the
    # window's minimum width, so Qt fits the width and x to it; height and y come back.
    restored = again.geometry()
    assert restored.height() == 760 and abs(restored.y() - 40) <= 2, restored

    someone_else = window("dispatcher1")
    someone_else.present()
    qtbot.waitUntil(lambda: someone_else.isVisible(), timeout=10_000)
    assert someone_else.isMaximized()  # their own first time


def test_a_maximised_window_comes_back_maximised(qtbot, window):
    first = window("verifier1")
    first.present()
    qtbot.waitUntil(lambda: first.isVisible() and first.isMaximized(), timeout=10_000)
    first.shutdown()
    first.close()
    again = window("verifier1")
    again.present()
    qtbot.waitUntil(lambda: again.isVisible(), timeout=10_000)
    assert again.isMaximized()


# --- 系统 → 退出 ----------------------------------------------------------------------


def menu_actions(win: MainWindow, title: str) -> dict[str, QAction]:
    menu = next(a.menu() for a in win.menuBar().actions() if a.text() == title)
    return {a.objectName(): a for a in menu.actions() if a.objectName()}


def test_system_menu_has_quit_on_ctrl_q_and_it_leaves_cleanly(qtbot, db_url, tmp_path):
    """Through the real controller: log in, 系统 → 退出, and the application's loop ends."""
    app = make_app()
    controller = ConsoleController(Settings(database_url=db_url, data_dir=tmp_path))
    other = QLabel("another window stays open")  # so only 退出 itself can end the loop
    done = False
    try:
        controller.start()
        qtbot.waitUntil(lambda: controller.login is not None and controller.login.isVisible(),
                        timeout=20_000)
        controller.login.user.setText("dispatcher1")
        controller.login.password.setText(PASSWORD)
        controller.login.submit()
        qtbot.waitUntil(lambda: controller.window is not None and controller.window.isVisible(),
                        timeout=10_000)
        win = controller.window
        quit_action = menu_actions(win, "系统")["act_quit"]
        assert quit_action.text() == "退出"
        assert quit_action.shortcut().toString() == "Ctrl+Q"
        other.show()
        win.activateWindow()
        # The key itself, pressed in the queue as an operator would.
        QTimer.singleShot(0, lambda: QTest.keyClick(win.queue, Qt.Key.Key_Q,
                                                    Qt.KeyboardModifier.ControlModifier))
        failsafe = QTimer(singleShot=True, interval=15_000)  # 退出 did not quit
        failsafe.timeout.connect(lambda: app.exit(99))
        failsafe.start()
        code = app.exec()
        failsafe.stop()
        assert code == 0
        assert not win.isVisible()
        # What run_window does once the loop has ended: the last writes finish (bounded).
        controller.shutdown()
        done = True
        engine = make_engine(db_url)
        try:  # left cleanly: layout and geometry saved for the user, presence cleared
            uid = win.actor.id
            assert load_layout(engine, uid) is not None
            assert load_layout(engine, uid, "geometry") is not None
            with engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM presence WHERE user_id = :u"),
                                    {"u": uid}).scalar() == 0
        finally:
            engine.dispose()
    finally:
        if not done:
            controller.shutdown()
        if controller.login is not None:
            controller.login.close()
        other.close()
        # A quit() with no loop running (closing the last window just did one) would end
        # every later event loop at once: end on a loop of our own, which clears it.
        QTimer.singleShot(0, app.quit)
        app.exec()


# --- 帮助 → 关于 ----------------------------------------------------------------------


def test_help_about_names_version_database_and_the_keys_of_the_role(qtbot, window, db_url):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]
    keys = readme_keys()
    may = readme_roles()
    case_actions = readme_case_actions()
    for user, role in (("dispatcher1", "dispatcher"), ("intake1", "intake")):
        win = window(user)
        about = menu_actions(win, "帮助")["act_about"]
        assert about.text() == "关于"
        about.trigger()
        dialog = win.about
        qtbot.waitUntil(lambda d=dialog: d.isVisible(), timeout=5000)
        assert dialog.version.text() == version
        assert "共享服务器" in dialog.database.text()
        shown = dict(dialog.shortcut_rows())
        assert shown["Ctrl+Q"] == "退出" and shown["F1"] == "关于"
        for key, action in keys.items():
            allowed = action.replace("feed back", "feedback").replace(" ", "_")
            allowed = {"verification_pass": "verify_pass",
                       "verification_fail": "verify_fail"}.get(allowed, allowed)
            if allowed not in case_actions:  # quit, about: every role's
                assert key in shown, (user, key, action)
                continue
            # The README's role table says whether this role may take the action.
            assert (key in shown) == (re.search(rf"\b{allowed}\b", may[role]) is not None), (
                user, key, action)
        dialog.close()


def test_about_never_shows_a_password(qtbot, tmp_path):
    make_app()
    shared = AboutDialog(Settings(database_url="postgresql://grid:s3cret@db.hall:5432/grid",
                                  data_dir=tmp_path), [("Ctrl+Q", "退出")])
    qtbot.addWidget(shared)
    assert "s3cret" not in shared.database.text()
    assert "grid:***@db.hall:5432/grid" in shared.database.text()
    embedded = AboutDialog(Settings(database_url=None, data_dir=tmp_path / "demo"), [])
    qtbot.addWidget(embedded)
    assert embedded.database.text() == f"内置演示数据库，位于 {tmp_path / 'demo'}"


# --- the login dialog on the demo, and never elsewhere ---------------------------------


def login_for(qtbot, engine, settings: Settings):
    make_app()
    controller = ConsoleController(settings)
    controller.engine = engine  # the database is open: the next step is the login
    controller.show_login()
    qtbot.addWidget(controller.login)
    qtbot.waitUntil(lambda: controller.login.isVisible(), timeout=5000)
    return controller.login


def test_login_on_the_embedded_demo_says_so_and_lists_the_demo_logins(qtbot, engine, tmp_path):
    login = login_for(qtbot, engine, Settings(database_url=None, data_dir=tmp_path))
    assert login.demo_hint is not None and login.demo_hint.isVisible()
    assert "演示数据库 · demo" in login.demo_hint.text()
    expected = readme_table("| login | role | password |")
    shown = login.demo_rows()
    assert [(u, p) for u, _, p in shown] == [(row[0], row[2]) for row in expected]
    for (_, role, _), row in zip(shown, expected, strict=True):
        assert row[1].startswith(role), (role, row[1])  # 受理员 intake operator …
    login.use_demo_login(1)
    assert (login.user.text(), login.password.text()) == (expected[1][0], expected[1][2])


def test_login_on_a_shared_server_never_shows_demo_logins(qtbot, engine, db_url, tmp_path):
    login = login_for(qtbot, engine, Settings(database_url=db_url, data_dir=tmp_path))
    assert login.demo_hint is None and login.demo_rows() == []
    texts = " ".join(w.text() for w in login.findChildren(QLabel))
    assert "demo" not in texts and "演示" not in texts
    assert QApplication.instance() is not None
