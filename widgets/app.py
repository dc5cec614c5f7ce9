"""The console application: Qt setup, the window the console opens, screenshots.

Opening the database (which may start the embedded server and migrate it)
runs on a worker thread, so the window appears at once and says what it is
waiting for.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import signal
import sys
import threading
import time
from importlib import resources

from PySide6.QtCore import QObject, Qt, QThreadPool, QTimer
from PySide6.QtWidgets import QApplication, QMainWindow

from console.config import Settings, workstation_name
from console.escalator import Escalator
from console.tasks import run_in_thread
from db.engine import Engine
from db.errors import GridError

log = logging.getLogger(__name__)

THEMES = ("dark", "light")


def pin_none() -> None:
    """Work around PySide6 6.12 on Python 3.11 dropping a reference to ``None``.

    Measured here: every call of a Qt method returning nothing (``setEnabled``,
    ``setText`` …) lowers ``None``'s reference count by one; after a shift of
    countdown refreshes it reaches zero and the process aborts with "Fatal
    Python error: none_dealloc".  From Python 3.12 ``None`` is immortal; before
    that, give it a reference count no console will ever use up.

    ``True`` and ``False`` likewise: every ``Signal.emit`` returns a bool and drops a
    reference to it (measured: 10,000 emits lower ``True``'s count by 10,000), and the
    video wall emits a signal per frame per tile ("bool_dealloc" within minutes).
    """
    if sys.version_info < (3, 12) and not getattr(pin_none, "done", False):
        import ctypes

        for immortal in (None, True, False):
            ctypes.c_ssize_t.from_address(id(immortal)).value += 1 << 40
        pin_none.done = True


def make_app(argv: list[str] | None = None, theme: str = "dark") -> QApplication:
    """The QApplication, created once, with the house style applied."""
    pin_none()
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv or [sys.argv[0]])
        app.setApplicationName("grid-console")
        app.setApplicationDisplayName("网格指挥调度台")
        if gc.isenabled():  # a host that manages collection itself (the tests) is left alone
            from widgets.gc_pump import GuiThreadCollector

            app.gc_pump = GuiThreadCollector(app)
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

        self.engine = engine
        # Start a little in the past so the window opens with recent history (the feed
        # thread reads where that is: nothing here waits on the database).
        self.live = LiveFeed(engine, history=50)
        self.live.entries.connect(self._on_entries)
        self.live.online.connect(self.view.set_online)
        self.live.start()
        self.escalator = Escalator(engine, parent=self).start()
        if self.settings.database_url is None and self.settings.simulate:
            # The embedded demo: keep the district alive behind the window.
            self.simulator = _demo_simulator(engine, self.settings)
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
        self._leaving: list[threading.Thread] = []  # what closed windows still write

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
            self.simulator = _demo_simulator(engine, self.settings)
        self.show_login()

    def show_login(self) -> None:
        from db.demo_seed import demo_logins
        from db.users import authenticate
        from widgets.login_dialog import LoginDialog

        engine = self.engine
        station = workstation_name()
        # The embedded demo says so and offers its logins; a shared server never does.
        demo = demo_logins() if self.settings.database_url is None else None
        self.login = LoginDialog(
            lambda n, p: authenticate(engine, n, p, station), self.settings.lang,
            demo_logins=demo,
        )
        self.login.logged_in.connect(self._logged_in)
        self.login.rejected.connect(QApplication.instance().quit)
        self.login.show()

    def _logged_in(self, actor) -> None:
        from widgets.main_window import MainWindow

        self.window = MainWindow(self.engine, actor, self.settings)
        self.window.logout_requested.connect(self._logged_out)
        self.window.quit_requested.connect(QApplication.instance().quit)
        self.window.present()  # maximised the first time, else where this user left it

    def _logged_out(self) -> None:
        window, self.window = self.window, None
        if window is not None:
            window.hide()
            leaving = window.leaving
            if leaving is not None:
                self._leaving.append(leaving)
            window.deleteLater()
            self._leaving.append(_end_session(self.engine, window.actor, after=leaving))
        self.show_login()

    def shutdown(self) -> None:
        """After the event loop: stop the window's work, let its last writes finish (bounded)."""
        if self.window is not None:
            leaving = self.window.shutdown(wait=False)
            self.window.close()
            if leaving is not None:
                self._leaving.append(leaving)
            self._leaving.append(_end_session(self.engine, self.window.actor, after=leaving))
        if self.login is not None:
            self.login.close()
        if self.simulator is not None:
            self.simulator.stop()
        self.status.shutdown()
        self.status.close()
        deadline = time.monotonic() + 4.0  # a lost database must not hold the exit for long
        for thread in self._leaving:
            thread.join(max(0.0, deadline - time.monotonic()))


def _end_session(engine: Engine, actor, after: threading.Thread | None = None) -> threading.Thread:
    """Revoke the session token in the background: a logged-out token acts no more.

    ``after``: the window's last writes (layout, presence), made with the token.
    """
    from db.users import logout

    def work() -> None:
        if after is not None:
            after.join(10.0)
        try:
            logout(engine, actor)
        except Exception:  # the database is gone: the token expires on its own
            log.info("could not end the session of %s", actor.name)

    thread = threading.Thread(target=work, name="logout", daemon=True)
    thread.start()
    return thread


def _demo_simulator(engine: Engine, settings: Settings):
    """The simulator behind the demo window: operators as the console, terminals as the
    gateway (each through its own database role, as in a hall)."""
    from console.bootstrap import open_database
    from console.simulator import Simulator
    from console.video.demo import for_database
    from widgets.video.text_mask import render_mask

    def gateway() -> Engine:
        return open_database(settings, role="gateway", pool_size=2)

    # The demo's cameras play generated scenes over MJPEG on loopback (console.video.demo).
    video = for_database(engine, settings.data_dir, render_mask)
    return Simulator(engine, position_engine=gateway, video=video).start()


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def quit_on_signals(app: QApplication) -> QTimer:
    """SIGTERM, SIGHUP (a workstation shutting down, its terminal closed) and Ctrl-C end
    the console the way 系统 → 退出 does, instead of killing it where it stands.

    Python runs a signal handler only when the interpreter gets control, which
    Qt's event loop (C++) does not give it; the timer lets Python run four
    times a second.  The handler only asks the loop to quit: ``run_window``
    then closes the window, lets its last writes finish and stops the embedded
    server, which a killed console left running (with its dead process id in
    pgserver's handle file).
    """
    received: list[int] = []

    def handler(signum, _frame) -> None:
        received.append(signum)
        log.warning("signal %d: closing the console", signum)
        QTimer.singleShot(0, app.quit)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    timer = QTimer(app, interval=250)
    timer.timeout.connect(lambda: None)  # a moment of Python for the handlers
    timer.start()
    timer.setProperty("received", received)
    return timer


def run_window(settings: Settings) -> int:
    from console.i18n import install
    from db.engine import stop_embedded

    app = make_app()
    install(settings.lang)
    wake = quit_on_signals(app)
    controller = ConsoleController(settings)
    controller.start()
    code = app.exec()
    wake.stop()
    controller.shutdown()
    # Work already running on the pool (opening the database, a query) ends first,
    # bounded, so the server is not stopped under it.
    pool = QThreadPool.globalInstance()
    pool.clear()
    pool.waitForDone(5000)
    if controller.engine is not None:
        controller.engine.dispose()
    stop_embedded()  # the last console on this machine stops the embedded server
    return code


def _wait(app, done, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    for _ in range(10):
        app.processEvents()


def _fit(window, size: tuple[int, int]) -> None:
    """Resize to ``size``, or to the smallest size of the same shape the window accepts."""
    w, h = size
    least = window.minimumSizeHint().expandedTo(window.minimumSize())
    scale = max(1.0, least.width() / w, least.height() / h)
    window.resize(math.ceil(w * scale), math.ceil(h * scale))


def screenshot(
    settings: Settings, out: str, view: str, size: tuple[int, int], user: str | None = None,
    center: tuple[float, float] | None = None, zoom: float | None = None,
    layout: str | None = None, at=None,
) -> int:
    """Render ``view`` (console, kpi, workers, status, map, video) offscreen into ``out``.

    The console view logs ``user`` in (``console.identity.tool_login``: the demo's own
    password on the demo, GRID_PASSWORD anywhere else) and opens the first case.
    The map view shows the live map alone, the whole territory or ``center``
    (WGS-84 lon, lat) at web ``zoom``.
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from console.i18n import install

    settings.simulate = False  # a picture of the state as it is
    app = make_app()
    install(settings.lang)
    if view == "status":
        window = StatusWindow(settings)
        _fit(window, size)
        window.show()
        window.open()
        _wait(app, lambda: window.loaded, 60)
    elif view == "video":
        from widgets.video.standalone import VideoWindow

        # The wall with the first cameras in ``layout``, once every tile is live.
        window = VideoWindow(settings, user, layout or "3x3")
        _fit(window, size)
        window.show()
        window.open()
        _wait(app, window.ready, 120)
        settle = time.monotonic() + 1.5  # a second of pictures: the tiles' fps are real
        _wait(app, lambda: time.monotonic() > settle, 3)
    elif view in ("map", "replay"):
        from widgets.map.standalone import MapWindow

        window = MapWindow(settings)
        _fit(window, size)
        window.show()
        window.open(center, zoom)
        _wait(app, window.ready, 60)
        if view == "replay":  # the map in replay at ``at``: the day of T up to T
            window.start_replay(at)
            _wait(app, window.replay_ready, 120)
    else:
        from console.bootstrap import open_database
        from console.identity import tool_login
        from widgets.main_window import MainWindow

        engine = open_database(settings, seed_if_empty=True)
        actor = tool_login(engine, user or "dispatcher", workstation_name())
        window = MainWindow(engine, actor, settings, keep_layout=False)
        _fit(window, size)
        window.show()
        _wait(app, lambda: window.store.is_loaded and window.live.feed.online, 30)
        _wait(app, lambda: window.queue.proxy.rowCount() > 0, 10)
        if window.queue.proxy.rowCount() > 0:
            # The top of the queue, as an operator would click it.
            window.queue.table.setCurrentIndex(window.queue.proxy.index(0, 0))
            _wait(app, lambda: window.current is not None, 15)
        if view == "kpi":  # the evaluation panel in front, its figures read
            window.kpi_dock.show()
            window.kpi_dock.raise_()
            _wait(app, lambda: window.kpi.is_loaded, 60)
        if view == "workers":  # the worker board beside the patrol panel, both read
            window.show_field_force()
            _wait(app, window.field_force_ready, 90)
        live_map = getattr(window, "map", None)
        if live_map is not None:
            if center is not None or zoom is not None:
                live_map.set_center_zoom(*(center or live_map.centre_lonlat()), zoom or 14)
            _wait(app, live_map.ready, 30)
    picture = window.grab()
    if (picture.width(), picture.height()) != size:
        # The window could not be that small (the queue's filters, the docks' minimums):
        # it was laid out at the smallest size of the same shape and is scaled down, so
        # the file is the size asked for and shows the whole window.
        note = "（窗口最小尺寸，已缩放）" if settings.lang == "zh" else " (window minimum, scaled)"
        print(
            f"{picture.width()}×{picture.height()} → {size[0]}×{size[1]}{note}", file=sys.stderr
        )
        picture = picture.scaled(
            *size, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
    ok = picture.save(out)
    window.shutdown()
    window.close()
    print(out if ok else f"could not write {out}")
    return 0 if ok else 1
