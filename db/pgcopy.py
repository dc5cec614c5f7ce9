"""PostgreSQL's binary COPY format for the position tables.

Why binary: in text COPY the server parses every timestamp and float from
its decimal text, which made PostgreSQL, not Python, the bottleneck of the
bulk path (about 85,000 rows/s against about 250,000 in binary on the same
machine).  Rows are produced in chunks by generators and read by
``copy_expert`` as they are needed, so Python packs the next chunk while
the server stores the previous one.

Column types must match the table exactly: ``positions`` keeps speed,
course, altitude, accuracy and battery as ``real`` (float4), while
``latest_position`` keeps them as ``double precision`` (float8).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

import psycopg2.errors

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
TRAILER = struct.pack("!h", -1)
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
NULL = struct.pack("!i", -1)

_POS_HEAD = struct.Struct("!hiiiqidid")  # 12 fields; device_id, ts, lon, lat
_LATEST_HEAD = struct.Struct("!hiiiqidid")  # 11 fields; same leading columns
_F4 = struct.Struct("!if")
_F8 = struct.Struct("!id")
_F4X5 = struct.Struct("!ififififif")
_F8X5 = struct.Struct("!ididididid")
_JSONB = struct.Struct("!iB")
_TS = struct.Struct("!iq")
_I4 = struct.Struct("!ii")
CHUNK_ROWS = 10_000  # pieces (five per row) per chunk handed to COPY


def micros(ts: datetime) -> int:
    """Microseconds since 2000-01-01 UTC, PostgreSQL's timestamptz on the wire (exact)."""
    d = ts - PG_EPOCH
    return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds


def _floats(values: tuple, full: struct.Struct, one: struct.Struct, size: int) -> bytes:
    if None not in values:
        a, b, c, d, e = values
        return full.pack(size, a, size, b, size, c, size, d, size, e)
    return b"".join(NULL if v is None else one.pack(size, v) for v in values)


def position_encoder(append: Callable[[bytes], None], received_us: int):
    """A function that appends one ``positions`` row (device_id, ts, lon, lat, speed_kmh,
    course, altitude, accuracy, battery, attributes, received_at, grid_id) in pieces.

    Called as ``encode(device_id, ts_micros, report, attributes_json_bytes, grid_id)``.
    """
    tail_null = _TS.pack(8, received_us) + NULL
    tail_grid = _TS.pack(8, received_us)
    head, jsonb, f5, f4, i4 = _POS_HEAD.pack, _JSONB.pack, _F4X5.pack, _F4.pack, _I4.pack

    def encode(device_id: int, us: int, r, attrs: bytes, grid: int | None) -> None:
        append(head(12, 4, device_id, 8, us, 8, r.lon, 8, r.lat))
        a, b, c, e, g = r.speed_kmh, r.course, r.altitude, r.accuracy, r.battery
        if a is None or b is None or c is None or e is None or g is None:
            append(b"".join(NULL if v is None else f4(4, v) for v in (a, b, c, e, g)))
        else:
            append(f5(4, a, 4, b, 4, c, 4, e, 4, g))
        append(jsonb(len(attrs) + 1, 1))
        append(attrs)
        append(tail_null if grid is None else tail_grid + i4(4, grid))

    return encode


def latest_rows(
    reports: Iterable, ids: dict[str, int], grids: dict, received_us: int
) -> Iterator[bytes]:
    """COPY data for ``latest_position`` (device_id, ts, lon, lat, speed_kmh, course,
    altitude, accuracy, battery, grid_id, received_at)."""
    received = _TS.pack(8, received_us)
    yield SIGNATURE
    parts: list[bytes] = []
    for r in reports:
        parts.append(_LATEST_HEAD.pack(11, 4, ids[r.device], 8, micros(r.ts), 8, r.lon, 8, r.lat))
        floats = (r.speed_kmh, r.course, r.altitude, r.accuracy, r.battery)
        parts.append(_floats(floats, _F8X5, _F8, 8))
        grid = grids.get((r.lon, r.lat)) if grids else None
        parts.append(NULL if grid is None else _I4.pack(4, grid))
        parts.append(received)
    parts.append(TRAILER)
    yield b"".join(parts)


class ChunkReader:
    """A file-like ``read()`` over byte chunks, for ``cursor.copy_expert``."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            return next(self._chunks, b"")
        except BaseException as exc:
            # psycopg2 turns this into QueryCanceled; keep the real reason for ``copy``.
            self.error = exc
            raise


def copy(cur, sql: str, chunks: Iterator[bytes]) -> int:
    """Run ``COPY … FROM STDIN BINARY`` from ``chunks``; return the rows copied.

    An exception raised while producing the rows (a report refused half-way)
    comes out as itself, not as the driver's "COPY failed".
    """
    reader = ChunkReader(chunks)
    try:
        cur.copy_expert(sql, reader)
    except psycopg2.errors.QueryCanceled:
        if reader.error is not None:
            raise reader.error from None
        raise
    return cur.rowcount

    def readline(self, size: int = -1) -> bytes:  # psycopg2 may probe for it
        return self.read(size)
