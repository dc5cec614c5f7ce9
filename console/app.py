"""The console application: Qt setup, the window the console opens, screenshots.

Opening the database (which may start the embedded server and migrate it)
runs on a worker thread, so the window appears at once and says what it is
waiting for.
"""

from __future__ import annotations

import os
import sys
import time
from importlib import resources

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
from sqlalchemy import Engine

from console.config import Settings, workstation_name
from console.escalator import Escalator
from console.tasks import run_in_thread
from db.errors import GridError

THEMES = ("dark", "light")


def pin_none() -> None:
    """Work around PySide6 6.12 on Python 3.11 dropping a reference to ``None``.

    Measured here: every call of a Qt method returning nothing (``setEnabled``,
    ``setText`` …) lowers ``None``'s reference count by one; after a shift of
    countdown refreshes it reaches zero and the process aborts with "Fatal
    Python error: none_dealloc".  From Python 3.12 ``None`` is immortal; before
    that, give it a reference count no console will ever use up.
    """
    if sys.version_info < (3, 12) and not getattr(pin_none, "done", False):
        import ctypes

        ctypes.c_ssize_t.from_address(id(None)).value += 1 << 40
        pin_none.done = True


def make_app(argv: list[str] | None = None, theme: str = "dark") -> QApplication:
    """The QApplication, created once, with the house style applied."""
    pin_none()
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv or [sys.argv[0]])
        app.setApplicationName("grid-console")
        app.setApplicationDisplayName("网格指挥调度台")
    app.setStyleSheet(style_sheet(theme))
    return app


def style_sheet(theme: str) -> str:
    name = theme if theme in THEMES else "dark"
    return resources.files("resources").joinpath(f"{name}.qss").read_text("utf-8")


class StatusWindow(QMainWindow):
    """The window shown until the operator console lands: database status, live."""

    def __init__(self, settings: Settings):
        from widgets.status_view import StatusView

        super().__init__()
        self.settings = settings
        self.engine: Engine | None = None
        self.live = None
        self.escalator = None
        self.simulator = None
        self.loaded = False
        self.view = StatusView(settings.lang)
        self.setCentralWidget(self.view)
        self.setWindowTitle(self.view.t("title"))
        self._refresh = QTimer(self, singleShot=True, interval=300)
        self._refresh.timeout.connect(self.reload)

    def open(self) -> None:
        """Open the database off the GUI thread, then load and go live."""
        from console.bootstrap import open_database

        run_in_thread(
            lambda: open_database(self.settings, seed_if_empty=True),
            self._opened,
            self._failed,
            context=self,
        )

    def _opened(self, engine: Engine) -> None:
        from console.live import LiveFeed
        from db.feed import current_seq

        self.engine = engine
        # Start a little in the past so the window opens with recent history.
        self.live = LiveFeed(engine, start_seq=max(0, current_seq(engine) - 50))
        self.live.entries.connect(self._on_entries)
        self.live.online.connect(self.view.set_online)
        self.live.start()
        self.escalator = Escalator(engine, parent=self).start()
        if self.settings.database_url is None and self.settings.simulate:
            # The embedded demo: keep the district alive behind the window.
            from console.simulator import Simulator

            self.simulator = Simulator(engine).start()
        self.reload()

    def reload(self) -> None:
        from console.status import database_status

        engine = self.engine
        if engine is not None:
            run_in_thread(lambda: database_status(engine), self._show, self._failed, context=self)

    def _show(self, status: dict) -> None:
        self.view.show_status(status)
        self.loaded = self.live is None or self.live.last_seq >= status["log_seq"]
        if not self.loaded:
            self._refresh.start()

    def _failed(self, exc: Exception) -> None:
        text = exc.message(self.settings.lang) if isinstance(exc, GridError) else str(exc)
        self.view.show_error(text)
        self.loaded = True

    def _on_entries(self, entries: list) -> None:
        self.view.add_entries(entries)
        self._refresh.start()

    def shutdown(self) -> None:
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None
        if self.escalator is not None:
            self.escalator.timer.stop()
        if self.live is not None:
            self.live.stop()
            self.live = None


