"""The video wall alone in a window: ``screenshot --view video [--layout 3x3]``.

It opens the database, logs the user in (on the demo with its demo password, else
``GRID_PASSWORD``), starts the demo's video server on the embedded demo, fills the
layout with the first cameras and is ``ready`` once every tile shows a live picture.
"""

from __future__ import annotations

import time

from PySide6.QtWidgets import QMainWindow

from console.config import Settings, workstation_name
from console.tasks import run_in_thread
from console.video.wall_model import tile_count
from widgets.video.panel import VideoPanel

READY_AFTER_S = 60.0  # give up waiting for every tile after this long (and show them)


class VideoWindow(QMainWindow):
    def __init__(self, settings: Settings, user: str | None = None, layout: str = "3x3"):
        super().__init__()
        self.settings = settings
        self.user = user or "dispatcher"
        self.layout_name = layout
        self.engine = None
        self.demo = None
        self.panel: VideoPanel | None = None
        self.error: str | None = None
        self._opened_at: float | None = None
        self.setWindowTitle("视频墙" if settings.lang == "zh" else "Video wall")

    def open(self) -> None:
        from console.bootstrap import open_database
        from console.identity import tool_login

        settings, user = self.settings, self.user

        def work():
            engine = open_database(settings, seed_if_empty=True)
            return engine, tool_login(engine, user, workstation_name())

        run_in_thread(work, self._opened, self._failed, context=self)

    def _opened(self, result) -> None:
        engine, actor = result
        self.engine = engine
        if self.settings.database_url is None:  # the embedded demo: its cameras, live
            from console.video.demo import for_database
            from widgets.video.text_mask import render_mask

            self.demo = for_database(engine, self.settings.data_dir, render_mask).start()
        self.panel = VideoPanel(engine, actor, self.settings.lang, keep_layout=False)
        self.setCentralWidget(self.panel)
        self.panel.directory.loaded.connect(self._fill)
        self.panel.directory.load()
        self._opened_at = time.monotonic()

    def _fill(self) -> None:
        codes = sorted(self.panel.directory.cameras)[:tile_count(self.layout_name)]
        demo = self.demo
        if demo is None:
            self.panel.wall.show_cameras(codes, self.layout_name)
            return
        from console.video.demo import wait_until_prepared

        # The demo's scenes are made once, in the background: show them when they are.
        run_in_thread(lambda: wait_until_prepared(demo, codes, 90.0),
                      lambda _ok: self.panel.wall.show_cameras(codes, self.layout_name),
                      self._failed, context=self)

    def _failed(self, exc: Exception) -> None:
        self.error = str(exc)

    def ready(self) -> bool:
        if self.error is not None:
            return True
        if self.panel is None or self._opened_at is None:
            return False
        if time.monotonic() - self._opened_at > READY_AFTER_S:
            return True
        return self.panel.wall.all_live()

    def shutdown(self) -> None:
        if self.panel is not None:
            self.panel.shutdown()
        if self.demo is not None:
            self.demo.stop()
