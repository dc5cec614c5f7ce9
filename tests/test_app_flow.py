"""From start to work and back: open the database, log in, work, switch user."""

from __future__ import annotations

from console.config import Settings
from tests.conftest import PASSWORD
from widgets.app import ConsoleController, make_app


def test_open_login_main_window_and_switch_user(qtbot, db_url, tmp_path):
    make_app()
    controller = ConsoleController(Settings(database_url=db_url, data_dir=tmp_path))
    try:
        controller.start()
        qtbot.waitUntil(lambda: controller.login is not None and controller.login.isVisible(),
                        timeout=20_000)
        login = controller.login
        login.user.setText("dispatcher1")
        login.password.setText("not-the-password")
        login.submit()
        qtbot.waitUntil(lambda: "密码错误" in login.message.text(), timeout=5000)
        assert controller.window is None
        login.password.setText(PASSWORD)
        login.submit()
        qtbot.waitUntil(lambda: controller.window is not None and controller.window.isVisible(),
                        timeout=10_000)
        window = controller.window
        assert "王伟" in window.windowTitle() and "派遣员" in window.windowTitle()
        window.logout()
        qtbot.waitUntil(lambda: controller.login is not login and controller.login.isVisible(),
                        timeout=5000)
        assert controller.window is None
    finally:
        controller.shutdown()
        if controller.login is not None:
            controller.login.close()
