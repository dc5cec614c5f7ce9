"""Positions from GPS terminals into the shared database: bulk, idempotent, located.

One call of :func:`store_positions` is one transaction that

* COPYs the batch into the day-partitioned ``positions`` table (a repeated
  report, same device and time, is stored once: the batch falls back to a
  staging table and ``ON CONFLICT DO NOTHING`` when the fast COPY meets a
  duplicate, which is what a replayed queue or a client retry produces);
* locates every position to its management grid (``db.locate.locate_grids``);
* keeps ``latest_position`` current, never letting an older report that
  arrives late overwrite a newer one, nor a fix from the future (more than
  ``MAX_CLOCK_SKEW`` after the batch is received) become it;
* derives field-force events (``worker_event``: left or returned to the own
  grid, back online after being reported offline);
* NOTIFYs ``grid_positions`` with a watermark, the ``received_at`` of the
  batch, so a console reads only ``latest_position.received_at > watermark``.

Writers are serialised by a transaction-level advisory lock taken first, and
``received_at`` is read after it, so watermark order is commit order: a
console that has seen watermark W never misses a batch that commits later.
(The same trick as the case log's ordered append in ``db.case_actions``.)

Partitions are created ahead (today, tomorrow, every day a batch touches),
because PostgreSQL refuses to create a day's partition once the DEFAULT
partition holds rows of that day.  Retention drops whole day partitions.
"""

from __future__ import annotations

import json
import logging
import numbers
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import psycopg2
import psycopg2.extras
from sqlalchemy import Connection, Engine

from db import pgcopy, pgcopy_batch
from db.errors import BadInput
from db.locate import locate_grids
from db.session import UNAVAILABLE, ConnectionLost, classify, transaction

log = logging.getLogger(__name__)

CHANNEL = "grid_positions"
DEFAULT_RETENTION_DAYS = 90
DEFAULT_OFFLINE_MINUTES = 10
# Serialises position writers so that received_at order is commit order.
_WRITE_LOCK = 0x6770_7073  # "gpps"
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
# How far ahead of the database's clock a fix may be and still become the latest
# position (and raise events).  A terminal's clock a few minutes fast is common;
# one 20 hours fast once made a fix the latest position that the real fixes after
# it never replaced (each was "older"), and the offline sweep then called a
# reporting worker offline.  Such fixes are still stored (the track keeps what
# the terminal said, and a 200 is a 200; the gateway flags them with the
# attribute ``clock_ahead_s``) but they never become the latest position, and a
# latest position already that far ahead of its receipt is replaced by the next fix.
MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_IDENTIFIER = 80  # device.identifier is String(80)
_MAX_MAGNITUDE = 1e6  # beyond this a speed, altitude or accuracy is nonsense (and overflows real)

EVENT_KINDS = ("left_grid", "returned_to_grid", "offline", "online")


@dataclass(frozen=True)
class PositionReport:
    """One position as a terminal reported it, already in the units we store.

    ``device`` is the identifier the terminal sends (``device.identifier``),
    ``ts`` the fix time (timezone-aware), coordinates WGS-84, speed in km/h,
    course in degrees from north, battery in percent.
    """

    device: str
    ts: datetime
    lon: float
    lat: float
    speed_kmh: float | None = None
    course: float | None = None
    altitude: float | None = None
    accuracy: float | None = None
    battery: float | None = None
    attributes: dict = field(default_factory=dict)


@dataclass
class StoreResult:
    """What one batch did; ``stored + duplicates + unknown == len(batch)``."""

    stored: int = 0
    duplicates: int = 0
    unknown: int = 0
    registered: int = 0
    events: int = 0
    watermark: datetime | None = None
    unknown_devices: list[str] = field(default_factory=list)


# --- validation ----------------------------------------------------------------


def check_report(report: PositionReport, now: datetime | None = None) -> bytes:
    """Raise ``BadInput`` for a report that must not reach the database.

    The gateway's parser calls this before answering, and ``store_positions``
    again for callers such as the simulator, so a bad value is refused with a
    reason instead of failing a whole batch later inside PostgreSQL.  Returns
    the attributes as the UTF-8 JSON to store, so they are encoded once.
    """
    return _check(report, (now or datetime.now(UTC)) + FUTURE_SLACK)


