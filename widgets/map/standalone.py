"""The live map in a window of its own: ``screenshot --view map`` (and a wall, later).

The database is opened on a worker thread (it may start the embedded server
and seed the demo); the map then loads its stores as in the console.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QMainWindow

from console.config import Settings
from console.i18n import tr
from console.tasks import run_in_thread
from db.errors import GridError


class MapWindow(QMainWindow):
    """The map alone on the configured database; ``ready()`` once it is all drawn."""

    def __init__(self, settings: Settings, listen: bool = False):
        super().__init__()
        self.settings = settings
        self.listen = listen
        self.engine = None
        self.map = None
        self.store = None
        self.error: str | None = None
        self._view: tuple | None = None
        self.setWindowTitle(tr("实时地图"))
        self.setCentralWidget(QLabel(tr("正在打开数据库…")))

    def open(self, center: tuple[float, float] | None = None, zoom: float | None = None) -> None:
        from console.bootstrap import open_database

        self._view = (center, zoom)
        settings = self.settings
        run_in_thread(lambda: open_database(settings, seed_if_empty=True), self._opened,
                      self._failed, context=self)

    def _opened(self, engine) -> None:
        from console.case_store import CaseStore
        from console.config import basemap_spec
        from console.map_stores import MapData
        from widgets.map.map_widget import MapWidget

        self.engine = engine
        self.store = CaseStore(engine, parent=self)
        data = MapData(engine, self.store, parent=self, listen=self.listen)
        spec = self.settings.basemap or basemap_spec(self.settings)
        self.map = MapWidget(data, self.settings.lang, spec, self.settings.data_dir / "tiles")
        self.setCentralWidget(self.map)
        self.store.load()
        data.start()
        center, zoom = self._view or (None, None)
        if center is not None or zoom is not None:
            data.territory.loaded.connect(
                lambda: self.map.set_center_zoom(*(center or self.map.centre_lonlat()),
                                                 zoom or 14))

    def _failed(self, exc: Exception) -> None:
        self.error = exc.message(self.settings.lang) if isinstance(exc, GridError) else str(exc)
        self.setCentralWidget(QLabel(self.error))

    def ready(self) -> bool:
        return self.error is not None or (self.map is not None and self.map.ready())

    def start_replay(self, at) -> None:
        """The map in replay at ``at`` (a datetime): the hall's day of T, everyone."""
        from widgets.map.replay_mode import day_window

        if self.map is None:
            return
        t0, t1 = day_window(at)
        self.map.set_replay(True, t0=t0, t1=t1, at=at)
        center, zoom = self._view or (None, None)
        if center is None and zoom is None:  # no view asked: the busiest worker's trail
            replay = self.map.replay
            replay.loaded.connect(replay.focus_busiest)

    def replay_ready(self) -> bool:
        replay = self.map.replay if self.map is not None else None
        return self.error is not None or replay is None or (
            replay.ready() and self.map.ready())

    def shutdown(self) -> None:
        if self.map is not None:
            self.map.shutdown()
        if self.store is not None:
            self.store.stop()
