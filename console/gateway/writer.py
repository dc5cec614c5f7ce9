"""The gateway's database writer: queued reports into PostgreSQL, in order, until taken.

``BatchWriter`` takes fsync'd reports in queue order, stores them in batches
(``db.positions.store_positions``), retries while the database is away and
reports progress through two callbacks: ``on_committed(last_seq, n, stats)``
and ``on_available(ok, reason)``.  It also runs the periodic work: offline
sweep and partition maintenance.

It runs either in a thread of the gateway (tests, small sites) or in a
child process (``WriterProcess``, what ``python main.py gateway`` uses).
Why a process: encoding a batch holds the interpreter lock for milliseconds
at a time, and the event loop then waits for it after every socket call;
in paired runs on a shared two-core machine the gateway accepted markedly
more reports per second (5,700-7,700 against about 5,000) with the writer
out of its process.  The child is forked before the gateway starts any
thread and gets reports as queue records through a pipe; if it dies the
gateway stops (the queue on disk still holds every acknowledged report and
is replayed on the next start).  If the gateway itself is killed, the
child sees the pipe close, stores what it was given and exits.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import timedelta

import psycopg2
import sqlalchemy.exc
from sqlalchemy import Engine

from console.gateway.queue import read_records
from db.errors import BadInput, Unavailable
from db.positions import PositionReport, maintain, store_positions, sweep_offline
from db.session import Busy, Deadlocked

log = logging.getLogger("grid.gateway")

_PERMANENT = (
    psycopg2.DataError,
    psycopg2.IntegrityError,
    sqlalchemy.exc.DataError,
    sqlalchemy.exc.IntegrityError,
    BadInput,
)

OnCommitted = Callable[[int, int, dict], None]
OnAvailable = Callable[[bool, str], None]


class Abandon(Exception):
    """Stopping while the database is away: leave the rest in the queue."""


class BatchQueue:
    """Reports waiting for the writer, in queue order, with their last sequence number."""

    def __init__(self, batch_max: int, flush_interval: float):
        self.batch_max = batch_max
        self.flush_interval = flush_interval
        self._items: deque[tuple[list[PositionReport], int]] = deque()
        self._count = 0
        self._cond = threading.Condition(threading.Lock())
        self.closed = False

    def put(self, reports: list[PositionReport], last_seq: int) -> None:
        with self._cond:
            self._items.append((reports, last_seq))
            self._count += len(reports)
            if len(self._items) == 1 or self._count >= self.batch_max:
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def take(self) -> tuple[list[PositionReport], int]:
        """Up to ``batch_max`` reports, waiting ``flush_interval`` for a batch to form."""
        with self._cond:
            if not self._items and not self.closed:
                self._cond.wait(timeout=1.0)
            if self._items and self._count < self.batch_max and not self.closed:
                self._cond.wait(timeout=self.flush_interval)
            batch: list[PositionReport] = []
            last = 0
            while self._items and len(batch) < self.batch_max:
                reports, last = self._items.popleft()
                batch.extend(reports)
                self._count -= len(reports)
            return batch, last


class BatchWriter:
    """Stores what ``queue`` holds, in order; returns when it is closed and empty."""

    def __init__(
        self,
        engine: Engine,
        config,
        queue: BatchQueue,
        on_committed: OnCommitted,
        on_available: OnAvailable,
        abandon: threading.Event,
    ):
        self.engine = engine
        self.config = config
        self.queue = queue
        self.on_committed = on_committed
        self.on_available = on_available
        self.abandon = abandon
        self.available = True
        self._stats: Counter[str] = Counter()

    def run(self) -> None:
        next_sweep = time.monotonic() + self.config.sweep_every
        next_maintain = time.monotonic() + self.config.maintain_every
        try:
            while True:
                batch, last = self.queue.take()
                if batch:
                    self._stats.clear()
                    self._store(batch)
                    self.on_committed(last, len(batch), dict(self._stats))
                elif self.queue.closed:
                    return
                now = time.monotonic()
                if now >= next_sweep and self.available:
                    next_sweep = now + self.config.sweep_every
                    minutes = timedelta(minutes=self.config.offline_minutes)
                    self._quietly(sweep_offline, self.engine, minutes)
                if now >= next_maintain and self.available:
                    next_maintain = now + self.config.maintain_every
                    self._quietly(maintain, self.engine, self.config.retention_days)
        except Abandon:
            log.warning("stopping with the database away: the rest stays in the queue")

    def _store(self, batch: list[PositionReport]) -> None:
        delay = 0.1
        while True:
            try:
                # Devices are registered at admission (server.DeviceDirectory), where the
                # gateway decides who may register; here an unknown device is one deleted
                # since, and its reports are dropped rather than the device recreated.
                result = store_positions(self.engine, batch)
            except Unavailable as exc:
                self._set_available(False, exc)
            except (Busy, Deadlocked) as exc:  # another writer in the way: wait and retry
                log.warning("storing %d report(s) waits: %s", len(batch), exc.message("en"))
            except _PERMANENT as exc:
                self._isolate(batch, exc)
                return
            except Exception:  # unexpected: keep the reports, log, retry
                log.exception("storing %d report(s) failed; retrying", len(batch))
            else:
                self._set_available(True)
                self._stats["stored"] += result.stored
                self._stats["duplicates"] += result.duplicates
                self._stats["unknown"] += result.unknown
                self._stats["events"] += result.events
                if result.unknown:
                    log.warning(
                        "%d report(s) of unknown device(s) not stored: %s",
                        result.unknown,
                        ", ".join(result.unknown_devices[:20]),
                    )
                return
            if self.abandon.wait(delay):
                raise Abandon
            delay = min(delay * 2, 2.0)

    def _isolate(self, batch: list[PositionReport], exc: BaseException) -> None:
        """A batch the database refuses as data: store the rest, drop only the culprit."""
        if len(batch) == 1:
            self._stats["dropped"] += 1
            log.error("report of %s at %s dropped: %s", batch[0].device, batch[0].ts, exc)
            return
        mid = len(batch) // 2
        self._store(batch[:mid])
        self._store(batch[mid:])

    def _set_available(self, available: bool, exc: BaseException | None = None) -> None:
        if available != self.available:
            self.available = available
            self.on_available(available, "" if exc is None else str(exc))

    def _quietly(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:
            log.warning("%s failed: %s", fn.__name__, exc)


class WriterProcess:
    """A ``BatchWriter`` in a forked child, fed queue records through a pipe.

    Create and ``start()`` it before the parent starts any thread (a fork
    copies only the calling thread, and a lock another thread held would
    stay locked in the child).  Messages back are read by a thread of the
    parent and become the same two callbacks as in thread mode.
    """

    def __init__(
        self, engine: Engine, config, on_committed: OnCommitted, on_available: OnAvailable
    ):
        self.engine = engine
        self.config = config
        self.on_committed = on_committed
        self.on_available = on_available
        self.on_died: Callable[[], None] = lambda: None
        ctx = mp.get_context("fork")
        self._rx_child, self._tx = ctx.Pipe(duplex=False)  # parent → child: records
        self._rx, self._tx_child = ctx.Pipe(duplex=False)  # child → parent: progress
        self._process = ctx.Process(target=self._child, name="gateway-writer", daemon=False)
        self._acks: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._stopping = False

    def start(self) -> None:
        self._process.start()
        self._rx_child.close()
        self._tx_child.close()

    def start_acks(self) -> None:
        """Start reading the child's messages (a thread: only after the fork)."""
        self._acks = threading.Thread(target=self._read_acks, name="gateway-acks", daemon=True)
        self._acks.start()

    def send(self, last_seq: int, records: bytes) -> None:
        """Hand fsync'd queue records (``last_seq`` = the last one's sequence number) over."""
        with self._send_lock:
            self._tx.send_bytes(last_seq.to_bytes(8, "big") + records)

    def stop(self, timeout: float) -> None:
        """Let the child store what it has (up to ``timeout``), then end it."""
        self._stopping = True
        with self._send_lock:
            self._tx.close()  # EOF: the child drains its queue and exits
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        if self._acks is not None:
            self._acks.join(5)

    def _read_acks(self) -> None:
        while True:
            try:
                message = self._rx.recv()
            except (EOFError, OSError):
                break
            if message[0] == "committed":
                self.on_committed(message[1], message[2], message[3])
            elif message[0] == "available":
                self.on_available(message[1], message[2])
        if not self._stopping:
            log.critical("the database writer process died; stopping the gateway")
            self.on_died()

    # --- in the child ---------------------------------------------------------------

    def _child(self) -> None:
        # The parent decides when this process ends: SIGTERM ends it, Ctrl-C in
        # a terminal (sent to the whole group) does not; the pipe's EOF drains it.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal: the parent stops it
        self._tx.close()
        self._rx.close()
        self.engine.dispose(close=False)  # the parent's connections stay the parent's
        queue = BatchQueue(self.config.batch_max, self.config.flush_interval)
        send_lock = threading.Lock()

        def send(message: tuple) -> None:
            with send_lock:
                self._tx_child.send(message)

        def read() -> None:
            while True:
                try:
                    data = self._rx_child.recv_bytes()
                except (EOFError, OSError):
                    break
                queue.put(read_records(data[8:]), int.from_bytes(data[:8], "big"))
            queue.close()

        threading.Thread(target=read, name="writer-pipe", daemon=True).start()
        writer = BatchWriter(
            self.engine,
            self.config,
            queue,
            lambda seq, n, stats: send(("committed", seq, n, stats)),
            lambda ok, reason: send(("available", ok, reason)),
            threading.Event(),
        )
        writer.run()
        self.engine.dispose()
        os._exit(0)