def _check(report: PositionReport, latest: datetime) -> bytes:
    """The fast path: one expression that holds for every storable report.

    NaN is in no range and a wrong type fails its comparison (TypeError), so
    anything unusual falls to ``_explain``, which names what is wrong.
    """
    dev, ts, lat, lon = report.device, report.ts, report.lat, report.lon
    s, c, a, acc, b = (
        report.speed_kmh,
        report.course,
        report.altitude,
        report.accuracy,
        report.battery,
    )
    m = _MAX_MAGNITUDE
    try:
        ok = (
            type(dev) is str
            and 0 < len(dev) <= MAX_IDENTIFIER
            and dev.isprintable()
            and not dev.isspace()
            and EARLIEST <= ts <= latest
            and -90.0 <= lat <= 90.0
            and -180.0 <= lon <= 180.0
            and (s is None or -m <= s <= m)
            and (c is None or -m <= c <= m)
            and (a is None or -m <= a <= m)
            and (acc is None or -m <= acc <= m)
            and (b is None or 0.0 <= b <= 100.0)
        )
    except TypeError:
        ok = False
    if not ok:
        _explain(report, latest)
    return _attributes_bytes(report.attributes)


def _explain(report: PositionReport, latest: datetime) -> None:
    """Raise the ``BadInput`` that says what is wrong with a report."""
    dev = report.device
    if not isinstance(dev, str) or not dev or dev.isspace():
        raise BadInput("缺少设备标识。", "The device id is missing.")
    if len(dev) > MAX_IDENTIFIER or not dev.isprintable():
        raise BadInput(
            f"设备标识无效（最长 {MAX_IDENTIFIER} 个可打印字符）。",
            f"The device id is invalid (at most {MAX_IDENTIFIER} printable characters).",
        )
    ts = report.ts
    if not isinstance(ts, datetime) or ts.tzinfo is None:
        raise BadInput("定位时间必须带时区。", "The fix time must be timezone-aware.")
    if ts < EARLIEST:
        raise BadInput(
            f"定位时间 {ts.isoformat()} 早于 2000 年。",
            f"The fix time {ts.isoformat()} is before 2000.",
        )
    if ts > latest:
        raise BadInput(
            f"定位时间 {ts.isoformat()} 超前一天以上。",
            f"The fix time {ts.isoformat()} is more than a day in the future.",
        )
    lat, lon = report.lat, report.lon
    if not (_real(lat) and -90.0 <= lat <= 90.0):
        raise BadInput(f"纬度超出范围：{lat}", f"The latitude is out of range: {lat}")
    if not (_real(lon) and -180.0 <= lon <= 180.0):
        raise BadInput(f"经度超出范围：{lon}", f"The longitude is out of range: {lon}")
    for value, name in (
        (report.speed_kmh, "speed_kmh"),
        (report.course, "course"),
        (report.altitude, "altitude"),
        (report.accuracy, "accuracy"),
    ):
        if value is not None and not (_real(value) and -_MAX_MAGNITUDE <= value <= _MAX_MAGNITUDE):
            raise BadInput(f"{name} 数值无效：{value}", f"{name} is not a valid number: {value}")
    battery = report.battery
    if battery is not None and not (_real(battery) and 0.0 <= battery <= 100.0):
        raise BadInput(
            f"电量应在 0 到 100 之间：{battery}", f"The battery level must be 0..100: {battery}"
        )
    raise BadInput(f"定位报告无效：{report!r:.200}", f"The report is invalid: {report!r:.200}")


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def attributes_json(attributes: dict) -> str:
    """The attributes as the JSON stored in ``jsonb``, or ``BadInput``."""
    return _attributes_bytes(attributes).decode("utf-8")


def _attributes_bytes(attributes: dict) -> bytes:
    """jsonb refuses NaN, infinities, NUL characters and lone surrogates; any of
    them would fail a whole batch inside PostgreSQL, so they are refused here."""
    if not isinstance(attributes, dict):
        raise BadInput("附加属性必须是对象。", "The attributes must be an object.")
    if not attributes:
        return b"{}"
    try:
        text_ = _flat_json(attributes)
        data = (text_ if text_ is not None else _ENCODER.encode(attributes)).encode("utf-8")
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError) as exc:
        raise BadInput(
            f"附加属性无法保存：{type(exc).__name__}",
            f"The attributes cannot be stored: {type(exc).__name__}",
        ) from None
    if b"\\u0000" in data:
        raise BadInput("附加属性含有 NUL 字符。", "The attributes contain a NUL character.")
    return data


