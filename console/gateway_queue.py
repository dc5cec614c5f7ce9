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
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from db.positions import PositionReport

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")
_MAX_RECORD = 1 << 20
SEGMENT_BYTES = 4 << 20
_SMALL_ENOUGH_TO_KEEP = 256 << 10


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
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._sealed: list[_Segment] = []
        self._active: _Segment | None = None
        self._fd: int | None = None
        self._seq = 0
        self._committed = 0
        self._next_index = 1

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
        """Write and fsync; return the last report's sequence number and the records."""
        if self._active is None:
            self._open_segment()
        blob = b"".join(encode(r) for r in reports)
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
        self._seq += len(reports)
        self._active.last_seq = self._seq
        self._active.size += len(blob)
        if self._active.size >= self.segment_bytes:
            self._seal()
        return self._seq, blob

    def housekeeping(self, idle: bool = False) -> None:
        """Delete segments fully committed; retire the active one when it is too.

        The active segment is retired only when it has grown or the gateway is
        idle, so a busy gateway does not create a file per batch.
        """
        committed = self._committed
        while self._sealed and self._sealed[0].last_seq <= committed:
            self._sealed.pop(0).path.unlink(missing_ok=True)
        active = self._active
        if (
            active is not None
            and active.size
            and active.last_seq <= committed
            and (idle or active.size >= _SMALL_ENOUGH_TO_KEEP)
        ):
            self._close_fd()
            active.path.unlink(missing_ok=True)
            self._active = None

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

    def close(self) -> None:
        self._close_fd()

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
