"""The GPS gateway: terminals' positions over HTTP into the shared database.

    python main.py gateway [--host 127.0.0.1] [--port 5055] [--register-unknown] [--queue-dir DIR]
        [--require-keys] [--allow NET ...] [--tls-cert FILE --tls-key FILE]

A report travels: HTTP request → the client's network (403 outside ``--allow``)
→ ``console.gateway.osmand`` (refused with 400 and a reason if it is not a
storable position) → device and key check (404 for a device not in
``device``; 401/403 without the device's key; registering an unknown one only
as ``console.gateway.access`` permits) → admission →
the write-ahead queue, fsync'd in groups (``console.gateway.queue``) → 200
→ batches stored by ``db.positions.store_positions`` in the writer
(``console.gateway.writer``: a child process under ``main.py gateway``, a
thread when embedded, as in the tests) → queue segment deleted.  HTTP
framing, limits and timeouts are ``console.gateway.http``.

The promise to a terminal: **a 200 means the report is in the database or
in the fsync'd queue, and will be stored exactly once** (a gateway killed
at any point replays its queue on start; storing is idempotent).

When it cannot keep that promise cheaply it says 503 (terminals retry):

* the database is unreachable: from the moment the writer sees that until
  a retry succeeds, new reports get 503; the few answered 200 before it
  noticed wait in the queue and are stored when the database returns;
* the backlog (accepted, not yet committed) reaches ``max_backlog``:
  memory and the queue on disk stay bounded under any load;
* the queue cannot be written (disk full).

Settings beyond the command line come from the environment:
``GRID_GATEWAY_RETENTION_DAYS`` (default 90), ``GRID_GATEWAY_OFFLINE_MINUTES``
(default 10), ``GRID_GATEWAY_MAX_BACKLOG`` (default 20000), and the
enrolment key ``GRID_ENROL_KEY`` (or ``--enrol-key-file``; never on the
command line, where every user of the machine could read it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import json
import logging
import math
import os
import signal
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, event, text

from console.gateway.access import ENROL_REFUSED, NOT_ALLOWED, AccessPolicy, health_answer
from console.gateway.http import HttpServer, Limits, Peer, Respond
from console.gateway.osmand import ParseError, parse_keyed_request
from console.gateway.queue import WriteAheadQueue, encode
from console.gateway.writer import BatchQueue, BatchWriter, WriterProcess
from db.errors import BadInput
from db.positions import (
    DEFAULT_OFFLINE_MINUTES,
    DEFAULT_RETENTION_DAYS,
    PositionReport,
    maintain,
)

log = logging.getLogger("grid.gateway")

DB_DOWN = "数据库暂时不可用，请稍后重试 / Database unavailable, retry later\n"
OVERLOADED = "网关繁忙，请稍后重试 / Gateway busy, retry later\n"
QUEUE_FAILED = "网关暂存队列无法写入，请稍后重试 / Gateway queue cannot be written, retry later\n"


@dataclass
class GatewayConfig:
    """How one gateway listens, queues and stores; see the module docstring."""

    queue_dir: Path
    host: str = "127.0.0.1"
    port: int = 5055
    register_unknown: bool = False
    retention_days: int = DEFAULT_RETENTION_DAYS
    offline_minutes: float = DEFAULT_OFFLINE_MINUTES
    max_backlog: int = 20_000
    batch_max: int = 5_000
    flush_interval: float = 0.05
    unknown_ttl: float = 5.0
    sweep_every: float = 30.0
    maintain_every: float = 3600.0
    writer_process: bool = False
    reload_devices_every: float = 60.0
    limits: Limits = field(default_factory=Limits)
    access: AccessPolicy = field(default_factory=AccessPolicy)
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @classmethod
    def from_args(cls, settings, args) -> GatewayConfig:
        """From the ``gateway`` command's flags and the environment; ``BadInput`` if wrong."""
        from console.credentials import read_owner_only, remember

        env = os.environ
        queue_dir = getattr(args, "queue_dir", None)
        if getattr(args, "enrol_key", None):
            raise BadInput(
                "登记密钥不要写在命令行上（本机所有用户都能看到）：请用环境变量 GRID_ENROL_KEY "
                "或 --enrol-key-file。",
                "Do not put the enrolment key on the command line (every user of this machine "
                "can see it): use GRID_ENROL_KEY or --enrol-key-file.",
            )
        key_file = getattr(args, "enrol_key_file", None)
        enrol_key = read_owner_only(key_file) if key_file else env.get("GRID_ENROL_KEY") or None
        remember(enrol_key)
        cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
        if key and not cert:
            raise BadInput("--tls-key 需要与 --tls-cert 一起使用。", "--tls-key needs --tls-cert.")
        return cls(
            queue_dir=Path(queue_dir) if queue_dir else Path(settings.data_dir) / "gateway",
            host=getattr(args, "host", "127.0.0.1"),
            port=getattr(args, "port", 5055),
            register_unknown=bool(getattr(args, "register_unknown", False)),
            retention_days=int(_setting(args, "retention_days", DEFAULT_RETENTION_DAYS, int, 1)),
            offline_minutes=_setting(args, "offline_minutes", DEFAULT_OFFLINE_MINUTES, float, 0),
            max_backlog=int(_setting(args, "max_backlog", 20_000, int, 1)),
            writer_process=True,
            access=AccessPolicy.build(
                require_keys=bool(getattr(args, "require_keys", False)),
                allow=getattr(args, "allow", None) or (),
                enrol_key=enrol_key,
            ),
            tls_cert=Path(cert) if cert else None,
            tls_key=Path(key) if key else None,
        )