_escape = json.encoder.encode_basestring


def _flat_json(attributes: dict) -> str | None:
    """JSON of a flat dict of plain values, as ``_ENCODER`` would write it, several
    times faster (the json module's set-up dominates for the few attributes a
    terminal sends); None when anything is nested or unusual."""
    parts = []
    for key, value in attributes.items():
        if type(key) is not str:
            return None
        kind = type(value)
        if kind is str:
            text_ = _escape(value)
        elif kind is float:
            if not -_INF < value < _INF:
                raise ValueError("non-finite number")
            text_ = float.__repr__(value)
        elif kind is int:
            text_ = int.__repr__(value)
        elif kind is bool:
            text_ = "true" if value else "false"
        elif value is None:
            text_ = "null"
        else:
            return None
        parts.append(f"{_escape(key)}:{text_}")
    return "{" + ",".join(parts) + "}"


_INF = float("inf")


def _finite(value: float) -> bool:
    return -_INF < value < _INF


def _real(value: object) -> bool:
    kind = type(value)
    if kind is float or kind is int:
        return True
    return isinstance(value, numbers.Real) and kind is not bool


# --- transactions --------------------------------------------------------------


@contextmanager
def _batch_transaction(engine: Engine) -> Iterator[Connection]:
    """``db.session.transaction`` that also maps lost connections seen by raw cursors.

    COPY runs on the psycopg2 cursor underneath SQLAlchemy, whose errors
    SQLAlchemy never sees; a dead connection must still become
    ``ConnectionLost`` (retry is safe) and leave the pool.
    """
    with transaction(engine) as conn:
        try:
            yield conn
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            mapped = classify(exc)  # a lock or statement timeout, a deadlock: not a lost link
            if mapped is not None:
                raise mapped from None
            conn.invalidate(exc)
            raise ConnectionLost(*UNAVAILABLE) from exc


def _lock_and_clock(cur) -> datetime:
    cur.execute("SELECT pg_advisory_xact_lock(%s), clock_timestamp()", (_WRITE_LOCK,))
    return cur.fetchone()[1]


# --- partitions and retention ---------------------------------------------------

_ensured: dict[str, set[date]] = {}
_ensured_lock = threading.Lock()


def ensure_partitions(engine: Engine, utc_days: Iterable[date]) -> None:
    """Create the day partitions covering these UTC days, once per process.

    ``ensure_position_partition`` cuts days in the server's time zone, so the
    UTC day's first and last instants are converted there to find them.  A
    partition that cannot be created (the DEFAULT partition already holds
    rows of that day) is logged and its rows keep going to DEFAULT.
    """
    key = str(engine.url)
    with _ensured_lock:
        todo = sorted(set(utc_days) - _ensured.get(key, set()))
    if not todo:
        return
    bounds = []
    for d in todo:
        start = datetime.combine(d, time(0), UTC)
        bounds += [start, start + timedelta(days=1, microseconds=-1)]
    with _batch_transaction(engine) as conn:
        cur = conn.connection.cursor()
        cur.execute("SELECT DISTINCT t::date FROM unnest(%s::timestamptz[]) AS t", (bounds,))
        _create_partitions(cur, [row[0] for row in cur.fetchall()])
    with _ensured_lock:
        _ensured.setdefault(key, set()).update(todo)


def _create_partitions(cur, local_days: Iterable[date]) -> None:
    for day in local_days:
        cur.execute("SAVEPOINT ensure_partition")
        try:
            cur.execute("SELECT ensure_position_partition(%s)", (day,))
            cur.execute("RELEASE SAVEPOINT ensure_partition")
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            raise
        except psycopg2.Error as exc:
            # Another writer created it a moment ago, or DEFAULT holds rows of that day.
            cur.execute("ROLLBACK TO SAVEPOINT ensure_partition")
            log.warning("partition for %s not created: %s", day, str(exc).strip())