class ConsoleController(QObject):
    """Open the database, log in, run the main window; back to login on logout.

    The database is opened (and the embedded demo seeded on first start) on
    a worker thread while a status window says what is happening, so the
    screen is never frozen.
    """

    def __init__(self, settings: Settings):
        super().__init__()
        self.settings = settings
        self.engine: Engine | None = None
        self.status = StatusWindow(settings)
        self.status.resize(900, 600)
        self.window = None
        self.simulator = None
        self.login = None

    def start(self) -> None:
        from console.bootstrap import open_database

        self.status.show()
        run_in_thread(
            lambda: open_database(self.settings, seed_if_empty=True),
            self._opened,
            self.status._failed,
            context=self,
        )

    def _opened(self, engine: Engine) -> None:
        self.engine = engine
        self.status.hide()
        if self.settings.database_url is None and self.settings.simulate:
            from console.simulator import Simulator

            self.simulator = Simulator(engine).start()
        self.show_login()

    def show_login(self) -> None:
        from db.users import authenticate
        from widgets.login_dialog import LoginDialog

        engine = self.engine
        station = workstation_name()
        self.login = LoginDialog(
            lambda n, p: authenticate(engine, n, p, station), self.settings.lang
        )
        self.login.logged_in.connect(self._logged_in)
        self.login.rejected.connect(QApplication.instance().quit)
        self.login.show()

    def _logged_in(self, actor) -> None:
        from console.main_window import MainWindow

        self.window = MainWindow(self.engine, actor, self.settings)
        self.window.logout_requested.connect(self._logged_out)
        self.window.resize(1600, 950)
        self.window.show()

    def _logged_out(self) -> None:
        window, self.window = self.window, None
        if window is not None:
            window.hide()
            window.deleteLater()
        self.show_login()

    def shutdown(self) -> None:
        if self.window is not None:
            self.window.shutdown()
        if self.simulator is not None:
            self.simulator.stop()
        self.status.shutdown()


def run_window(settings: Settings) -> int:
    from console.i18n import install

    app = make_app()
    install(settings.lang)
    controller = ConsoleController(settings)
    controller.start()
    code = app.exec()
    controller.shutdown()
    return code


def _wait(app, done, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    for _ in range(10):
        app.processEvents()


def screenshot(
    settings: Settings, out: str, view: str, size: tuple[int, int], user: str | None = None
) -> int:
    """Render ``view`` ('console' or 'status') offscreen at ``size`` into the PNG ``out``.

    The console view logs ``user`` in without a password (this renders the
    local database for review; it acts as nobody) and opens the first case.
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from console.i18n import install

    settings.simulate = False  # a picture of the state as it is
    app = make_app()
    install(settings.lang)
    if view == "status":
        window = StatusWindow(settings)
        window.resize(*size)
        window.show()
        window.open()
        _wait(app, lambda: window.loaded, 60)
    else:
        from console.bootstrap import open_database
        from console.main_window import MainWindow
        from db.users import get_actor

        engine = open_database(settings, seed_if_empty=True)
        actor = get_actor(engine, user or "dispatcher", workstation_name())
        window = MainWindow(engine, actor, settings, keep_layout=False)
        window.resize(*size)
        window.show()
        _wait(app, lambda: window.store.is_loaded and window.live.feed.online, 30)
        _wait(app, lambda: window.queue.proxy.rowCount() > 0, 10)
        if window.queue.proxy.rowCount() > 0:
            # The top of the queue, as an operator would click it.
            window.queue.table.setCurrentIndex(window.queue.proxy.index(0, 0))
            _wait(app, lambda: window.current is not None, 15)
    ok = window.grab().save(out)
    window.shutdown()
    window.close()
    print(out if ok else f"could not write {out}")
    return 0 if ok else 1
