"""Qt side of the change feed: log entries and connection state as signals.

The feed thread emits; Qt queues the signal to the receivers' thread, so
widgets update on the GUI thread without any locking of their own.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from sqlalchemy import Engine

from db.feed import ChangeFeed, dsn_of


class LiveFeed(QObject):
    """Signals ``entries(list[LogEntry])`` and ``online(bool)`` from a ChangeFeed.

    Creating one asks the database nothing (it is made on the GUI thread):
    without ``start_seq`` the feed thread reads the newest entry itself once
    connected (less ``history``) and says so with ``ready(seq)``, once; load a
    snapshot after that and nothing between them is missed.
    """

    entries = Signal(list)
    online = Signal(bool)
    ready = Signal(int)  # where the feed started (the newest entry when it connected)
    notified = Signal(str, str)  # channel, payload: presence, territory, …

    def __init__(
        self,
        engine: Engine,
        start_seq: int | None = None,
        heartbeat: float = 2.0,
        parent: QObject | None = None,
        channels: tuple[str, ...] = ("grid_presence", "grid_territory"),
        history: int = 0,
    ):
        super().__init__(parent)
        self.feed = ChangeFeed(
            dsn_of(engine),
            self.entries.emit,
            self.online.emit,
            start_seq=start_seq,
            heartbeat=heartbeat,
            channels=channels,
            on_notify=self.notified.emit,
            history=history,
            on_ready=self.ready.emit,
        )

    def start(self) -> LiveFeed:
        self.feed.start()
        return self

    def stop(self) -> None:
        self.feed.stop()

    @property
    def last_seq(self) -> int:
        """The newest entry delivered (0 until the feed has started)."""
        return self.feed.last_seq or 0