def maintain(engine: Engine, retention_days: int = DEFAULT_RETENTION_DAYS) -> list[str]:
    """Create today's and tomorrow's partitions; drop day partitions past retention.

    Returns the partitions dropped.  Rows older than retention that ended up
    in the DEFAULT partition are deleted too.
    """
    dropped: list[str] = []
    with _batch_transaction(engine) as conn:
        cur = conn.connection.cursor()
        cur.execute("SELECT current_date")
        today = cur.fetchone()[0]
        _create_partitions(cur, [today, today + timedelta(days=1)])
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'positions'::regclass AND c.relname ~ '^positions_[0-9]{8}$'"
        )
        horizon = today - timedelta(days=retention_days)
        for (name,) in cur.fetchall():
            try:
                day = datetime.strptime(name[len("positions_") :], "%Y%m%d").date()
            except ValueError:
                continue
            if day < horizon:
                dropped.append(name)
        # The owner drops them (grid_drop_positions_before, revision 0005): the
        # gateway's role may ask for retention but owns no table to drop itself.
        cur.execute("SELECT grid_drop_positions_before(%s::date)", (horizon,))
    with _ensured_lock:
        _ensured.pop(str(engine.url), None)  # a dropped day must be created again if seen
    if dropped:
        log.info("retention %d days: dropped %s", retention_days, ", ".join(sorted(dropped)))
    return dropped


# --- the batch ------------------------------------------------------------------

_COLUMNS = (
    "device_id, ts, lon, lat, speed_kmh, course, altitude, accuracy, battery, "
    "attributes, received_at, grid_id"
)
_LATEST_COLUMNS = (
    "device_id, ts, lon, lat, speed_kmh, course, altitude, accuracy, battery, grid_id, received_at"
)
_STATE_SQL = """
SELECT d.identifier, d.id, d.worker_id, w.grid_id, lp.ts, lp.grid_id,
       EXISTS (SELECT 1 FROM worker_event e
               WHERE e.device_id = d.id AND e.kind = 'offline' AND e.at >= lp.received_at),
       lp.received_at
FROM device d
LEFT JOIN worker w ON w.id = d.worker_id
LEFT JOIN latest_position lp ON lp.device_id = d.id
WHERE d.identifier = ANY(%s)
"""


@dataclass
class _DeviceState:
    device_id: int
    worker_id: int | None
    own_grid: int | None
    last_ts: datetime | None
    last_grid: int | None
    offline: bool
    last_received: datetime | None = None


def store_positions(
    engine: Engine, reports: list[PositionReport], register_unknown: bool = False
) -> StoreResult:
    """Store a batch in one transaction; safe to call again with the same batch.

    Reports of devices not in ``device`` are counted as unknown and skipped,
    unless ``register_unknown`` adds them as unassigned devices.  Raises
    ``BadInput`` for a report that fails ``check_report`` (nothing stored)
    and ``Unavailable``/``ConnectionLost`` when the database is away.
    """
    if not reports:
        return StoreResult()
    latest = datetime.now(UTC) + FUTURE_SLACK
    try:
        identifiers = list({r.device for r in reports})
        first, last = min(r.ts for r in reports), max(r.ts for r in reports)
        plausible = EARLIEST <= first and last <= latest
    except (TypeError, AttributeError):
        plausible = False
    if not plausible:  # never create partitions for days of a batch that will be refused
        for r in reports:
            _check(r, latest)
        raise BadInput("定位报告无效。", "The reports are invalid.")
    ensure_partitions(engine, _utc_days(first, last, reports))
    with _batch_transaction(engine) as conn:
        return _store(conn, reports, identifiers, latest, register_unknown)


def _utc_days(first: datetime, last: datetime, reports: list[PositionReport]) -> set[date]:
    """The UTC days a batch touches: usually one or two, so from its first and last fix."""
    first_day, last_day = first.astimezone(UTC).date(), last.astimezone(UTC).date()
    span = (last_day - first_day).days
    if span <= 7:
        return {first_day + timedelta(days=k) for k in range(span + 1)}
    return {r.ts.astimezone(UTC).date() for r in reports}


