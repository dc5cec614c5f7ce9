"""Run the automatic escalation of overdue cases on a timer, off the GUI thread.

Every console runs it; that is safe because each escalation re-checks the
case under its row lock (and skips rows another session holds), so two
consoles never escalate the same case twice.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer, Signal
from sqlalchemy import Engine

from console.tasks import run_in_thread
from db.deadlines import escalate_overdue

log = logging.getLogger(__name__)


class Escalator(QObject):
    """Escalates overdue cases every ``interval_s`` seconds; emits what it escalated."""

    escalated = Signal(list)

    def __init__(self, engine: Engine, interval_s: float = 60.0, parent: QObject | None = None):
        super().__init__(parent)
        self.engine = engine
        self._busy = False
        self.timer = QTimer(self)
        self.timer.setInterval(int(interval_s * 1000))
        self.timer.timeout.connect(self.run_once)

    def start(self) -> Escalator:
        self.timer.start()
        self.run_once()
        return self

    def run_once(self) -> None:
        if self._busy:  # the previous run is still going: skip a beat
            return
        self._busy = True
        engine = self.engine
        run_in_thread(lambda: escalate_overdue(engine), self._done, self._failed, context=self)

    def _done(self, numbers: list) -> None:
        self._busy = False
        if numbers:
            self.escalated.emit(numbers)

    def _failed(self, exc: Exception) -> None:
        self._busy = False
        log.warning("automatic escalation failed: %s", exc)
