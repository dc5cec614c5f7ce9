"""The operator's main window: dockable queue, detail, map, video, workers, status.

It wires the pieces together and owns nothing of their logic: the queue
keeps itself current from the change feed, the detail panel shows what
``db.case_context.case_view`` read, actions go through one dialog each to
``db.case_actions.perform`` off the GUI thread.  Which actions are enabled
follows only the user's role and the selected case's status
(``db.workflow.available_actions``) and whether the database is there.
"""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from console.config import Settings
from console.escalator import Escalator
from console.i18n import tr
from console.live import LiveFeed
from console.tasks import run_in_thread
from db.engine import Engine
from db.errors import Conflict, GridError
from db.users import Actor
from db.workflow import ACTIONS, ROLE_LABELS, available_actions, label, role_may

log = logging.getLogger(__name__)

# Keyboard shortcuts for the frequent actions.
SHORTCUTS = {
    "report": "Ctrl+N",
    "accept": "F2",
    "file": "F3",
    "dispatch": "F4",
    "acknowledge": "F6",
    "feedback": "F7",
    "verify_pass": "F8",
    "verify_fail": "F9",
    "reject": "Ctrl+Shift+R",
    "merge": "Ctrl+M",
    "return": "Ctrl+Shift+T",
    "escalate": "Ctrl+E",
    "reassign": "Ctrl+Shift+D",
    "request_extension": "Ctrl+Shift+E",
    "approve_extension": "Ctrl+Shift+A",
    "close": "Ctrl+Shift+C",
    "archive": "Ctrl+Shift+G",
}
QUIT_SHORTCUT = "Ctrl+Q"
ABOUT_SHORTCUT = "F1"
PRESENCE_HEARTBEAT_MS = 15_000
# Saved next to the dock layout (db.layouts), per user: where and how big the window was.
GEOMETRY_LAYOUT = "geometry"


class Banner(QLabel):
    """A full-width strip for what every operator must see: offline, emergency."""

    def __init__(self, name: str):
        super().__init__("")
        self.setObjectName(name)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.hide()

    def say(self, text: str) -> None:
        self.setText(text)
        self.setVisible(bool(text))


BOTTOM_PANEL_MIN_H = 180  # px: the bottom tabs give way to the queue and the map


