"""Qt side of the change feed: log entries and connection state as signals.

The feed thread emits; Qt queues the signal to the receivers' thread, so
widgets update on the GUI thread without any locking of their own.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from sqlalchemy import Engine

from db.feed import ChangeFeed, current_seq, dsn_of


class LiveFeed(QObject):
    """Signals ``entries(list[LogEntry])`` and ``online(bool)`` from a ChangeFeed."""

    entries = Signal(list)
    online = Signal(bool)
    notified = Signal(str, str)  # channel, payload: presence, territory, …

    def __init__(
        self,
        engine: Engine,
        start_seq: int | None = None,
        heartbeat: float = 2.0,
        parent: QObject | None = None,
        channels: tuple[str, ...] = ("grid_presence", "grid_territory"),
    ):
        super().__init__(parent)
        seq = current_seq(engine) if start_seq is None else start_seq
        self.feed = ChangeFeed(
            dsn_of(engine),
            self.entries.emit,
            self.online.emit,
            start_seq=seq,
            heartbeat=heartbeat,
            channels=channels,
            on_notify=self.notified.emit,
        )

    def start(self) -> LiveFeed:
        self.feed.start()
        return self

    def stop(self) -> None:
        self.feed.stop()

    @property
    def last_seq(self) -> int:
        return self.feed.last_seq
