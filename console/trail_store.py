"""The live trails' store: the last minutes of every worker, fed by the positions store.

The history of the window (``window_s``, 30 minutes by default) is read once when the
map opens, by binary COPY (``db.field.load_tracks``) and projected on a pool thread;
from then on every read the positions store applies (``PositionStore.fixes``, whole
columns) is appended, and a slow clock ages the trails (levels shift, fixes older than
the window leave).  No query per frame, none per worker, nothing on the GUI thread but
whole-array appends into ``maps.trails.TrailLayer``.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from sqlalchemy import Engine

from console.tasks import run_in_thread
from maps.mercator import Projector
from maps.trails import DEFAULT_WINDOW_S, TrailLayer

log = logging.getLogger(__name__)

AGE_EVERY_MS = 5000  # the trails age (levels move) at most this often when nothing arrives


class TrailStore(QObject):
    """Keeps a :class:`maps.trails.TrailLayer` current; ``loaded()`` after the history."""

    loaded = Signal()
    failed = Signal(object)

    def __init__(self, engine: Engine, positions, projector: Projector,
                 parent: QObject | None = None, window_s: float = DEFAULT_WINDOW_S,
                 clock=time.time):
        super().__init__(parent)
        self.engine = engine
        self.projector = projector
        self.clock = clock
        self.layer = TrailLayer(window_s)
        self.is_loaded = False
        self._early: list = []  # live reads that came before the history
        self._generation = 0
        self._stopped = False
        positions.fixes.connect(self.add_columns)
        self._ager = QTimer(self, interval=AGE_EVERY_MS)
        self._ager.timeout.connect(lambda: self.layer.set_now(self.clock()))

    def start(self) -> TrailStore:
        self.load()
        self._ager.start()
        return self

    def load(self) -> None:
        """Read the window's history (again: the window grew, the datum changed)."""
        from db.field import load_tracks

        self._generation += 1
        generation, engine, projector = self._generation, self.engine, self.projector
        now = self.clock()
        window = self.layer.window_s

        def work():
            t1 = datetime.fromtimestamp(now, UTC) + timedelta(minutes=1)
            tracks = load_tracks(engine, t1 - timedelta(seconds=window + 60), t1)
            x, y = (projector.forward(tracks.lon, tracks.lat) if len(tracks)
                    else (np.zeros(0), np.zeros(0)))
            return generation, tracks.device.astype(np.int64), tracks.t, x, y

        run_in_thread(work, self._on_history, self._on_failed, context=self)

    def _on_history(self, result) -> None:
        generation, device, t, x, y = result
        if self._stopped or generation != self._generation:
            return  # a later load is on its way
        self.layer.replace(device, t, x, y, now=self.clock())
        early, self._early = self._early, []
        for cols in early:
            self.add_columns(cols)
        self.is_loaded = True
        self.loaded.emit()

    def _on_failed(self, exc: Exception) -> None:
        log.warning("trail history not read: %s", exc)
        self.is_loaded = True
        self.failed.emit(exc)

    def add_columns(self, cols) -> None:
        """One read of the positions store (``PositionColumns``): append its fixes."""
        if self._stopped or not len(cols.device_id):
            return
        if not self.is_loaded:
            self._early.append(cols)
            return
        ok = np.isfinite(cols.lon) & np.isfinite(cols.lat)
        if not ok.any():
            return
        x, y = self.projector.forward(cols.lon[ok], cols.lat[ok])
        self.layer.append(cols.device_id[ok], cols.ts[ok], x, y, now=self.clock())

    def set_window(self, window_s: float) -> None:
        """Show the last ``window_s`` seconds; a longer window reads the history again."""
        longer = window_s > self.layer.window_s
        self.layer.set_window(window_s)
        if longer:
            self.is_loaded = False
            self.load()

    def reproject(self) -> None:
        self.is_loaded = False
        self.load()

    def stop(self) -> None:
        self._stopped = True
        self._ager.stop()