class _Pass:
    """What one pass of the COPY generator learnt about the batch."""

    def __init__(self) -> None:
        self.rows = 0
        self.unknown = 0
        self.duplicates = 0
        self.unknown_devices: set[str] = set()
        self.newest: dict[str, tuple[int, PositionReport]] = {}
        self.newer: dict[str, list[PositionReport]] = {}


def _store(
    conn: Connection,
    reports: list[PositionReport],
    identifiers: list[str],
    latest: datetime,
    register_unknown: bool,
) -> StoreResult:
    cur = conn.connection.cursor()
    received_at = _lock_and_clock(cur)
    result = StoreResult(watermark=received_at)
    # Only well-formed identifiers reach SQL; a report with another is refused
    # (BadInput) by the check in ``_position_rows``, rolling all of this back.
    identifiers = [
        i
        for i in identifiers
        if type(i) is str and 0 < len(i) <= MAX_IDENTIFIER and i.isprintable()
    ]
    if register_unknown:
        cur.execute(
            "INSERT INTO device (identifier) SELECT unnest(%s::text[]) "
            "ON CONFLICT (identifier) DO NOTHING",
            (identifiers,),
        )
        result.registered = cur.rowcount
    cur.execute(_STATE_SQL, (identifiers,))
    states = {row[0]: _DeviceState(*row[1:]) for row in cur.fetchall()}
    grids = _locate(conn, cur, reports) if states else {}
    received_us = pgcopy.micros(received_at)
    passes: list[_Pass] = []

    def data() -> Iterator[bytes]:
        seen = _Pass()
        passes.append(seen)
        return _position_rows(reports, states, grids, latest, received_us, seen)

    stored = _copy_positions(cur, data)
    seen = passes[-1]
    result.stored = stored
    result.unknown = seen.unknown
    result.unknown_devices = sorted(seen.unknown_devices)
    result.duplicates = seen.duplicates + seen.rows - stored
    newest = {device: r for device, (_, r) in seen.newest.items()}
    for items in seen.newer.values():
        items.sort(key=lambda r: r.ts)
    _upsert_latest(cur, newest, states, grids, received_us)
    events = _events(seen.newer, states, grids)
    if events:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO worker_event (device_id, worker_id, kind, at, grid_id, lon, lat, detail) "
            "VALUES %s",
            events,
            page_size=1000,
        )
    result.events = len(events)
    cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, _watermark_text(received_at)))
    return result


def _floors(states: dict[str, _DeviceState]) -> dict[str, int]:
    """Per device, the microsecond time a fix must pass to become the latest position.

    The newest fix already stored, unless that one was too far ahead of its own
    receipt (stored before ``MAX_CLOCK_SKEW`` was enforced): then any fix will do.
    """
    floors = {}
    for device, st in states.items():
        last = st.last_ts
        if last is None or (
            st.last_received is not None and last > st.last_received + MAX_CLOCK_SKEW
        ):
            floors[device] = -(2**62)
        else:
            floors[device] = pgcopy.micros(last)
    return floors


_SKEW_US = int(MAX_CLOCK_SKEW.total_seconds() * 1_000_000)


def _tracked(states: dict[str, _DeviceState]) -> set[str]:
    """Devices whose fixes can raise events (offline, or a worker with an own grid)."""
    return {
        device
        for device, st in states.items()
        if st.offline or (st.worker_id is not None and st.own_grid is not None)
    }


FAST_CHUNK = 20_000  # reports per COPY chunk on the fast path


