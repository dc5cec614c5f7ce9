"""The video dock of the operator's window: the wall, tied to the map, the cases, the database.

What it adds to :class:`widgets.video.wall.VideoWall`:

* the camera directory, kept current on ``grid_cameras`` notifications;
* the layout saved per user (``db.video_layouts``), read at start and written a moment
  after each change; a duty leader or an administrator can arrange a wall display's;
* the selected case's nearest cameras (``db.cameras.nearest_cameras``, those whose view
  covers the point first), and an emergency report loading them onto the wall at once;
* snapshots: the tile's frame, at the resolution it was decoded in, as a lossless PNG
  attached to the selected case through ``db.snapshots.attach_snapshot``.

Every database call runs through ``console.tasks.run_in_thread``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QInputDialog, QPushButton, QVBoxLayout, QWidget

from console.tasks import run_in_thread
from console.video.decoder import Frame
from console.video.wall_model import CameraDirectory, WallState
from db.errors import GridError
from widgets.video.tile import bilingual
from widgets.video.wall import VideoWall

log = logging.getLogger(__name__)

NEARBY_RADIUS_M = 300.0
NEARBY_LIMIT = 9
SAVE_DELAY_MS = 1500
ARRANGE_ROLES = ("leader", "admin")


class VideoPanel(QWidget):
    """The wall with its data; ``snapshot_attached(number)`` after a snapshot landed."""

    snapshot_attached = Signal(str)
    message = Signal(str)

    def __init__(self, engine, actor, lang: str = "zh", current_case=None,
                 keep_layout: bool = True, parent: QWidget | None = None):
        super().__init__(parent)
        self.engine = engine
        self.actor = actor
        self.lang = lang
        self.t = bilingual(lang)
        self.current_case = current_case or (lambda: None)
        self.keep_layout = keep_layout
        self.layout_loaded = False
        self.directory = CameraDirectory(engine, self)
        self.wall = VideoWall(self.directory, lang, self)
        self.wall.setObjectName("videoWall")
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.wall)
        if actor.role in ARRANGE_ROLES:
            arrange = QPushButton(self.t("设为大屏布局…", "Arrange a wall…"))
            arrange.setObjectName("videoArrangeWall")
            arrange.clicked.connect(self.arrange_wall)
            self.wall.bar.addWidget(arrange)
        if actor.role == "admin":  # 摄像头管理: add, edit, disable, import (widgets/video)
            manage = QPushButton(self.t("摄像头管理…", "Cameras…"))
            manage.setObjectName("videoManageCameras")
            manage.clicked.connect(self.manage_cameras)
            self.wall.bar.addWidget(manage)
        self.wall.message.connect(self.message)
        self.wall.snapshot_requested.connect(self.attach_snapshot)
        self.wall.state_changed.connect(self._schedule_save)
        self._save_timer = QTimer(self, singleShot=True, interval=SAVE_DELAY_MS)
        self._save_timer.timeout.connect(self._save)
        self._nearby_for: int | None = None
        self._emergencies: set[int] = set()

    # -- start, layout ---------------------------------------------------------------------

    def start(self) -> VideoPanel:
        self.directory.load()
        if self.actor.id is not None:
            from db.video_layouts import load_video_layout

            engine, actor = self.engine, self.actor
            run_in_thread(lambda: load_video_layout(engine, actor), self._layout_read,
                          self._failed, context=self)
        else:
            self.layout_loaded = True
        return self

    def _layout_read(self, state: dict | None) -> None:
        self.layout_loaded = True
        if state:
            self.wall.apply_state(WallState.from_json(state), emit=False)

    def _schedule_save(self, _state) -> None:
        if self.keep_layout and self.actor.id is not None:
            self._save_timer.start()

    def _save(self) -> None:
        from db.video_layouts import save_video_layout

        engine, actor, state = self.engine, self.actor, self.wall.state.to_json()
        run_in_thread(lambda: save_video_layout(engine, actor, state), lambda _: None,
                      self._failed, context=self)

    def arrange_wall(self) -> None:
        """A leader or an administrator gives a wall display this wall's layout."""
        from db.video_layouts import save_wall_layout, wall_logins

        engine, actor, state = self.engine, self.actor, self.wall.state.to_json()

        def chosen(names: list[str]) -> None:
            if not names:
                self.message.emit(self.t("没有大屏账号", "No wall display login"))
                return
            name, ok = QInputDialog.getItem(self, self.t("设为大屏布局", "Arrange a wall"),
                                            self.t("大屏账号", "Wall login"), names, 0, False)
            if ok and name:
                run_in_thread(lambda: save_wall_layout(engine, actor, name, state),
                              lambda _: self.message.emit(
                                  self.t(f"已设为 {name} 的布局", f"Layout given to {name}")),
                              self._failed, context=self)

        run_in_thread(lambda: wall_logins(engine), chosen, self._failed, context=self)

    def manage_cameras(self):
        """The administrator's camera dialog; the wall's list follows what it changes."""
        from widgets.video.camera_admin import CameraAdminDialog

        self.admin_dialog = CameraAdminDialog(self.engine, self.actor, self.lang, self)
        self.admin_dialog.changed.connect(self.directory.load)
        self.admin_dialog.open()
        return self.admin_dialog

    # -- the map and the cases ----------------------------------------------------------------

    def show_camera(self, code: str) -> None:
        self.wall.show_camera(code)

    def case_shown(self, case: dict | None) -> None:
        """The window shows a case: offer its nearby cameras (read off the GUI thread)."""
        if case is None:
            self._nearby_for = None
            self.wall.offer_nearby(None, [])
            return
        case_id, number = case.get("id"), case.get("number")
        if case_id == self._nearby_for:
            return
        self._nearby_for = case_id
        self._nearby(case["lon"], case["lat"], number,
                     lambda cams: self.wall.offer_nearby(number, cams)
                     if self._nearby_for == case_id else None)

    def emergency(self, case_id: int, number: str, lon: float, lat: float) -> None:
        """An emergency report: its nearby cameras on the wall at once, on every console."""
        if case_id in self._emergencies:
            return
        self._emergencies.add(case_id)

        def show(cams: list[dict]) -> None:
            if cams:
                self.wall.show_cameras([c["code"] for c in cams])
                self.wall.offer_nearby(number, cams)
                self.message.emit(self.t(f"特急案件 {number}：附近 {len(cams)} 路视频已上墙",
                                         f"Emergency {number}: {len(cams)} nearby cameras "
                                         "on the wall"))

        self._nearby(lon, lat, number, show)

    def _nearby(self, lon: float, lat: float, number, then) -> None:
        from db.cameras import nearest_cameras

        engine = self.engine
        run_in_thread(lambda: nearest_cameras(engine, lon, lat, NEARBY_RADIUS_M, NEARBY_LIMIT),
                      then, self._failed, context=self)

    def on_notified(self, channel: str, payload: str) -> None:
        self.directory.on_notified(channel, payload)

    # -- snapshots ---------------------------------------------------------------------------

    def attach_snapshot(self, camera: str, frame: Frame) -> None:
        """The frame (full resolution, lossless) to the selected case, with camera and time."""
        from console.video.images import encode_png, frame_rgb
        from db.snapshots import attach_snapshot

        case = self.current_case()
        if not case:
            self.message.emit(self.t("请先选中一个案件", "Select a case first"))
            return
        engine, actor, number = self.engine, self.actor, case["number"]
        taken = datetime.fromtimestamp(frame.wall_time, UTC)
        source = frame.source

        def work():
            rgb = frame_rgb(source) if source is not None else frame.rgb()
            return attach_snapshot(engine, actor, number, camera, taken, encode_png(rgb))

        def done(result) -> None:
            self.message.emit(self.t(f"截图已附加到案件 {number}（{result.filename}）",
                                     f"Snapshot attached to case {number} ({result.filename})"))
            self.snapshot_attached.emit(number)

        run_in_thread(work, done, self._failed, context=self)

    def _failed(self, exc: Exception) -> None:
        text = exc.message(self.lang) if isinstance(exc, GridError) else str(exc)
        log.warning("video: %s", text)
        self.message.emit(text)

    def shutdown(self) -> None:
        if self._save_timer.isActive():
            self._save_timer.stop()
            if self.keep_layout and self.actor.id is not None:
                try:
                    from db.video_layouts import save_video_layout

                    save_video_layout(self.engine, self.actor, self.wall.state.to_json())
                except Exception as exc:  # leaving must not fail on a lost database
                    log.warning("video layout not saved: %s", exc)
        self.wall.shutdown()
