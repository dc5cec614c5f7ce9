"""The change feed: LISTEN for case-log notifications, deliver entries in order.

A notification only says "something new"; the entries themselves are read
from the case log with ``seq > last_seen``.  Because log sequence order is
commit order (see ``db.case_actions``), that read never skips an entry, and
after a dropped connection the same read catches up with everything missed
while away.  A heartbeat also re-reads the log, so even a lost NOTIFY costs
at most one heartbeat of delay, never an update.

The feed runs in its own thread and calls plain callbacks; ``console.live``
turns those into Qt signals for the window.
"""

from __future__ import annotations

import logging
import os
import select as _select
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg2
import psycopg2.extensions
from sqlalchemy import Engine, func, select

from db.models import CaseLog

log = logging.getLogger(__name__)

CHANNEL = "grid_case"
_BATCH = 5000
_QUERY = (
    "SELECT seq, case_id, case_number, action, from_status, to_status, case_version, "
    "actor_name, at FROM case_log WHERE seq > %s ORDER BY seq LIMIT %s"
)


@dataclass(frozen=True)
class LogEntry:
    """One case-log entry as the feed delivers it."""

    seq: int
    case_id: int
    case_number: str
    action: str
    from_status: str | None
    to_status: str
    case_version: int
    actor_name: str
    at: datetime


def dsn_of(engine_or_url) -> str:
    """A libpq connection string from an engine or SQLAlchemy URL."""
    url = getattr(engine_or_url, "url", engine_or_url)
    if not isinstance(url, str):
        url = url.render_as_string(hide_password=False)
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def current_seq(engine: Engine) -> int:
    """The newest log sequence number, 0 for an empty log."""
    with engine.connect() as conn:
        return conn.execute(select(func.coalesce(func.max(CaseLog.seq), 0))).scalar_one()


class ChangeFeed:
    """A listener thread that delivers every case-log entry after ``start_seq`` once.

    ``on_entries`` receives lists of entries in sequence order; ``on_online``
    receives True when connected (after catching up) and False when the
    connection is lost.  Both run in the feed thread.

    ``start_seq=None`` starts at the newest entry (less ``history`` entries),
    read by the feed thread itself once it is connected, so whoever creates a
    feed (the GUI thread) never waits on the database; ``on_ready(seq)`` says
    where it started, once, so a snapshot read after it misses nothing.

    ``last_seq`` moves only once ``on_entries`` has returned: a callback that
    raises gets the same entries again after the reconnect, never loses them.
    """

    def __init__(
        self,
        dsn: str,
        on_entries: Callable[[list[LogEntry]], None],
        on_online: Callable[[bool], None] | None = None,
        start_seq: int | None = 0,
        heartbeat: float = 2.0,
        max_backoff: float = 5.0,
        channels: tuple[str, ...] = (),
        on_notify: Callable[[str, str], None] | None = None,
        history: int = 0,
        on_ready: Callable[[int], None] | None = None,
    ):
        self.dsn = dsn
        self.on_entries = on_entries
        self.on_online = on_online or (lambda online: None)
        self.on_ready = on_ready or (lambda seq: None)
        self.history = history
        self.last_seq: int | None = start_seq
        self.heartbeat = heartbeat
        self.max_backoff = max_backoff
        # Other channels (presence, positions, territory) are passed through as
        # (channel, payload); only the case log is read back for ordering.
        self.channels = tuple(c for c in channels if c != CHANNEL)
        self.on_notify = on_notify or (lambda channel, payload: None)
        self.online = False
        self.reconnects = 0
        self._stop = threading.Event()
        # Written by ``stop`` so the thread's select returns at once instead of at the next
        # heartbeat: closing a window (each has two feeds) no longer waits for it.
        self._wake_r, self._wake_w = os.pipe()
        self._conn: psycopg2.extensions.connection | None = None
        self._thread = threading.Thread(target=self._run, name="change-feed", daemon=True)

    # -- control --------------------------------------------------------------

    def start(self) -> ChangeFeed:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        if self._thread.ident is not None:  # never started: nothing to join
            self._thread.join(timeout)
        self._close()
        if not self._thread.is_alive():
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listening connection (tests terminate it)."""
        conn = self._conn
        return conn.get_backend_pid() if conn is not None and not conn.closed else None

    # -- the thread -----------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._connect()
                if self.last_seq is None:
                    self.last_seq = self._newest_seq()
                    self.on_ready(self.last_seq)
                self._catch_up()
                self._set_online(True)
                backoff = 0.1
                self._listen()
            except (psycopg2.Error, OSError) as exc:
                log.warning("change feed lost its connection: %s", exc)
            except Exception:  # a bug in a callback must not kill the feed
                log.exception("change feed callback failed")
            self._close()
            self._set_online(False)
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, self.max_backoff)
            self.reconnects += 1

    def _connect(self) -> None:
        conn = psycopg2.connect(self.dsn, connect_timeout=5, application_name="grid-feed")
        conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        with conn.cursor() as cur:
            for channel in (CHANNEL, *self.channels):
                cur.execute(f"LISTEN {channel}")
        self._conn = conn

    def _newest_seq(self) -> int:
        """Where a feed without a start begins: the newest entry, less ``history``."""
        with self._conn.cursor() as cur:
            cur.execute("SELECT coalesce(max(seq), 0) FROM case_log")
            newest = cur.fetchone()[0]
        return max(0, newest - self.history)

    def _listen(self) -> None:
        conn = self._conn
        assert conn is not None
        while not self._stop.is_set():
            ready, _, _ = _select.select([conn, self._wake_r], [], [], self.heartbeat)
            if self._stop.is_set():
                return
            conn.poll()
            if conn.notifies:
                others = [(n.channel, n.payload) for n in conn.notifies if n.channel != CHANNEL]
                conn.notifies.clear()
                for channel, payload in others:
                    self.on_notify(channel, payload)
            # Either a notification arrived or the heartbeat is due: read the log.
            # On a dead connection this raises, and _run reconnects.
            self._catch_up()
            if not ready:
                continue

    def _catch_up(self) -> None:
        conn = self._conn
        assert conn is not None
        while True:
            with conn.cursor() as cur:
                cur.execute(_QUERY, (self.last_seq, _BATCH))
                rows = cur.fetchall()
            if not rows:
                return
            entries = [LogEntry(*r) for r in rows]
            self.on_entries(entries)  # raises: the same entries again after the reconnect
            self.last_seq = entries[-1].seq
            if len(rows) < _BATCH:
                return

    def _set_online(self, online: bool) -> None:
        if online != self.online:
            self.online = online
            self.on_online(online)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                conn.close()
            except psycopg2.Error:
                pass