def tls_context(cert: Path, key: Path | None) -> ssl.SSLContext:
    """A server context for ``--tls-cert``/``--tls-key`` (TLS 1.2 or newer).

    ``key`` may be None when the certificate file holds the key too.  A file
    that cannot be read or does not hold a matching pair is ``BadInput``
    (one line, before anything listens); the key's contents never appear in it.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key) if key else None)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or "invalid"
        raise BadInput(
            f"无法加载 TLS 证书或私钥（{cert}）：{reason}",
            f"Cannot load the TLS certificate or key ({cert}): {reason}",
        ) from None
    return context


def _setting(args, name: str, default, kind, least: float):
    """A number from the flag, else ``GRID_GATEWAY_<NAME>``, else the default.

    A value given is used as given (``--retention-days 0`` is not the default), and
    one that makes no sense is refused in one line: a negative retention or an
    offline silence of zero would otherwise start a gateway that keeps nothing
    clean or reports every terminal offline.
    """
    flag = "--" + name.replace("_", "-")
    value = getattr(args, name, None)
    source = flag
    if value is None:
        source = "GRID_GATEWAY_" + name.upper()
        value = os.environ.get(source, default)
    try:
        number = kind(value)
        ok = math.isfinite(number) and (number > least if kind is float else number >= least)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        at_least = f"大于 {least:g}" if kind is float else f"不小于 {least:g} 的整数"
        en = f"greater than {least:g}" if kind is float else f"a whole number of at least {least:g}"
        raise BadInput(f"{source} 须为{at_least}（收到 {value}）。",
                       f"{source} must be {en} (got {value}).")
    return number


class RefusalLog:
    """Says in the log what was refused and why, without letting a flood drown it.

    Up to ``per_second`` refusals are logged one by one; beyond that they are
    counted and summarised once a second.
    """

    def __init__(self, per_second: int = 20):
        self.per_second = per_second
        self.by_status: Counter[int] = Counter()
        self._window = 0.0
        self._logged = 0
        self._suppressed: Counter[int] = Counter()
        self._lock = threading.Lock()

    def __call__(self, status: int, reason: str, peer: Peer) -> None:
        now = time.monotonic()
        with self._lock:
            self.by_status[status] += 1
            if now - self._window >= 1.0:
                if self._suppressed:
                    summary = ", ".join(f"{n}×{s}" for s, n in sorted(self._suppressed.items()))
                    log.info("refused %s more (not logged one by one)", summary)
                    self._suppressed.clear()
                self._window, self._logged = now, 0
            if self._logged < self.per_second:
                self._logged += 1
                log.info("refused %d from %s: %s", status, peer, reason.strip())
            else:
                self._suppressed[status] += 1


class DeviceDirectory:
    """Which devices exist and their key hashes, cached so a report costs no query.

    Known devices are kept (devices are rarely deleted, and a report of a
    deleted one is simply counted unknown when stored); unknown ones are
    remembered for ``unknown_ttl`` seconds, so an unregistered terminal that
    retries every second costs one query per TTL, and a device an
    administrator just registered is accepted within that time.  A report
    refused for its key makes the gateway read that device again (at most
    once per ``unknown_ttl``, so a flood of wrong keys costs one query per
    TTL), so a key set or replaced a moment ago works within seconds; a key
    removed or replaced stops working at the next reload (a minute).
    """

    _MAX_UNKNOWN = 10_000

    def __init__(self, engine: Engine, unknown_ttl: float):
        self.engine = engine
        self.unknown_ttl = unknown_ttl
        self.known: dict[str, str | None] = {}
        self._unknown: dict[str, float] = {}
        self._rechecked: dict[str, float] = {}
        self._lock = threading.Lock()

    def load(self) -> None:
        """Every device in ``device``; called at start and then every minute, so a
        device deleted by an administrator stops being accepted (its reports
        would otherwise be answered 200 and then not stored), and a changed key
        takes effect."""
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT identifier, key_hash FROM device")).all()
        with self._lock:
            self.known = {identifier: key_hash for identifier, key_hash in rows}

    def cached(self, device: str) -> tuple[bool, str | None]:
        """(known, its key hash) from the cache; (False, None) when not known."""
        try:
            return True, self.known[device]
        except KeyError:
            return False, None

    def recently_unknown(self, device: str) -> bool:
        return self._unknown.get(device, 0.0) > time.monotonic()

    def may_recheck(self, device: str) -> bool:
        """Whether a key refusal for ``device`` may ask the database again now."""
        now = time.monotonic()
        with self._lock:
            if self._rechecked.get(device, 0.0) > now:
                return False
            if len(self._rechecked) > self._MAX_UNKNOWN:
                self._rechecked = {k: t for k, t in self._rechecked.items() if t > now}
            self._rechecked[device] = now + self.unknown_ttl
            return True

    def lookup(self, device: str, register: bool = False) -> tuple[bool, str | None]:
        """Ask the database (adding the device first when ``register``): (exists, key hash)."""
        with self.engine.begin() as conn:
            if register:
                conn.execute(
                    text(
                        "INSERT INTO device (identifier) VALUES (:i) "
                        "ON CONFLICT (identifier) DO NOTHING"
                    ),
                    {"i": device},
                )
            row = conn.execute(
                text("SELECT key_hash FROM device WHERE identifier = :i"), {"i": device}
            ).first()
        now = time.monotonic()
        with self._lock:
            if row is not None:
                self.known[device] = row.key_hash
                self._unknown.pop(device, None)
            else:
                self.known.pop(device, None)
                if len(self._unknown) > self._MAX_UNKNOWN:
                    self._unknown = {k: t for k, t in self._unknown.items() if t > now}
                    if len(self._unknown) > self._MAX_UNKNOWN:
                        self._unknown.clear()
                self._unknown[device] = now + self.unknown_ttl
        if row is not None and register:
            log.info("registered or confirmed device %s", device)
        return row is not None, None if row is None else row.key_hash


class Pipeline:
    """Accepted reports: fsync'd to the queue in groups, then stored in batches.

    The queue thread appends whatever arrived while the previous fsync ran
    (group commit) and releases the waiting requests; the writer
    (``console.gateway.writer``, a thread or a child process) stores in
    batches, in queue order, retrying until the database takes them, and
    reports progress, which marks the queue committed and frees backlog.
    Neither an fsync nor a database round trip ever runs on the event loop.
    """

    def __init__(self, engine: Engine, config: GatewayConfig, wal: WriteAheadQueue, loop):
        self.engine = engine
        self.config = config
        self.wal = wal
        self.loop = loop
        self.db_available = True
        self.backlog = 0
        self.stats: Counter[str] = Counter()
        self.on_writer_died: Callable[[], None] = lambda: None
        self._lock = threading.Lock()
        self._incoming: list[tuple[list[PositionReport], Callable[[bool], None]]] = []
        self._incoming_cond = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._queue: BatchQueue | None = None
        self._abandon = threading.Event()
        self._process: WriterProcess | None = None

    # --- admission (event loop) -----------------------------------------------------

    def reserve(self, n: int) -> str | None:
        """Take room for ``n`` reports, or the reason to answer 503."""
        with self._lock:
            if not self.db_available:
                return DB_DOWN
            if self.backlog + n > self.config.max_backlog:
                return OVERLOADED
            self.backlog += n
            return None

    def submit(self, reports: list[PositionReport], done: Callable[[bool], None]) -> None:
        """Queue reserved reports; ``done(ok)`` runs on the event loop after the fsync."""
        with self._lock:
            self._incoming.append((reports, done))
            if len(self._incoming) == 1:
                self._incoming_cond.notify()

    # --- lifecycle --------------------------------------------------------------------

    def start(self, replayed: list[PositionReport]) -> None:
        """Start the writer (forked first, while this process has one thread), then threads."""
        if self.config.writer_process:
            self._process = WriterProcess(
                self.engine, self.config, self._committed, self._set_available
            )
            self._process.on_died = self._writer_died
            self._process.start()
            self._process.start_acks()
        else:
            self._queue = BatchQueue(self.config.batch_max, self.config.flush_interval)
            writer = BatchWriter(
                self.engine,
                self.config,
                self._queue,
                self._committed,
                self._set_available,
                self._abandon,
            )
            self._start_thread("gateway-writer", writer.run)
        if replayed:
            with self._lock:
                self.backlog += len(replayed)
            self._hand_over(replayed, self.wal.last_seq, None)
        self._start_thread("gateway-queue", self._queue_loop)

    def _start_thread(self, name: str, target) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float) -> None:
        """Finish what was accepted; after ``timeout`` leave the rest to the queue on disk."""
        self._stopping.set()
        with self._lock:
            self._incoming_cond.notify_all()
        for thread in self._threads:
            if thread.name == "gateway-queue":
                thread.join(timeout)
        if self._process is not None:
            self._process.stop(timeout)
        else:
            self._queue.close()
            writer = next(t for t in self._threads if t.name == "gateway-writer")
            writer.join(timeout)
            if writer.is_alive():
                self._abandon.set()
                writer.join(5.0)
        self.wal.housekeeping(idle=True)
        self.wal.close()

    # --- queue thread -----------------------------------------------------------------

    def _queue_loop(self) -> None:
        while True:
            idle = False
            with self._lock:
                if not self._incoming and not self._stopping.is_set():
                    idle = not self._incoming_cond.wait(timeout=1.0)
                items, self._incoming = self._incoming, []
            if not items:
                if self._stopping.is_set():
                    return
                if idle:
                    self.wal.housekeeping(idle=True)
                continue
            reports = [r for batch, _ in items for r in batch]
            try:
                last, records = self.wal.append(reports)
                self._hand_over(reports, last, records)
                ok = True
            except OSError:  # disk full, I/O error: the queue logged it (throttled)
                ok = False
                with self._lock:
                    self.backlog -= len(reports)
            except Exception:  # a bug: never a hung request
                log.exception("queue write failed: answering 503")
                ok = False
                with self._lock:
                    self.backlog -= len(reports)
            self.loop.call_soon_threadsafe(_resolve, [done for _, done in items], ok)
            self.wal.housekeeping()

    def _hand_over(self, reports: list[PositionReport], last: int, records: bytes | None) -> None:
        if self._process is None:
            self._queue.put(reports, last)
            return
        if records is None:
            records = b"".join(encode(r) for r in reports)
        self._process.send(last, records)

    def _writer_died(self) -> None:
        self._set_available(False, "the writer process died")
        self.on_writer_died()

    # --- writer progress (writer thread, or the acks thread) ------------------------------

    def _committed(self, last_seq: int, n: int, stats: dict) -> None:
        self.wal.mark_committed(last_seq)
        with self._lock:
            self.backlog -= n
            self.stats.update(stats)

    def _set_available(self, available: bool, reason: str) -> None:
        with self._lock:
            self.db_available = available
        if available:
            log.warning("database reachable again: accepting reports")
        else:
            log.warning("database unavailable (%s): answering 503 until it returns", reason)


def _resolve(callbacks: list[Callable[[bool], None]], ok: bool) -> None:
    for done in callbacks:
        done(ok)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Gateway:
    """One gateway: an event loop thread for HTTP, the pipeline's two threads.

    ``start()`` replays the queue, binds the port and returns it (port 0 picks
    a free one); ``stop()`` stops listening and stores what it accepted.
    """

    def __init__(self, engine: Engine, config: GatewayConfig, wal: WriteAheadQueue | None = None):
        self.engine = engine
        self.config = config
        self.refusals = RefusalLog()
        self.directory = DeviceDirectory(engine, config.unknown_ttl)
        self.tls = tls_context(config.tls_cert, config.tls_key) if config.tls_cert else None
        # The queue directory locked (or refused) first: one gateway per directory.
        self.wal = wal or WriteAheadQueue(config.queue_dir)
        self.loop = asyncio.new_event_loop()
        self.pipeline = Pipeline(engine, config, self.wal, self.loop)
        self.http = HttpServer(self._handle, config.limits, self.refusals)
        self.executor = concurrent.futures.ThreadPoolExecutor(2, "gateway-lookup")
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> int:
        replayed = self.wal.replay()
        try:
            maintain(self.engine, self.config.retention_days)
            self.directory.load()
        except Exception as exc:
            log.warning("start-up maintenance failed (%s); continuing", exc)
        self.pipeline.start(replayed)
        self._thread = threading.Thread(target=self._run_loop, name="gateway-http", daemon=True)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            self.http.start(self.config.host, self.config.port, self.tls), self.loop
        )
        try:
            self.port = future.result(timeout=10)
        except BaseException:
            self.stop()
            raise
        self.loop.call_soon_threadsafe(self._schedule_reload)
        scheme = "https" if self.tls else "http"
        log.info("listening on %s://%s:%d", scheme, self.config.host, self.port)
        if self.tls is None and self.config.access.require_keys and not _loopback(self.config.host):
            log.warning("device keys travel in clear text: give --tls-cert and --tls-key")
        return self.port

    def _schedule_reload(self) -> None:
        self.loop.call_later(self.config.reload_devices_every, self._reload_devices)

    def _reload_devices(self) -> None:
        def done(future) -> None:
            if not future.cancelled() and future.exception() is not None:
                log.warning("device list not reloaded: %s", future.exception())
            self._schedule_reload()

        try:
            self.loop.run_in_executor(self.executor, self.directory.load).add_done_callback(done)
        except RuntimeError:  # the executor is shutting down
            pass

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.http.close(), self.loop).result(timeout=5)
        self.pipeline.stop(timeout)
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self._thread = None
        if not self.loop.is_running():
            self.loop.close()
        log.info("stopped; %s", json.dumps(self.stats()))

    def stats(self) -> dict:
        p = self.pipeline
        return {
            "accepted": p.stats["accepted"],
            "stored": p.stats["stored"],
            "duplicates": p.stats["duplicates"],
            "unknown": p.stats["unknown"],
            "dropped": p.stats["dropped"],
            "events": p.stats["events"],
            "backlog": p.backlog,
            "db_available": p.db_available,
            "refused": {str(k): v for k, v in sorted(self.refusals.by_status.items())},
            "queue_files": len(self.wal.pending_files()),
            "queue": self.wal.state(),
        }

    def wait_drained(self, timeout: float) -> bool:
        """True once everything accepted is committed (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pipeline.backlog == 0:
                return True
            time.sleep(0.01)
        return self.pipeline.backlog == 0

    # --- one request (event loop) -------------------------------------------------------

    def _handle(
        self,
        method: str,
        target: bytes,
        headers: dict[str, str],
        body: bytes,
        respond: Respond,
        peer: Peer,
    ) -> None:
        access = self.config.access
        if not access.network_allowed(peer.ip):
            self._refuse(respond, *NOT_ALLOWED, peer)
            return
        path, _, query = target.partition(b"?")
        if path == b"/health":
            # 503 as soon as a report would get one: database away, queue unwritable,
            # or the backlog full (the writer is behind; reports get "busy").
            p = self.pipeline
            accepting = (p.db_available and self.wal.write_error is None
                         and p.backlog < p.config.max_backlog)
            respond(*health_answer(peer.ip, accepting, self.stats))
            return
        if method not in ("GET", "POST"):
            self._refuse(respond, 405, "只接受 GET 或 POST / Only GET or POST", peer)
            return
        try:
            reports, key = parse_keyed_request(query, body, headers.get("content-type", ""))
        except ParseError as exc:
            self._refuse(respond, 400, str(exc), peer)
            return
        device = reports[0].device  # one request is one device's (osmand.parse_keyed_request)
        known, key_hash = self.directory.cached(device)
        if known:
            refusal = access.key_refusal(key_hash, key)
            if refusal is None:
                self._admit(reports, respond, peer)
            elif self.directory.may_recheck(device):  # the key may have been set just now
                self._look_up(device, False, reports, key, respond, peer)
            else:
                self._refuse(respond, *refusal, peer)
            return
        # Registering only as access permits, and never a device whose first
        # report would be refused for its key anyway.
        register = (
            self.config.register_unknown
            and access.may_register(peer.ip, key)
            and access.key_refusal(None, key) is None
        )
        if not register and self.directory.recently_unknown(device):
            self._unknown(respond, device, peer)
        else:
            self._look_up(device, register, reports, key, respond, peer)

    def _look_up(self, device, register, reports, key, respond: Respond, peer: Peer) -> None:
        future = self.loop.run_in_executor(self.executor, self.directory.lookup, device, register)
        future.add_done_callback(lambda f: self._after_lookup(f, reports, key, respond, peer))

    def _after_lookup(self, future, reports, key, respond: Respond, peer: Peer) -> None:
        if future.cancelled():
            respond(503, OVERLOADED)
            return
        exc = future.exception()
        if exc is not None:
            log.warning("device lookup failed: %s", exc)
            self._refuse(respond, 503, DB_DOWN, peer)
            return
        exists, key_hash = future.result()
        if not exists:
            self._unknown(respond, reports[0].device, peer)
            return
        refusal = self.config.access.key_refusal(key_hash, key)
        if refusal is None:
            self._admit(reports, respond, peer)
        else:
            self._refuse(respond, *refusal, peer)

    def _unknown(self, respond: Respond, device: str, peer: Peer) -> None:
        if self.config.register_unknown:
            self._refuse(respond, *ENROL_REFUSED, peer)
        else:
            self._refuse(respond, 404, f"未登记的设备 / Unknown device: {device}", peer)

    def _admit(self, reports: list[PositionReport], respond: Respond, peer: Peer) -> None:
        reason = self.pipeline.reserve(len(reports))
        if reason is not None:
            self._refuse(respond, 503, reason, peer)
            return

        def done(ok: bool) -> None:
            if ok:
                self.pipeline.stats["accepted"] += len(reports)
                respond(200, "")
            else:
                self._refuse(respond, 503, QUEUE_FAILED if self.wal.write_error else OVERLOADED,
                             peer)

        self.pipeline.submit(reports, done)

    def _refuse(self, respond: Respond, status: int, reason: str, peer: Peer) -> None:
        self.refusals(status, reason, peer)
        respond(status, reason if reason.endswith("\n") else reason + "\n")


def harden(engine: Engine) -> None:
    """No database call of the gateway may hang forever.

    A server that vanishes without closing the connection (a cable pulled, a
    VM frozen) would leave a query waiting for TCP's own timeout, minutes;
    keepalives notice within about half a minute, and a statement timeout
    bounds anything else, so the writer reports "unavailable" and the
    gateway answers 503 instead of stalling.
    """

    @event.listens_for(engine, "do_connect")
    def _options(dialect, conn_rec, cargs, cparams) -> None:
        cparams.setdefault("keepalives", 1)
        cparams.setdefault("keepalives_idle", 10)
        cparams.setdefault("keepalives_interval", 5)
        cparams.setdefault("keepalives_count", 3)
        # After make_engine's own settings (a later -c wins): writers queue behind
        # each other's advisory lock without a lock timeout, bounded by this one.
        cparams["options"] = (
            cparams.get("options", "") + " -c statement_timeout=60000 -c lock_timeout=0"
        ).strip()


def serve(settings, args) -> int:
    """``python main.py gateway``: run until SIGTERM, SIGHUP or Ctrl-C; exit 0 after a clean stop.

    Exit 1 when the writer process died (the queue on disk keeps every
    acknowledged report; a supervisor restarts the gateway, which replays it).
    """
    from console.bootstrap import open_database
    from console.credentials import install_log_scrubber

    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    install_log_scrubber()  # no log line or traceback carries a password or a key
    config = GatewayConfig.from_args(settings, args)
    # Before the database: a directory another gateway holds, or one that cannot be
    # written, is refused in one line without touching anything.
    wal = WriteAheadQueue(config.queue_dir)
    engine = open_database(settings, role="gateway")  # positions and device state only
    harden(engine)
    # The event loop shares the interpreter with the queue and writer threads;
    # a shorter switch interval bounds how long a request waits for the GIL
    # while a batch is being encoded (5 ms by default, which shows in p99).
    sys.setswitchinterval(0.001)
    gateway = Gateway(engine, config, wal)
    stop, writer_died = threading.Event(), threading.Event()
    gateway.pipeline.on_writer_died = lambda: (writer_died.set(), stop.set())
    # SIGHUP too: the terminal it ran in was closed; stop cleanly instead of dying
    # with reports fsync'd but not yet stored (the queue would replay them, later).
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    gateway.start()
    while not stop.wait(1.0):
        pass
    log.info("stopping")
    gateway.stop()
    engine.dispose()
    return 1 if writer_died.is_set() else 0
