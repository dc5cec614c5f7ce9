"""The worker board's state: the roster with derived status, refreshed off the GUI thread.

``WorkerBoardStore.refresh`` reads ``db.field.board_rows`` on a pool thread (every
``interval_s``, and at once when asked); today's patrol figures (``db.field.patrol_report``
for today) are heavier, so they are read every ``patrol_interval_s`` only.  Observers get
``changed`` once per refresh; each entry is the roster row with ``state`` (a
``console.worker_status.WorkerStatus``), ``patrol_minutes`` and ``coverage`` of today.
"""

from __future__ import annotations

import time as _time
from datetime import timedelta

from PySide6.QtCore import QObject, QTimer, Signal
from sqlalchemy import Engine

from console.tasks import run_in_thread
from console.worker_status import derive, today_bounds
from db.field import board_rows, patrol_report, schedule_of


class WorkerBoardStore(QObject):
    changed = Signal()
    failed = Signal(object)

    def __init__(self, engine: Engine, parent: QObject | None = None, interval_s: float = 15.0,
                 patrol_interval_s: float = 300.0, auto: bool = True):
        super().__init__(parent)
        self.engine = engine
        self.rows: list[dict] = []
        self.is_loaded = False  # the first refresh (with today's patrols) has arrived
        self.patrol: dict[str, tuple[float, float | None]] = {}
        self._patrol_at = -1e9
        self._patrol_interval = patrol_interval_s
        self._busy = False
        self._timer = QTimer(self)
        self._timer.setInterval(int(interval_s * 1000))
        self._timer.timeout.connect(self.refresh)
        if auto:
            self._timer.start()
            QTimer.singleShot(0, self.refresh)

    def refresh(self, patrol: bool = False) -> None:
        """Read the board again (and today's patrols when due or ``patrol``)."""
        if self._busy:
            return
        self._busy = True
        engine = self.engine
        want_patrol = patrol or _time.monotonic() - self._patrol_at >= self._patrol_interval

        def work():
            rows, now = board_rows(engine)
            figures = None
            if want_patrol:
                start, _ = today_bounds(now)
                rep = patrol_report(engine, start.date(), start.date() + timedelta(days=1))
                figures = {w["worker"]: (w["days"][0]["patrol_minutes"],
                                         w["days"][0]["coverage"]) for w in rep["workers"]}
            return rows, now, figures

        run_in_thread(work, self._done, self._error, context=self)

    def _done(self, result) -> None:
        self._busy = False
        rows, now, figures = result
        if figures is not None:
            self.patrol = figures
            self._patrol_at = _time.monotonic()
        for r in rows:
            minutes, coverage = self.patrol.get(r["code"], (None, None))
            r["patrol_minutes"], r["coverage"] = minutes, coverage
            r["state"] = derive(r, now, schedule_of(r), minutes)
        self.rows = rows
        self.is_loaded = self.is_loaded or figures is not None
        self.changed.emit()

    def _error(self, exc: Exception) -> None:
        self._busy = False
        self.failed.emit(exc)