def _fast_rows(
    reports: list[PositionReport],
    states: dict[str, _DeviceState],
    grids: dict[tuple[float, float], int | None],
    latest: datetime,
    received_us: int,
    seen: _Pass,
) -> Iterator[bytes] | None:
    """``_position_rows`` with the batch's bookkeeping done on arrays.

    Same bookkeeping (unknown devices, repeats within the batch, newest fix
    per device, newer fixes of tracked devices) and the same bytes.  Chunks
    of plainly valid reports are laid out with numpy; a chunk holding
    anything unusual goes report by report through ``_check``, which stays
    the authority on refusals.  None (odd identifiers or times) sends the
    whole batch down the per-report path.
    """
    devices = [r.device for r in reports]
    for d in set(devices):
        if not (type(d) is str and 0 < len(d) <= MAX_IDENTIFIER and d.isprintable()
                and not d.isspace()):
            return None
    us = pgcopy_batch.timestamps(reports)
    if us is None or not ((us >= pgcopy.micros(EARLIEST)) & (us <= pgcopy.micros(latest))).all():
        return None
    n = len(reports)
    ids = {device: st.device_id for device, st in states.items()}
    dev_ids = np.fromiter((ids.get(d, -1) for d in devices), dtype=np.int64, count=n)
    known = np.nonzero(dev_ids >= 0)[0]
    unknown = np.nonzero(dev_ids < 0)[0]
    seen.unknown = len(unknown)
    seen.unknown_devices.update(devices[i] for i in unknown)
    # Repeats of (device, time) inside the batch: the first one counts.
    order = known[np.lexsort((known, us[known], dev_ids[known]))]
    repeat = np.zeros(len(order), dtype=bool)
    repeat[1:] = (dev_ids[order][1:] == dev_ids[order][:-1]) & (us[order][1:] == us[order][:-1])
    seen.duplicates = int(repeat.sum())
    keep = np.sort(order[~repeat])
    seen.rows = len(keep)
    grid_ids = np.full(n, -1, dtype=np.int64)
    if grids:
        for i in keep:
            g = grids.get((reports[i].lon, reports[i].lat))
            if g is not None:
                grid_ids[i] = g
    # Fixes newer than what the database holds: the newest per device, and all
    # of them, in order, for devices whose events are tracked.
    floor = _floors(states)
    last = np.fromiter((floor[devices[i]] for i in keep), dtype=np.int64, count=len(keep))
    fresh = keep[(us[keep] > last) & (us[keep] <= received_us + _SKEW_US)]
    if len(fresh):
        by_device = fresh[np.lexsort((us[fresh], dev_ids[fresh]))]
        is_last = np.ones(len(by_device), dtype=bool)
        is_last[:-1] = dev_ids[by_device][1:] != dev_ids[by_device][:-1]
        for i in by_device[is_last]:
            seen.newest[devices[i]] = (int(us[i]), reports[i])
        tracked = _tracked(states)
        if tracked:
            for i in fresh:
                if devices[i] in tracked:
                    seen.newer.setdefault(devices[i], []).append(reports[i])

    kept = np.zeros(n, dtype=bool)
    kept[keep] = True

    def chunks() -> Iterator[bytes]:
        # Every report is checked, repeats and unknown devices included, as on
        # the per-report path; only the kept ones are encoded.
        yield pgcopy.SIGNATURE
        for start in range(0, n, FAST_CHUNK):
            end = min(n, start + FAST_CHUNK)
            prep = pgcopy_batch.prepare(reports[start:end], _MAX_MAGNITUDE, _attributes_bytes)
            local = np.nonzero(kept[start:end])[0]
            rows = local + start
            if prep is not None:
                yield pgcopy_batch.encode(prep.subset(local), us[rows], dev_ids[rows],
                                          grid_ids[rows], received_us)
                continue
            pieces: list[bytes] = []
            encode = pgcopy.position_encoder(pieces.append, received_us)
            for i in range(start, end):
                r = reports[i]
                attrs = _check(r, latest)  # raises BadInput for a bad report
                if kept[i]:
                    grid = int(grid_ids[i]) if grid_ids[i] >= 0 else None
                    encode(int(dev_ids[i]), int(us[i]), r, attrs, grid)
            yield b"".join(pieces)
        yield pgcopy.TRAILER

    return chunks()


