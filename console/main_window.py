"""The operator's main window: dockable queue, detail, map, video, workers, status.

It wires the pieces together and owns nothing of their logic: the queue
keeps itself current from the change feed, the detail panel shows what
``db.case_context.case_view`` read, actions go through one dialog each to
``db.case_actions.perform`` off the GUI thread.  Which actions are enabled
follows only the user's role and the selected case's status
(``console.workflow.available_actions``) and whether the database is there.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QSizePolicy,
    QToolBar,
    QVBoxLayout,
    QWidget,
)
from sqlalchemy import Engine

from console.config import Settings
from console.escalator import Escalator
from console.i18n import tr
from console.live import LiveFeed
from console.tasks import run_in_thread
from console.workflow import ACTIONS, ROLE_LABELS, available_actions, label, role_may
from db.errors import Conflict, GridError
from db.users import Actor

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
PRESENCE_HEARTBEAT_MS = 15_000


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


class MainWindow(QMainWindow):
    """One operator's console; ``logout_requested`` asks the app for the login screen."""

    logout_requested = Signal()

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
        self._build_actions()
        self._build_status_bar()
        self.live = LiveFeed(engine, parent=self)
        self.live.entries.connect(self._on_entries)
        self.live.online.connect(self._set_online)
        self.live.notified.connect(self._on_notified)
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
        self.store.load()
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
        self.resizeDocks([self.queue_dock, self.detail_dock],
                         [int(width * 0.58), int(width * 0.30)], Qt.Orientation.Horizontal)

    # -- building ---------------------------------------------------------------

    def _build_central(self) -> None:
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        self.offline_banner = Banner("offlineBanner")
        self.emergency_banner = Banner("emergencyBanner")
        self.map_placeholder = QLabel(
            tr("实时地图") + "\n" + tr("（地图图层将在地图模块完成后显示）")
        )
        self.map_placeholder.setObjectName("mapPlaceholder")
        # Until the live map lands, the docks may take the room it would use.
        self.map_placeholder.setMinimumWidth(120)
        self.map_placeholder.setWordWrap(True)
        self.map_placeholder.setSizePolicy(QSizePolicy.Policy.Ignored,
                                           QSizePolicy.Policy.Preferred)
        self.map_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.offline_banner)
        layout.addWidget(self.emergency_banner)
        layout.addWidget(self.map_placeholder, 1)
        self.setCentralWidget(central)

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
        self.queue = CaseQueueView(self.store, self.engine, self.actor.id or 0)
        self.queue.case_selected.connect(self.open_case)
        self.queue.case_activated.connect(self._default_action)
        self.detail = CaseDetail(self.lang)
        self.detail.merge_requested.connect(lambda number: self.start_action("merge", number))
        left = Qt.DockWidgetArea.LeftDockWidgetArea
        right = Qt.DockWidgetArea.RightDockWidgetArea
        bottom = Qt.DockWidgetArea.BottomDockWidgetArea
        self.queue_dock = self._dock("queueDock", "案件队列", self.queue, left)
        self.detail_dock = self._dock("detailDock", "案件详情", self.detail, right)
        video = QLabel(tr("视频监控") + "\n" + tr("（视频墙将在视频模块完成后显示）"))
        video.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.video_dock = self._dock("videoDock", "视频", video, bottom)
        workers = QLabel(tr("网格员") + "\n" + tr("（网格员面板将在定位模块完成后显示）"))
        workers.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.workers_dock = self._dock("workersDock", "网格员", workers, bottom)
        self.tabifyDockWidget(self.video_dock, self.workers_dock)
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
            act.triggered.connect(lambda _=False, n=name: self.start_action(n))
            self.actions_by_name[name] = act
            if role_may(self.actor.role, name):
                bar.addAction(act)
        menu = self.menuBar()
        system = menu.addMenu(tr("系统"))
        switch = system.addAction(tr("切换用户 / 退出登录"))
        switch.setObjectName("act_logout")
        switch.triggered.connect(self.logout)
        view = menu.addMenu(tr("视图"))
        for theme, text in (("dark", "深色主题"), ("light", "浅色主题")):
            act = view.addAction(tr(text))
            act.triggered.connect(lambda _=False, t=theme: self.set_theme(t))
        for dock in (self.queue_dock, self.detail_dock, self.video_dock, self.workers_dock):
            view.addAction(dock.toggleViewAction())

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        role = label(ROLE_LABELS, self.actor.role, self.lang)
        self.user_label = QLabel(f"{self.actor.display_name}（{role}）")
        self.feed_label = QLabel(tr("● 连接中"))
        self.feed_label.setObjectName("feedLabel")
        self.count_label = QLabel("")
        holder = QWidget()
        h = QHBoxLayout(holder)
        h.setContentsMargins(0, 0, 0, 0)
        for w in (self.user_label, self.count_label, self.feed_label):
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

        engine, actor = self.engine, self.actor
        run_in_thread(
            lambda: case_view(engine, case_id, actor),
            self._show_case,
            self._background_error,
            context=self,
        )

    def _show_case(self, case: dict) -> None:
        if case.get("id") != self.current_id:
            return  # the operator has moved on
        self.current = case
        self.detail.show_case(case)
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
            if not self.online:
                act.setToolTip(tr("数据库连接中断，暂不能操作"))

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

    def _form_context(self):
        from widgets.action_dialog import FormContext

        if not hasattr(self, "_reference"):
            from db.case_context import categories, departments

            # Small, rarely changing lists: read once per window.
            self._reference = (departments(self.engine), categories(self.engine))
        depts, cats = self._reference
        return FormContext(depts, cats, self.current, self.lang)

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
        from console.app import style_sheet

        QApplication.instance().setStyleSheet(style_sheet(theme))

    def _restore_layout(self) -> None:
        from db.layouts import load_layout

        engine, uid = self.engine, self.actor.id
        if uid is None:
            return
        run_in_thread(
            lambda: load_layout(engine, uid),
            self._apply_layout,
            self._background_error,
            context=self,
        )

    def _apply_layout(self, state: bytes | None) -> None:
        if state:
            self._layout_restored = True
            self.restoreState(QByteArray(state))

    def save_layout(self) -> None:
        """Store the dock layout for this user (synchronously: we are leaving)."""
        from db.layouts import save_layout

        if self.actor.id is None or not self.keep_layout:
            return
        try:
            save_layout(self.engine, self.actor.id, bytes(self.saveState().data()))
        except Exception as exc:  # leaving must not fail on a lost database
            log.warning("layout not saved: %s", exc)

    def logout(self) -> None:
        self.shutdown()
        self.logout_requested.emit()

    def shutdown(self) -> None:
        """Stop background work and leave cleanly (layout saved, presence cleared)."""
        if getattr(self, "_shut", False):
            return
        self._shut = True
        self.save_layout()
        self.presence_timer.stop()
        self.escalator.timer.stop()
        self.live.stop()
        self.store.stop()
        self.queue.shutdown()
        try:
            from db.presence import clear_presence

            clear_presence(self.engine, self.actor)
        except Exception as exc:
            log.warning("presence not cleared: %s", exc)

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)
