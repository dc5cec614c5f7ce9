"""The gateway's write-ahead queue: what was answered 200 survives a crash.

Reports are appended to segment files under the queue directory and
``fdatasync``'d before the terminal gets its 200, so a gateway killed at any
moment loses nothing it acknowledged; on start the segments are replayed
into the database (storing is idempotent: a report committed just before
the crash is stored once).  A segment is deleted once every report in it is
committed, so the queue on disk holds roughly what the database has not yet
got, never the whole history.

Each record is ``<length:u32><crc32:u32><JSON>``; a record torn by a crash
mid-write fails its length or checksum and ends the replay of its segment
(it was never fsync'd, so never answered 200).

Only one thread (the gateway's queue thread) calls ``append`` and
``housekeeping``; ``mark_committed`` may be called from any thread.

One gateway per directory: the queue takes an exclusive ``flock`` on
``gateway.lock`` when it opens, and a second gateway started on the same
directory is refused (``QueueInUse``, naming the holder) instead of
replaying and deleting segments the first one still owes the database.
The lock dies with the process that holds it, so a killed gateway never
leaves a stale lock behind; the writer process forked by the gateway drops
its inherited copy, so an orphaned writer cannot keep a restart out.

A full disk is not a reason to refuse for as long as traffic lasts: a write
that fails retires the segments already stored (the active one included)
and tries once more, and ``state()`` tells ``/health`` whether the queue
can take reports and how much room its filesystem has.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import struct
import threading
import time
import weakref
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from db.errors import BadInput, Conflict
from db.files import private_dir
from db.positions import PositionReport

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")
_MAX_RECORD = 1 << 20
SEGMENT_BYTES = 4 << 20
_SMALL_ENOUGH_TO_KEEP = 256 << 10
# Below this much free space a fully stored active segment is retired at once
# rather than kept for the next reports: on a small or nearly full disk the
# room it holds is what the next reports need.
LOW_SPACE = 1 << 20
LOCK_NAME = "gateway.lock"
ERROR_LOG_EVERY = 10.0  # seconds between lines about the same failing write


class QueueInUse(Conflict):
    """Another gateway holds this queue directory (exit 3, like any conflict)."""


class Throttled:
    """A failing write in the log: at most one line per ``every`` seconds, with a count.

    A full disk fails every batch, and under traffic the queue flips between
    failing and working many times a second; logging each flip buried the
    log (11,199 lines in 20 s) and cost the disk the room it lacked.  So the
    first failure is logged, later ones are counted into the next line, and
    "writable again" is said once the queue has worked for ``every`` seconds
    without a failure.
    """

    def __init__(self, logger: logging.Logger, every: float = ERROR_LOG_EVERY):
        self.log = logger
        self.every = every
        self._logged_at = -float("inf")
        self._failed_at = -float("inf")
        self._quiet = 0
        self._failing = False
        self._lock = threading.Lock()

    def __call__(self, message: str, *args) -> None:
        now = time.monotonic()
        with self._lock:
            self._failed_at = now
            self._failing = True
            if now - self._logged_at < self.every:
                self._quiet += 1
                return
            quiet, self._quiet, self._logged_at = self._quiet, 0, now
        suffix = f" ({quiet} more not logged)" if quiet else ""
        self.log.error(message + suffix, *args)

    def recovered(self, message: str) -> None:
        """A write worked; says so once the failures have stopped for a while."""
        now = time.monotonic()
        with self._lock:
            if not self._failing or now - self._failed_at < self.every:
                return
            self._failing, quiet, self._quiet = False, self._quiet, 0
        self.log.warning(message + (f" ({quiet} failure(s) not logged)" if quiet else ""))


@dataclass
class _Segment:
    path: Path
    last_seq: int = 0
    size: int = 0


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode(report: PositionReport) -> bytes:
    """One report as a queue record (JSON keeps floats exact and times with their zone)."""
    payload = _ENCODER.encode(
        [
            report.device,
            report.ts.isoformat(),
            report.lon,
            report.lat,
            report.speed_kmh,
            report.course,
            report.altitude,
            report.accuracy,
            report.battery,
            report.attributes,
        ]
    ).encode("utf-8")
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode(payload: bytes) -> PositionReport:
    device, ts, lon, lat, speed, course, alt, acc, batt, attrs = json.loads(payload)
    return PositionReport(
        device, datetime.fromisoformat(ts), lon, lat, speed, course, alt, acc, batt, attrs
    )


def read_records(data: bytes) -> list[PositionReport]:
    """The intact records at the start of ``data``, stopping at a torn or corrupt one."""
    return _read(data)[0]


def _read(data: bytes) -> tuple[list[PositionReport], int]:
    out: list[PositionReport] = []
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        start, end = pos + _HEADER.size, pos + _HEADER.size + length
        if length > _MAX_RECORD or end > len(data) or zlib.crc32(data[start:end]) != crc:
            break
        try:
            out.append(decode(data[start:end]))
        except (ValueError, TypeError):
            break
        pos = end
    return out, pos


def read_segment(path: Path) -> list[PositionReport]:
    """The intact records of one segment, stopping at a torn or corrupt tail."""
    data = path.read_bytes()
    out, pos = _read(data)
    if pos != len(data):
        log.warning("queue segment %s: %d torn byte(s) at the end ignored", path, len(data) - pos)
    return out


class WriteAheadQueue:
    """Segment files of fsync'd reports, each deleted when all its reports are committed.

    Reports get consecutive sequence numbers; the database writer commits
    them in that order and reports progress with ``mark_committed``.
    """

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES):
        self.dir = Path(directory)
        self.segment_bytes = segment_bytes
        self._sealed: list[_Segment] = []
        self._active: _Segment | None = None
        self._fd: int | None = None
        self._seq = 0
        self._committed = 0
        self._next_index = 1
        self.write_error: str | None = None  # why the last write failed; None once one works
        self._errors = Throttled(log)
        self._lock_fd: int | None = None
        self._open_directory()

    # --- the directory and its lock ----------------------------------------------------

    def _open_directory(self) -> None:
        """Create (0700) and lock the directory, or say in one line why it cannot be used."""
        try:
            private_dir(self.dir)
        except OSError as exc:
            raise _unusable(self.dir, exc) from None
        path = self.dir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise _unusable(self.dir, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise QueueInUse(
                    f"队列目录 {self.dir} 正被另一个网关使用（{holder[0]}），本网关未启动。"
                    "每个网关须有自己的 --queue-dir。",
                    f"The queue directory {self.dir} is in use by another gateway "
                    f"({holder[1]}); not started. Give each gateway its own --queue-dir.",
                ) from None
            raise _unusable(self.dir, exc) from None
        try:
            # Who holds it, for the next one's message: pid and command line.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n{_command_line(os.getpid())}\n".encode(), 0)
            probe = self.dir / f".probe-{os.getpid()}"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            probe.unlink()
        except OSError as exc:
            os.close(fd)
            raise _unusable(self.dir, exc) from None
        self._lock_fd = fd
        # A forked child (the database writer) must not keep the lock: its parent's
        # death has to free the directory for the next gateway.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _drop_lock_in_child(ref))

    # --- start ------------------------------------------------------------------

    def replay(self) -> list[PositionReport]:
        """Reports left by the previous run, oldest first; call once, before ``append``.

        Their segments stay on disk until those reports are committed.
        """
        reports: list[PositionReport] = []
        for path in sorted(self.dir.glob("seg-*.wal")):
            self._next_index = max(self._next_index, _index(path) + 1)
            records = read_segment(path)
            if not records:
                path.unlink(missing_ok=True)
                continue
            reports.extend(records)
            self._seq += len(records)
            self._sealed.append(_Segment(path, self._seq, path.stat().st_size))
        if reports:
            log.info(
                "queue: %d report(s) from %d segment(s) to replay",
                len(reports),
                len(self._sealed),
            )
        return reports

    # --- the queue thread --------------------------------------------------------

    def append(self, reports: list[PositionReport]) -> tuple[int, bytes]:
        """Write and fsync; return the last report's sequence number and the records.

        A write that fails (disk full) retires what is already stored and is
        tried once more; if it fails again the ``OSError`` is raised (the
        caller answers 503) and nothing of it comes back on replay.
        """
        blob = b"".join(encode(r) for r in reports)
        try:
            self._write(blob)
        except OSError as first:
            if not self._make_room():
                self._failed(first)
                raise
            try:
                self._write(blob)
            except OSError as second:
                self._failed(second)
                raise
        self.write_error = None
        self._errors.recovered("queue writable again: accepting reports")
        self._seq += len(reports)
        self._active.last_seq = self._seq
        self._active.size += len(blob)
        if self._active.size >= self.segment_bytes:
            self._seal()
        return self._seq, blob

    def _write(self, blob: bytes) -> None:
        if self._active is None:
            self._open_segment()
        view = memoryview(blob)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fdatasync(self._fd)
        except OSError:
            # These reports are refused (503): they must not come back on replay.
            try:
                os.ftruncate(self._fd, self._active.size)
            except OSError:
                self._seal()  # cannot even truncate: start a fresh segment
            raise

    def _failed(self, exc: OSError) -> None:
        self.write_error = exc.strerror or str(exc)
        self._errors("queue write failed (%s): answering 503", self.write_error)

    def _make_room(self) -> bool:
        """After a failed write: free what is stored; True if a file was removed.

        Fully stored segments go, the active one too; an active segment that
        still holds reports on their way to the database is sealed, so it can
        go the moment they are stored instead of waiting for a pause in
        traffic (which, with hundreds of terminals retrying, never comes).
        """
        removed = self._drop_committed()
        active = self._active
        if active is not None and active.size:
            if active.last_seq <= self._committed:
                self._close_fd()
                active.path.unlink(missing_ok=True)
                self._active = None
                removed = True
            else:
                self._seal()
        return removed

    def _probe(self) -> bool:
        """Whether a page can be written and synced here now (while reports are refused)."""
        path = self.dir / f".probe-{os.getpid()}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, bytes(4096))
                os.fdatasync(fd)
            finally:
                os.close(fd)
                path.unlink(missing_ok=True)
        except OSError:
            return False
        return True

    def _drop_committed(self) -> bool:
        committed = self._committed
        removed = False
        while self._sealed and self._sealed[0].last_seq <= committed:
            self._sealed.pop(0).path.unlink(missing_ok=True)
            removed = True
        return removed

    def housekeeping(self, idle: bool = False) -> None:
        """Delete segments fully committed; retire the active one when it is too.

        The active segment is retired only when it has grown or the gateway is
        idle, so a busy gateway does not create a file per batch.
        """
        committed = self._committed
        if self._drop_committed() and self.write_error is not None:
            self.write_error = None  # room was made: the next write may well work
        if idle and self.write_error is not None and self._probe():
            self.write_error = None  # room came back (a file removed by someone)
            self._errors.recovered("queue writable again: accepting reports")
        active = self._active
        if active is None:
            return
        if not active.size:
            if idle:  # left empty by a write that failed: nothing in it to keep
                self._close_fd()
                active.path.unlink(missing_ok=True)
                self._active = None
            return
        if active.last_seq <= committed and (
            idle or active.size >= _SMALL_ENOUGH_TO_KEEP or self.free_bytes() < LOW_SPACE
        ):
            self._close_fd()
            active.path.unlink(missing_ok=True)
            self._active = None
            self.write_error = None

    def mark_committed(self, seq: int) -> None:
        """Every report up to ``seq`` is in the database."""
        if seq > self._committed:
            self._committed = seq

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def committed_seq(self) -> int:
        return self._committed

    def pending_files(self) -> list[Path]:
        files = [s.path for s in self._sealed]
        if self._active is not None:
            files.append(self._active.path)
        return files

    def free_bytes(self) -> int:
        """Room left for the queue on its filesystem (for an unprivileged writer)."""
        try:
            st = os.statvfs(self.dir)
        except OSError:
            return 0
        return st.f_bavail * st.f_frsize

    def state(self) -> dict:
        """What ``/health`` tells: can the queue take reports, and how much room it has."""
        files = self.pending_files()
        return {
            "writable": self.write_error is None,
            "error": self.write_error,
            "free_bytes": self.free_bytes(),
            "files": len(files),
            "bytes": sum(s.size for s in self._sealed)
            + (self._active.size if self._active is not None else 0),
        }

    def close(self) -> None:
        """Close the files and free the directory for the next gateway."""
        self._close_fd()
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # releases the flock

    # --- files --------------------------------------------------------------------

    def _open_segment(self) -> None:
        path = self.dir / f"seg-{self._next_index:012d}.wal"
        self._next_index += 1
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._active = _Segment(path, self._seq, 0)
        _fsync_dir(self.dir)  # the new name itself must survive a crash

    def _seal(self) -> None:
        self._close_fd()
        self._sealed.append(self._active)
        self._active = None

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _unusable(directory: Path, exc: OSError) -> BadInput:
    reason = exc.strerror or str(exc)
    return BadInput(
        f"无法使用队列目录 {directory}：{reason}（须为本用户可写的目录）。",
        f"Cannot use the queue directory {directory}: {reason} "
        "(it must be a directory this user can write).",
    )


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()[:300]


def _holder(fd: int) -> tuple[str, str]:
    """(zh, en) naming the process that holds the lock, from what it wrote there."""
    try:
        text = os.pread(fd, 1024, 0).decode("utf-8", "replace")
    except OSError:
        text = ""
    pid, _, command = text.partition("\n")
    pid, command = pid.strip(), command.strip()
    if not pid.isdigit():
        return "进程未知", "process unknown"
    from console.credentials import scrub  # a command line may carry a URL with a password

    command = scrub(command)
    return (f"进程 {pid}：{command}" if command else f"进程 {pid}",
            f"process {pid}: {command}" if command else f"process {pid}")


def _drop_lock_in_child(ref: weakref.ref) -> None:
    queue = ref()
    if queue is not None and queue._lock_fd is not None:
        try:
            os.close(queue._lock_fd)  # the parent's descriptor keeps the lock
        except OSError:
            pass
        queue._lock_fd = None


def _index(path: Path) -> int:
    try:
        return int(path.stem.split("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