def _position_rows(
    reports: list[PositionReport],
    states: dict[str, _DeviceState],
    grids: dict[tuple[float, float], int | None],
    latest: datetime,
    received_us: int,
    seen: _Pass,
) -> Iterator[bytes]:
    """COPY data of the batch, produced while the server stores the previous chunk.

    One loop does every per-report step (check, skip unknown devices and
    repeats, encode, note the newest fix per device), because on the bulk
    path the Python work per report is what limits the rate.  A bad report
    raises ``BadInput`` from here, which aborts the COPY and the transaction.
    """
    fast = _fast_rows(reports, states, grids, latest, received_us, seen)
    if fast is not None:
        yield from fast
        return
    ids = {device: st.device_id for device, st in states.items()}
    last_us = _floors(states)
    horizon = received_us + _SKEW_US
    tracked = _tracked(states)
    keys: set[tuple[str, int]] = set()  # microseconds: hashing aware datetimes is slow
    newest, newer = seen.newest, seen.newer
    epoch, chunk = pgcopy.PG_EPOCH, pgcopy.CHUNK_ROWS
    parts: list[bytes] = [pgcopy.SIGNATURE]
    encode = pgcopy.position_encoder(parts.append, received_us)
    for r in reports:
        attrs = _check(r, latest)
        device = r.device
        device_id = ids.get(device)
        if device_id is None:
            seen.unknown += 1
            seen.unknown_devices.add(device)
            continue
        d = r.ts - epoch
        us = (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds
        key = (device, us)
        if key in keys:
            seen.duplicates += 1
            continue
        keys.add(key)
        encode(device_id, us, r, attrs, grids.get((r.lon, r.lat)) if grids else None)
        seen.rows += 1
        if last_us[device] < us <= horizon:
            best = newest.get(device)
            if best is None or us > best[0]:
                newest[device] = (us, r)
            if device in tracked:
                newer.setdefault(device, []).append(r)
        if len(parts) >= chunk:
            yield b"".join(parts)
            parts.clear()
    parts.append(pgcopy.TRAILER)
    yield b"".join(parts)


def _locate(
    conn: Connection, cur, reports: list[PositionReport]
) -> dict[tuple[float, float], int | None]:
    """Grid of each distinct point; skipped (all None) while no grid is imported."""
    cur.execute("SELECT EXISTS (SELECT 1 FROM grid)")
    if not cur.fetchone()[0]:
        return {}
    points = list(
        {
            (r.lon, r.lat)
            for r in reports
            if type(r.lon) is float and type(r.lat) is float and _finite(r.lon) and _finite(r.lat)
        }
    )
    return dict(zip(points, locate_grids(conn, points), strict=True))


def _copy_positions(cur, data: Callable[[], Iterator[bytes]]) -> int:
    """COPY straight into ``positions``; on a duplicate, redo it through a staging table.

    The straight COPY is the common case and about twice as fast; only a
    batch that repeats a stored report (a replayed queue, a client retry)
    pays for the staging table and ``ON CONFLICT DO NOTHING``.
    """
    cur.execute("SAVEPOINT fast_copy")
    try:
        count = pgcopy.copy(cur, f"COPY positions ({_COLUMNS}) FROM STDIN BINARY", data())
        cur.execute("RELEASE SAVEPOINT fast_copy")
        return count
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT fast_copy")
    cur.execute(
        "CREATE TEMP TABLE IF NOT EXISTS positions_in (LIKE positions) ON COMMIT DELETE ROWS"
    )
    cur.execute("TRUNCATE positions_in")
    pgcopy.copy(cur, f"COPY positions_in ({_COLUMNS}) FROM STDIN BINARY", data())
    cur.execute(
        f"INSERT INTO positions ({_COLUMNS}) SELECT {_COLUMNS} FROM positions_in "
        "ON CONFLICT DO NOTHING"
    )
    return cur.rowcount


def _upsert_latest(
    cur,
    newest: dict[str, PositionReport],
    states: dict[str, _DeviceState],
    grids: dict[tuple[float, float], int | None],
    received_us: int,
) -> None:
    if not newest:
        return
    ids = {device: states[device].device_id for device in newest}
    cur.execute(
        "CREATE TEMP TABLE IF NOT EXISTS latest_in (LIKE latest_position) ON COMMIT DELETE ROWS"
    )
    cur.execute("TRUNCATE latest_in")
    pgcopy.copy(
        cur,
        f"COPY latest_in ({_LATEST_COLUMNS}) FROM STDIN BINARY",
        pgcopy.latest_rows(newest.values(), ids, grids, received_us),
    )
    updates = ", ".join(
        f"{c} = EXCLUDED.{c}" for c in _LATEST_COLUMNS.split(", ") if c != "device_id"
    )
    cur.execute(
        f"INSERT INTO latest_position ({_LATEST_COLUMNS}) SELECT {_LATEST_COLUMNS} FROM latest_in "
        f"ON CONFLICT (device_id) DO UPDATE SET {updates} "
        "WHERE latest_position.ts < EXCLUDED.ts "
        "OR latest_position.ts > latest_position.received_at + %s",
        (MAX_CLOCK_SKEW,),
    )


def _events(
    newer: dict[str, list[PositionReport]],
    states: dict[str, _DeviceState],
    grids: dict[tuple[float, float], int | None],
) -> list[tuple]:
    """Events from each device's newer reports, in time order.

    A device reported offline comes back ``online`` with its first newer
    report.  A worker with an own grid ``left_grid`` when a report falls
    outside it (or the first report ever does) and ``returned_to_grid`` when
    one falls inside again; the state before the batch is its latest position.
    """
    events: list[tuple] = []
    for device, items in newer.items():
        st = states[device]
        first = items[0]
        if st.offline:
            detail = {"last_fix": st.last_ts.isoformat() if st.last_ts else None}
            g = grids.get((first.lon, first.lat))
            events.append(_event(st, "online", first, g, detail))
        if st.worker_id is None or st.own_grid is None:
            continue
        inside = None if st.last_ts is None else st.last_grid == st.own_grid
        prev_grid = st.last_grid
        for r in items:
            g = grids.get((r.lon, r.lat))
            now_inside = g == st.own_grid
            if now_inside != inside and (inside is not None or not now_inside):
                kind = "returned_to_grid" if now_inside else "left_grid"
                detail = {"own_grid": st.own_grid, "from_grid": prev_grid}
                events.append(_event(st, kind, r, g, detail))
            inside, prev_grid = now_inside, g
    return events


def _event(st: _DeviceState, kind: str, r: PositionReport, grid: int | None, detail: dict):
    return (
        st.device_id,
        st.worker_id,
        kind,
        r.ts,
        grid,
        r.lon,
        r.lat,
        psycopg2.extras.Json(detail),
    )


def sweep_offline(
    engine: Engine,
    after: timedelta = timedelta(minutes=DEFAULT_OFFLINE_MINUTES),
    now: datetime | None = None,
) -> int:
    """Record ``offline`` for every device silent for longer than ``after``; return how many.

    A device is reported offline once per silence: the next sweep skips it
    while its offline event is newer than its last report.  ``now`` (default
    the database clock) lets tests move time forward.
    """
    with _batch_transaction(engine) as conn:
        cur = conn.connection.cursor()
        received_at = _lock_and_clock(cur)
        at = now or received_at
        cur.execute(
            """
            INSERT INTO worker_event (device_id, worker_id, kind, at, grid_id, lon, lat, detail)
            SELECT lp.device_id, d.worker_id, 'offline', %(at)s, lp.grid_id, lp.lon, lp.lat,
                   jsonb_build_object('last_report', lp.received_at, 'last_fix', lp.ts)
            FROM latest_position lp JOIN device d ON d.id = lp.device_id
            WHERE lp.received_at < %(at)s - %(after)s
              AND NOT EXISTS (SELECT 1 FROM worker_event e
                              WHERE e.device_id = lp.device_id AND e.kind = 'offline'
                                AND e.at >= lp.received_at)
            """,
            {"at": at, "after": after},
        )
        count = cur.rowcount
        if count:
            cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, _watermark_text(received_at)))
    if count:
        log.info("%d device(s) offline (silent for more than %s)", count, after)
    return count


def latest_since(conn: Connection, watermark: datetime | None) -> tuple[list, datetime | None]:
    """Latest positions changed after ``watermark``, and the new watermark.

    What a console runs on each ``grid_positions`` notification (and on a
    timer, in case one was missed): nothing changed, nothing read.
    """
    cur = conn.connection.cursor()
    cur.execute(
        f"SELECT {_LATEST_COLUMNS} FROM latest_position "
        "WHERE %s::timestamptz IS NULL OR received_at > %s ORDER BY received_at",
        (watermark, watermark),
    )
    rows = cur.fetchall()
    return rows, (rows[-1][-1] if rows else watermark)


def parse_watermark(payload: str) -> datetime:
    """The watermark a ``grid_positions`` notification carries."""
    return datetime.fromisoformat(payload)


def _watermark_text(received_at: datetime) -> str:
    return received_at.astimezone(UTC).isoformat()