class MainWindow(QMainWindow):
    """One operator's console; ``logout_requested`` asks the app for the login screen."""

    logout_requested = Signal()
    quit_requested = Signal()  # 系统 → 退出: the operator leaves the console altogether
    # The user's saved dock layout was read: True when one was applied, False when none.
    layout_loaded = Signal(bool)

    def __init__(self, engine: Engine, actor: Actor, settings: Settings, start_feed: bool = True,
                 keep_layout: bool = True):
        super().__init__()
        self.keep_layout = keep_layout  # False: a review screenshot, not the user's session
        self.engine = engine
        self.actor = actor
        self.settings = settings
        self.lang = settings.lang
        self.online = True
        self.current: dict | None = None  # the case view on screen
        self.current_id: int | None = None
        self.dialog = None
        self.seen_emergencies: set[int] = set()
        self.setObjectName("mainWindow")
        role = label(ROLE_LABELS, actor.role, self.lang)
        self.setWindowTitle(
            f"{tr('网格指挥调度台')} — {actor.display_name}（{role}） @ {actor.workstation}"
        )
        self._build_central()
        self._build_docks()
        self._build_map()
        self._build_actions()
        self._build_status_bar()
        self.live = LiveFeed(engine, parent=self)
        self.live.entries.connect(self._on_entries)
        self.live.online.connect(self._set_online)
        self.live.notified.connect(self._on_notified)
        self.live.notified.connect(self.map.data.on_notified)
        self.live.notified.connect(self.video.on_notified)
        self.store.case_changed.connect(self._on_case_changed)
        self.store.row_removed.connect(self._on_row_removed)
        self.store.failed.connect(self._background_error)
        self.queue.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.escalator = Escalator(engine, parent=self)
        self.presence_timer = QTimer(self, interval=PRESENCE_HEARTBEAT_MS)
        self.presence_timer.timeout.connect(self._heartbeat)
        # The emergency banner stays a minute; the timer dies with the window.
        self._emergency_timer = QTimer(self, singleShot=True, interval=60_000)
        self._emergency_timer.timeout.connect(lambda: self.emergency_banner.say(""))
        self._refresh_detail = QTimer(self, singleShot=True, interval=250)
        self._refresh_detail.timeout.connect(self._reload_current)
        self._leaving: threading.Thread | None = None
        self._load_reference()
        if start_feed:
            # The snapshot is read once the feed knows where it starts (its own thread
            # reads the newest entry), so nothing committed between the two is missed.
            self.live.ready.connect(lambda _seq: self.store.load())
        else:
            self.store.load()
        self.video.start()
        self.audit_badge.start()
        if start_feed:
            self.live.start()
            self.escalator.start()
            self.presence_timer.start()
        self._restore_layout()
        self._update_actions()
        QTimer.singleShot(0, self._size_docks)

    def _size_docks(self) -> None:
        """Give the queue most of the width (once the window has its real size)."""
        if getattr(self, "_layout_restored", False):
            return
        width = max(self.width(), 1200)
        # The live map takes the centre: the queue and the detail share the rest.
        self.resizeDocks([self.queue_dock, self.detail_dock],
                         [int(width * 0.36), int(width * 0.24)], Qt.Orientation.Horizontal)
        # The bottom tabs (video, workers, patrol, evaluation) a third of the height: left
        # to their size hints, the patrol panel's wide table took the queue's and the
        # map's height (one row of the queue left at 1600×1000).
        height = max(self.height(), 800)
        for panel in (self.video, self.worker_board, self.patrol, self.kpi):
            # An explicit minimum overrides the layouts' hint (tables, rows of controls),
            # so the tabs can be as low as this; each panel scrolls inside its dock.
            panel.setMinimumHeight(BOTTOM_PANEL_MIN_H)
        self.resizeDocks([self.video_dock], [int(height * 0.34)], Qt.Orientation.Vertical)

    # -- building ---------------------------------------------------------------

    def _build_central(self) -> None:
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        self.offline_banner = Banner("offlineBanner")
        self.emergency_banner = Banner("emergencyBanner")
        layout.addWidget(self.offline_banner)
        layout.addWidget(self.emergency_banner)
        self._central_layout = layout  # the live map goes here once the case store exists
        self.setCentralWidget(central)

    def _build_map(self) -> None:
        """The live map in the centre, fed by this window's case store (widgets/map)."""
        from console.config import basemap_spec
        from console.map_stores import MapData
        from widgets.map.map_widget import MapWidget

        data = MapData(self.engine, self.store, parent=self)
        spec = self.settings.basemap or basemap_spec(self.settings)
        self.map = MapWidget(data, self.lang, spec, self.settings.data_dir / "tiles")
        self.map.setMinimumWidth(320)
        self._central_layout.addWidget(self.map, 1)
        self.map.case_clicked.connect(self._map_case_clicked)
        self.queue.case_selected.connect(self.map.focus_case)
        self.map.report_here.connect(self._report_here)
        self.map.dispatch_worker.connect(self._dispatch_to_worker)
        self.map.camera_chosen.connect(self._camera_chosen)
        data.start()
        if spec is None and self.settings.database_url is None:
            self._build_demo_basemap()

    def _build_demo_basemap(self) -> None:
        """The embedded demo draws its own basemap once, in the background (widgets/map)."""
        from widgets.map.tile_render import build_demo_basemap

        run_in_thread(
            lambda: build_demo_basemap(self.engine, self.settings.data_dir),
            lambda path: self.map.basemap.set_spec(str(path)),
            lambda _exc: None,  # no territory yet, or a full disk: the map goes on without
            context=self,
        )

    def _camera_chosen(self, code: str) -> None:
        """A camera clicked on the map: onto the video wall, and the wall in front."""
        self.video.show_camera(code)
        self.video_dock.show()
        self.video_dock.raise_()
        self.statusBar().showMessage(f"{tr('摄像头')} {code}", 5000)

    def show_field_force(self) -> None:
        """The worker board and the patrol panel side by side in front, read now (the
        ``--view workers`` screenshot; the video and evaluation docks are put away, 视图
        brings them back)."""
        # Out of the tab group first: split beside a tabbed dock, Qt adds a tab instead.
        for dock in (self.video_dock, self.kpi_dock, self.workers_dock, self.patrol_dock):
            self.removeDockWidget(dock)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.workers_dock)
        self.splitDockWidget(self.workers_dock, self.patrol_dock, Qt.Orientation.Horizontal)
        for dock in (self.workers_dock, self.patrol_dock):
            dock.show()
        self.resizeDocks([self.workers_dock, self.patrol_dock],
                         [int(self.width() * 0.45), int(self.width() * 0.55)],
                         Qt.Orientation.Horizontal)
        self.resizeDocks([self.workers_dock], [int(self.height() * 0.45)],
                         Qt.Orientation.Vertical)
        self.worker_board.store.refresh(patrol=True)
        self.worker_board.store.changed.connect(self.worker_board.expand_first)

    def field_force_ready(self) -> bool:
        return self.worker_board.store.is_loaded and self.patrol.is_loaded

    def _snapshot_attached(self, number: str) -> None:
        if self.current and self.current.get("number") == number:
            self._refresh_detail.start()

    def _map_case_clicked(self, case_id: int) -> None:
        """A case clicked on the map: select it in the queue (or open it when filtered out)."""
        if not self.queue.select_case(case_id):
            self.open_case(case_id)

    def _report_here(self, place: dict) -> None:
        """Right-click "report a case here": the report dialog with the point filled in."""
        if not role_may(self.actor.role, "report"):
            self.statusBar().showMessage(tr("当前角色不能上报案件"), 5000)
            return
        self.start_action("report")
        dialog = self.dialog
        if dialog is None or dialog.action != "report":
            return
        dialog.widgets["lon"].setText(f"{place['lon']:.6f}")
        dialog.widgets["lat"].setText(f"{place['lat']:.6f}")
        dialog.widgets["address"].setText(place.get("address") or "")
        grid = QLabel(place.get("grid") or tr("辖区外"))
        grid.setObjectName("reportGrid")
        dialog.form.insertRow(3, tr("网格"), grid)

    def _dispatch_to_worker(self, code: str) -> None:
        """A nearest worker clicked on the map: the dispatch dialog with them chosen."""
        if self.current is None or "dispatch" not in available_actions(
                self.actor.role, self.current["status"]):
            return
        self.start_action("dispatch")
        dialog = self.dialog
        if dialog is not None and dialog.action == "dispatch":
            box = dialog.widgets["worker"]
            box.setCurrentIndex(max(0, box.findData(code)))

    def _dock(self, name: str, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(tr(title), self)
        dock.setObjectName(name)  # saveState/restoreState need stable names
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        from console.case_store import CaseStore
        from widgets.case_detail import CaseDetail
        from widgets.case_queue import CaseQueueView

        self.store = CaseStore(self.engine, parent=self)
        self.queue = CaseQueueView(self.store, self.engine, self.actor)
        self.queue.case_selected.connect(self.open_case)
        self.queue.case_activated.connect(self._default_action)
        self.detail = CaseDetail(self.lang)
        self.detail.merge_requested.connect(lambda number: self.start_action("merge", number))
        left = Qt.DockWidgetArea.LeftDockWidgetArea
        right = Qt.DockWidgetArea.RightDockWidgetArea
        bottom = Qt.DockWidgetArea.BottomDockWidgetArea
        self.queue_dock = self._dock("queueDock", "案件队列", self.queue, left)
        self.detail_dock = self._dock("detailDock", "案件详情", self.detail, right)
        from widgets.video.panel import VideoPanel

        # The video wall (widgets/video): cameras from the map, the case's nearby cameras.
        self.video = VideoPanel(self.engine, self.actor, self.lang, lambda: self.current,
                                keep_layout=self.keep_layout)
        self.video.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.video.snapshot_attached.connect(self._snapshot_attached)
        self.video_dock = self._dock("videoDock", "视频", self.video, bottom)
        from console.worker_board import WorkerBoardStore
        from widgets.worker_board import WorkerBoard

        # 网格员: the roster with derived status; a click shows and follows on the map.
        self.worker_board = WorkerBoard(WorkerBoardStore(self.engine, parent=self),
                                        actor=self.actor, lang=self.lang)
        self.worker_board.show_on_map.connect(
            lambda did: (self.map.zoom_to_worker(did), self.map.start_follow("worker", did)))
        self.workers_dock = self._dock("workersDock", "网格员", self.worker_board, bottom)
        self.tabifyDockWidget(self.video_dock, self.workers_dock)
        from widgets.patrol_panel import PatrolPanel

        # 巡查统计: patrol compliance per worker-day, read when first shown.
        self.patrol = PatrolPanel(self.engine, self.lang)
        self.patrol.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.patrol_dock = self._dock("patrolDock", "巡查统计", self.patrol, bottom)
        self.tabifyDockWidget(self.workers_dock, self.patrol_dock)
        self.worker_board.patrol_requested.connect(
            lambda: (self.patrol_dock.show(), self.patrol_dock.raise_()))
        from widgets.kpi.panel import KpiPanel

        # 综合评价: read when first shown; a click on a number lists its cases in the queue.
        self.kpi = KpiPanel(self.engine, self.actor, self.lang)
        self.kpi.cases_requested.connect(self.queue.show_cases)
        self.kpi.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.kpi_dock = self._dock("kpiDock", "综合评价", self.kpi, bottom)
        self.tabifyDockWidget(self.patrol_dock, self.kpi_dock)
        self.video_dock.raise_()
        self.resizeDocks(
            [self.queue_dock, self.detail_dock], [1100, 520], Qt.Orientation.Horizontal
        )

    def _build_actions(self) -> None:
        bar = QToolBar(tr("操作"), self)
        bar.setObjectName("actionBar")
        bar.setMovable(False)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
        self.actions_by_name: dict[str, QAction] = {}
        for name, rule in ACTIONS.items():
            text = rule.label_zh if self.lang == "zh" else rule.label_en
            act = QAction(text, self)
            act.setObjectName(f"act_{name}")
            if name in SHORTCUTS:
                act.setShortcut(QKeySequence(SHORTCUTS[name]))
                act.setToolTip(f"{text}（{SHORTCUTS[name]}）")
            act.setProperty("normal_tip", act.toolTip())  # back when the database returns
            act.triggered.connect(lambda _=False, n=name: self.start_action(n))
            self.actions_by_name[name] = act
            if role_may(self.actor.role, name):
                bar.addAction(act)
        menu = self.menuBar()
        system = menu.addMenu(tr("系统"))
        switch = system.addAction(tr("切换用户 / 退出登录"))
        switch.setObjectName("act_logout")
        switch.triggered.connect(self.logout)
        system.addSeparator()
        leave = system.addAction(tr("退出"))
        leave.setObjectName("act_quit")
        leave.setShortcut(QKeySequence(QUIT_SHORTCUT))
        leave.triggered.connect(self.quit_console)
        view = menu.addMenu(tr("视图"))
        for theme, text in (("dark", "深色主题"), ("light", "浅色主题")):
            act = view.addAction(tr(text))
            act.triggered.connect(lambda _=False, t=theme: self.set_theme(t))
        for dock in (self.queue_dock, self.detail_dock, self.video_dock, self.workers_dock,
                     self.patrol_dock, self.kpi_dock):
            view.addAction(dock.toggleViewAction())
        helpm = menu.addMenu(tr("帮助"))
        about = helpm.addAction(tr("关于"))
        about.setObjectName("act_about")
        about.setShortcut(QKeySequence(ABOUT_SHORTCUT))
        about.triggered.connect(self.show_about)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        role = label(ROLE_LABELS, self.actor.role, self.lang)
        self.user_label = QLabel(f"{self.actor.display_name}（{role}）")
        self.feed_label = QLabel(tr("● 连接中"))
        self.feed_label.setObjectName("feedLabel")
        self.count_label = QLabel("")
        from widgets.audit_badge import AuditBadge

        self.audit_badge = AuditBadge(self.engine, self)
        holder = QWidget()
        h = QHBoxLayout(holder)
        h.setContentsMargins(0, 0, 0, 0)
        for w in (self.user_label, self.count_label, self.audit_badge, self.feed_label):
            h.addWidget(w)
        bar.addPermanentWidget(holder)

    # -- the case on screen -------------------------------------------------------

    def open_case(self, case_id: int) -> None:
        """Show a case (off-thread read) and tell the others we have it open."""
        if case_id == self.current_id and self.current is not None:
            return
        self.current_id = case_id
        self._reload_current()
        from db.presence import set_presence

        engine, actor = self.engine, self.actor
        run_in_thread(
            lambda: set_presence(engine, actor, case_id),
            lambda _: None,
            self._background_error,
            context=self,
        )

    def _reload_current(self) -> None:
        case_id = self.current_id
        if case_id is None:
            return
        from db.case_context import case_view
        from widgets.case_detail import with_thumbnails

        engine, actor = self.engine, self.actor
        run_in_thread(
            lambda: with_thumbnails(case_view(engine, case_id, actor)),  # decoded here too
            self._show_case,
            self._background_error,
            context=self,
        )

    def _show_case(self, case: dict) -> None:
        if case.get("id") != self.current_id:
            return  # the operator has moved on
        self.current = case
        self.detail.show_case(case)
        self.map.show_case_context(case, "dispatch" in available_actions(self.actor.role,
                                                                         case["status"]))
        self.video.case_shown(case)
        self._update_actions()

    def _update_actions(self) -> None:
        status = self.current["status"] if self.current else None
        allowed = set(available_actions(self.actor.role, status)) if status else set()
        for name, act in self.actions_by_name.items():
            if name == "report":
                ok = role_may(self.actor.role, "report")
            else:
                ok = name in allowed
            act.setEnabled(ok and self.online)
            act.setToolTip(act.property("normal_tip") if self.online
                           else tr("数据库连接中断，暂不能操作"))

    def _default_action(self, case_id: int) -> None:
        self.open_case(case_id)

    # -- actions ------------------------------------------------------------------

    def start_action(self, action: str, merge_into: str | None = None) -> None:
        """Open the action's dialog; the service runs when the operator confirms."""
        if not self.online:
            self.statusBar().showMessage(tr("数据库连接中断，暂不能操作"), 5000)
            return
        if action != "report" and self.current is None:
            return
        if not hasattr(self, "_reference"):
            # Not read yet (read when the window opened): read it, then open the dialog.
            self._load_reference(lambda: self.start_action(action, merge_into))
            return
        from widgets.action_dialog import ActionDialog

        ctx = self._form_context()
        dialog = ActionDialog(action, ctx, self)
        if merge_into and "into" in dialog.widgets:
            dialog.widgets["into"].setText(merge_into)
        number = None if action == "report" else self.current["number"]
        version = None if action == "report" else self.current["version"]
        dialog.submitted.connect(
            lambda params: self._submit(dialog, action, number, version, params)
        )
        self.dialog = dialog
        dialog.open()

    def _load_reference(self, then=None) -> None:
        """Departments, categories and the reporting workers for the dialogs, read once
        per window off the GUI thread (small, rarely changing lists); ``then`` runs once
        they are here."""
        from db.case_context import categories, departments, reporting_workers

        engine = self.engine

        def got(reference) -> None:
            self._reference = reference
            if then is not None:
                then()

        run_in_thread(lambda: (departments(engine), categories(engine),
                               reporting_workers(engine)), got,
                      self._background_error if then is not None else (lambda _exc: None),
                      context=self)

    def _form_context(self):
        from widgets.action_dialog import FormContext

        depts, cats, workers = self._reference
        return FormContext(depts, cats, self.current, self.lang, workers)

    def _submit(self, dialog, action: str, number, version, params: dict) -> None:
        from db.case_actions import perform

        engine, actor = self.engine, self.actor

        def done(result) -> None:
            dialog.succeeded()
            self.statusBar().showMessage(
                f"{result.number} {ACTIONS[action].label_zh if self.lang == 'zh' else action}"
                f" ✓ v{result.version}",
                5000,
            )
            if action == "report":
                self.current_id = result.case_id
            self.store.refresh([result.case_id])  # our own change, without waiting for the feed
            self._refresh_detail.start()

        def failed(exc: Exception) -> None:
            message = exc.message(self.lang) if isinstance(exc, GridError) else str(exc)
            dialog.failed(message)
            if isinstance(exc, Conflict):
                self._refresh_detail.start()  # show the operator what changed

        run_in_thread(
            lambda: perform(engine, actor, action, number, version, **params),
            done,
            failed,
            context=self,
        )

    # -- live updates ---------------------------------------------------------------

    def _on_entries(self, entries: list) -> None:
        self.store.apply_entries(entries)
        if self.current_id is not None and any(e.case_id == self.current_id for e in entries):
            self._refresh_detail.start()

    def _on_case_changed(self, row) -> None:
        if (
            row.severity == "emergency"
            and row.status == "reported"
            and row.id not in self.seen_emergencies
        ):
            self.seen_emergencies.add(row.id)
            self.emergency_banner.say(
                f"⚠ {tr('特急案件')} {row.number}：{row.category_name} "
                f"{row.address or ''} — {tr('请立即处置')}"
            )
            QApplication.beep()
            self._emergency_timer.start()
            self.video.emergency(row.id, row.number, row.lon, row.lat)  # its cameras, at once
        self.count_label.setText(f"{tr('在办')} {len(self.store)}")

    def _on_row_removed(self, case_id: int) -> None:
        self.count_label.setText(f"{tr('在办')} {len(self.store)}")

    def _on_notified(self, channel: str, payload: str) -> None:
        if channel == "grid_presence" and self.current_id is not None:
            if payload in (str(self.current_id), "0"):
                self._refresh_viewers()

    def _refresh_viewers(self) -> None:
        from db.presence import viewers

        engine, actor, case_id = self.engine, self.actor, self.current_id
        run_in_thread(
            lambda: (case_id, viewers(engine, case_id, actor)),
            self._show_viewers,
            self._background_error,
            context=self,
        )

    def _show_viewers(self, result) -> None:
        case_id, names = result
        if case_id == self.current_id:
            self.detail.show_viewers(names)

    def _heartbeat(self) -> None:
        from db.presence import heartbeat

        engine, actor = self.engine, self.actor
        run_in_thread(
            lambda: heartbeat(engine, actor), lambda _: None, self._background_error, context=self
        )

    def _set_online(self, online: bool) -> None:
        self.online = online
        self.offline_banner.say(
            ""
            if online
            else tr(
                "⚠ 与数据库的连接已中断：操作已暂停，正在自动重连；恢复后将补齐期间的全部变化。"
            )
        )
        self.feed_label.setText(tr("● 在线") if online else tr("● 离线"))
        self.feed_label.setProperty("alarm", not online)
        self.feed_label.setProperty("ok", online)
        self.feed_label.style().polish(self.feed_label)
        self._update_actions()
        if online:
            self._refresh_detail.start()

    def _background_error(self, exc: Exception) -> None:
        text = exc.message(self.lang) if isinstance(exc, GridError) else str(exc)
        self.statusBar().showMessage(text, 8000)

    # -- appearance, layout, leaving ------------------------------------------------

    def set_theme(self, theme: str) -> None:
        from widgets.app import style_sheet

        QApplication.instance().setStyleSheet(style_sheet(theme))

    def _restore_layout(self) -> None:
        from db.layouts import load_layout

        engine, uid, actor = self.engine, self.actor.id, self.actor
        if uid is None:
            return
        run_in_thread(
            lambda: load_layout(engine, actor),
            self._apply_layout,
            self._background_error,
            context=self,
        )

    def _apply_layout(self, state: bytes | None) -> None:
        if state:
            self._layout_restored = True
            self.restoreState(QByteArray(state))
        self.layout_loaded.emit(bool(state))

    def save_layout(self) -> None:
        """Store the dock layout and window geometry for this user (and wait for it)."""
        self._saver()()

    def _saver(self, clear_presence: bool = False):
        """What leaving writes, taken now on the GUI thread, as work for another thread.

        The layout and geometry are read from Qt here; the database is written by
        the returned callable, so leaving never waits on the database (twice the
        connect timeout when it is gone) on the GUI thread.
        """
        from db.layouts import save_layout
        from db.presence import clear_presence as clear

        engine, actor = self.engine, self.actor
        keep = actor.id is not None and self.keep_layout
        state = bytes(self.saveState().data()) if keep else None
        # A window never shown has no geometry worth keeping.
        geometry = bytes(self.saveGeometry().data()) if keep and self.isVisible() else None

        def work() -> None:
            try:
                if state is not None:
                    save_layout(engine, actor, state)
                if geometry is not None:
                    save_layout(engine, actor, geometry, GEOMETRY_LAYOUT)
            except Exception as exc:  # leaving must not fail on a lost database
                log.warning("layout not saved: %s", exc)
            if clear_presence:
                try:
                    clear(engine, actor)
                except Exception as exc:
                    log.warning("presence not cleared: %s", exc)

        return work

    def present(self) -> None:
        """Show the window where this user last had it, or maximised the first time.

        The saved geometry is read off the GUI thread; the window appears once
        it is known, so it does not open in one place and jump to another.
        """
        from db.layouts import load_layout

        engine, uid, actor = self.engine, self.actor.id, self.actor
        if uid is None or not self.keep_layout:
            self._show_at(None)
            return
        run_in_thread(
            lambda: load_layout(engine, actor, GEOMETRY_LAYOUT),
            self._show_at,
            lambda exc: (self._show_at(None), self._background_error(exc)),
            context=self,
        )

    def _show_at(self, geometry: bytes | None) -> None:
        if geometry and self.restoreGeometry(QByteArray(geometry)):
            self.show()  # restoreGeometry brings back the maximised state as well
        else:
            self.showMaximized()
        QTimer.singleShot(0, self._size_docks)  # now that the window has its real width

    def shortcuts(self) -> list[tuple[str, str]]:
        """The keys that work in this window and what they do (the 关于 dialog's table).

        Read from the actions themselves, so the table cannot drift from the
        bindings: an action on no toolbar or menu (one this role may not take)
        has no live shortcut and is not listed.
        """
        rows = []
        for act in self.findChildren(QAction):
            key = act.shortcut().toString()
            if key and act.objectName() and act.associatedObjects():
                rows.append((key, act.text().replace("&", "")))
        order = {key: i for i, key in enumerate([*SHORTCUTS.values(), QUIT_SHORTCUT])}
        return sorted(set(rows), key=lambda r: (order.get(r[0], len(order)), r[0]))

    def show_about(self) -> None:
        from widgets.about_dialog import AboutDialog

        self.about = AboutDialog(self.settings, self.shortcuts(), self)
        self.about.open()

    def quit_console(self) -> None:
        """系统 → 退出: leave cleanly (layout and geometry saved, presence cleared)."""
        self.shutdown(wait=False)
        self.quit_requested.emit()
        self.close()

    def logout(self) -> None:
        self.shutdown(wait=False)
        self.logout_requested.emit()

    def shutdown(self, wait: bool = True) -> threading.Thread | None:
        """Stop background work and leave cleanly (layout saved, presence cleared).

        The database writes run on a thread of their own (``leaving``); the
        window's own exits (logout, quit, close) do not wait for it, and the
        application joins it, bounded, once its event loop has ended.
        ``wait`` (scripts, screenshots, tests) waits here.
        """
        if getattr(self, "_shut", False):
            if wait and self._leaving is not None:
                self._leaving.join()
            return self._leaving
        self._shut = True
        self._leaving = threading.Thread(target=self._saver(clear_presence=True),
                                         name="leaving", daemon=True)
        self.presence_timer.stop()
        self.audit_badge.stop()
        self.escalator.timer.stop()
        self.live.stop()
        self.store.stop()
        self.map.shutdown()
        self.video.shutdown()
        self.queue.shutdown()
        self._leaving.start()
        if wait:
            self._leaving.join()
        return self._leaving

    @property
    def leaving(self) -> threading.Thread | None:
        """The thread writing what leaving saves (None before ``shutdown``)."""
        return self._leaving

    def closeEvent(self, event) -> None:
        self.shutdown(wait=False)
        super().closeEvent(event)
