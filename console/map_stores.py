"""The stores that feed the live map's layers: territory, cases, field force, cameras.

Each store owns one Qt-free layer model (``maps.layers``) and keeps it current:

- :class:`TerritoryStore` reads the outlines once (and again when a district is
  imported: ``grid_territory``), projecting them on the worker thread;
- :class:`CaseFeeder` follows the console's ``CaseStore`` (itself fed by the
  change feed) and writes the open cases into the case layer, coalesced, whole
  arrays; it also computes the grid choropleth's figures;
- :class:`PositionStore` follows the gateway: ``NOTIFY grid_positions`` carries a
  watermark, the store reads the latest positions newer than what it has
  (``db.map_queries.positions_since``) at most ``MAX_RATE_HZ`` times a second,
  whatever the rate of notifications, turns the rows into numpy columns on the
  read thread (``position_columns``) and applies each read on the GUI thread as
  one whole-array update of the workers layer;
- :class:`CameraStore` reads the cameras once.

All database work runs on pool threads (``console.tasks.run_in_thread``);
results are applied on the GUI thread, where the layers' events reach the map.

Positions are WGS-84 in the database; they are projected to canvas metres by
one ``maps.mercator.Projector`` (GCJ-02 first when the basemap is GCJ-02,
``MapData.set_datum``), so every layer is always drawn in the basemap's datum.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from sqlalchemy import Engine

from console.tasks import run_in_thread
from maps.layers import (
    CASE_COMPONENT,
    CASE_EMERGENCY,
    CASE_ESCALATED,
    CASE_ESCALATED_RED,
    CASE_OVERDUE,
    CASE_STATUS_CODE,
    CASE_URGENT,
    CASE_WARNING,
    WORKER_NO_FIX,
    WORKER_OFFLINE,
    WORKER_STALE,
    WORKER_STATUS_CODE,
    PointLayer,
    TerritoryLayer,
    make_feature,
)
from maps.mercator import Projector

log = logging.getLogger(__name__)

MAX_RATE_HZ = 10  # position reads (and so worker-layer updates) per second, at most
POLL_S = 5.0  # re-read positions anyway (a lost NOTIFY costs at most this) and age the fixes
STALE_S = 120.0  # a fix older than this is marked (hollow marker): four missed reports
OFFLINE_S = 600.0  # and older than this the worker shows offline (the gateway's default)
CASE_COALESCE_MS = 100
WEEKLY_REFRESH_MS = 300_000
CHOROPLETH_METRICS = ("open", "overdue", "weekly")


def _project_features(rows: list[dict], projector: Projector) -> list:
    """Territory rows → ``maps.layers.Feature`` in canvas metres (runs on a worker thread)."""
    out = []
    for r in rows:
        geometry = r["geometry"]
        if not geometry:
            continue
        polygons = projector.forward_geometry(geometry)
        out.append(make_feature(r["level"], int(r["id"]), r["code"], r["name"], polygons,
                                r["parent"]))
    return out


class TerritoryStore(QObject):
    """The outlines of every level; loaded once, again after a district import."""

    loaded = Signal()
    failed = Signal(object)

    def __init__(self, engine: Engine, projector: Projector, parent: QObject | None = None):
        super().__init__(parent)
        self.engine = engine
        self.projector = projector
        self.layer = TerritoryLayer()
        self.is_loaded = False
        self._rows: list[dict] | None = None

    def load(self) -> None:
        from db.map_queries import territory_features

        engine, projector = self.engine, self.projector

        def work():
            rows = territory_features(engine)
            return rows, _project_features(rows, projector)

        run_in_thread(work, self._on_loaded, self._on_failed, context=self)

    def reproject(self) -> None:
        """The datum changed: project the rows already read again (off the GUI thread)."""
        rows, projector = self._rows, self.projector
        if rows is None:
            return
        run_in_thread(lambda: (rows, _project_features(rows, projector)), self._on_loaded,
                      self._on_failed, context=self)

    def _on_loaded(self, result) -> None:
        self._rows, features = result
        self.layer.replace(features)
        self.is_loaded = True
        self.loaded.emit()

    def _on_failed(self, exc: Exception) -> None:
        log.warning("territory not loaded: %s", exc)
        self.is_loaded = True  # nothing to wait for; the map says what is missing
        self.failed.emit(exc)


class CaseFeeder(QObject):
    """Writes the open cases of a ``CaseStore`` into the case layer, coalesced.

    The queue's store already follows the change feed row by row; the map
    takes its rows from there (one source, the same cases as the queue), a
    burst of changes becoming one whole-array update after ``CASE_COALESCE_MS``.
    Overdue and 80 % marks age with the clock, so they are recomputed every
    ``POLL_S`` seconds too.  Emits ``figures_changed()`` when the per-grid
    counts of the choropleth change.
    """

    figures_changed = Signal()

    def __init__(self, case_store, projector: Projector, parent: QObject | None = None):
        super().__init__(parent)
        self.store = case_store
        self.projector = projector
        self.layer = PointLayer("cases", "案件")
        self.open_by_grid: dict[str, float] = {}
        self.overdue_by_grid: dict[str, float] = {}
        self._dirty: set[int] = set()
        self._removed: set[int] = set()
        self._all = True
        self._timer = QTimer(self, singleShot=True, interval=CASE_COALESCE_MS)
        self._timer.timeout.connect(self.flush)
        self._ager = QTimer(self, interval=int(POLL_S * 1000))
        self._ager.timeout.connect(self._age)
        case_store.loaded.connect(self._on_loaded)
        case_store.case_changed.connect(self._on_changed)
        case_store.row_removed.connect(self._on_removed)
        if case_store.is_loaded:
            self._on_loaded()
        self._ager.start()

    def _on_loaded(self) -> None:
        self._all = True
        self._timer.start()

    def _on_changed(self, row) -> None:
        self._dirty.add(row.id)
        self._removed.discard(row.id)
        if not self._timer.isActive():
            self._timer.start()

    def _on_removed(self, case_id: int) -> None:
        self._removed.add(case_id)
        self._dirty.discard(case_id)
        if not self._timer.isActive():
            self._timer.start()

    def _age(self) -> None:
        self._all = True
        self.flush()

    def reproject(self) -> None:
        self._all = True
        self.flush()

    def flush(self) -> None:
        """Apply what changed since the last flush as one whole-array update."""
        self._timer.stop()
        if self._removed:
            self.layer.remove(np.fromiter(self._removed, dtype=np.int64))
            self._removed.clear()
        if self._all:
            rows = list(self.store.rows.values())
            self._all = False
            self._dirty.clear()
            self._write(rows, replace=True)
        elif self._dirty:
            rows = [r for r in map(self.store.get, self._dirty) if r is not None]
            self._dirty.clear()
            self._write(rows)
        self._figures()

    def _write(self, rows: list, replace: bool = False) -> None:
        now = time.time()
        n = len(rows)
        ids = np.fromiter((r.id for r in rows), dtype=np.int64, count=n)
        lon = np.fromiter((r.lon for r in rows), dtype=float, count=n)
        lat = np.fromiter((r.lat for r in rows), dtype=float, count=n)
        x, y = self.projector.forward(lon, lat) if n else (np.zeros(0), np.zeros(0))
        status = np.fromiter((CASE_STATUS_CODE.get(r.status, 0) for r in rows), dtype=np.int16,
                             count=n)
        flags = np.fromiter((case_flags(r, now) for r in rows), dtype=np.uint16, count=n)
        labels = np.array([r.number for r in rows], dtype=object)
        if replace:
            self.layer.replace(ids, x=x, y=y, status=status, flags=flags, labels=labels)
        else:
            self.layer.upsert(ids, x=x, y=y, status=status, flags=flags, labels=labels)

    def _figures(self) -> None:
        now = time.time()
        open_by: dict[str, float] = {}
        overdue_by: dict[str, float] = {}
        for r in self.store.rows.values():
            if not r.grid_code:
                continue
            open_by[r.grid_code] = open_by.get(r.grid_code, 0) + 1
            if r.overdue(now):
                overdue_by[r.grid_code] = overdue_by.get(r.grid_code, 0) + 1
        if open_by != self.open_by_grid or overdue_by != self.overdue_by_grid:
            self.open_by_grid, self.overdue_by_grid = open_by, overdue_by
            self.figures_changed.emit()

    def stop(self) -> None:
        self._timer.stop()
        self._ager.stop()


def case_flags(row, now_ts: float) -> int:
    """The case layer's flag bits for a ``console.case_store.CaseRow``."""
    f = 0
    if row.kind == "component":
        f |= CASE_COMPONENT
    if row.severity == "urgent":
        f |= CASE_URGENT
    elif row.severity == "emergency":
        f |= CASE_EMERGENCY
    if row.overdue(now_ts):
        f |= CASE_OVERDUE
    else:
        used = row.used_share(now_ts)
        if used is not None and used >= 0.8:
            f |= CASE_WARNING
    if row.escalation >= 2:
        f |= CASE_ESCALATED_RED
    elif row.escalation == 1:
        f |= CASE_ESCALATED
    return f


@dataclass(frozen=True)
class PositionColumns:
    """One read of latest positions as numpy columns (``position_columns``)."""

    device_id: np.ndarray  # int64
    ts: np.ndarray  # POSIX seconds of the fix
    lon: np.ndarray
    lat: np.ndarray
    course: np.ndarray  # degrees, NaN: none


def position_columns(rows: list) -> PositionColumns:
    """Latest-position rows (``db.positions.latest_since``) as columns.

    Column by column (``np.fromiter`` over an ``itemgetter``), not row by row:
    50,000 rows cost a few C loops, and the only per-row Python left is the
    driver's own ``datetime.timestamp``.  Runs on the read thread, so the GUI
    thread only ever applies whole arrays.
    """
    n = len(rows)
    return PositionColumns(
        device_id=np.fromiter(map(itemgetter(0), rows), dtype=np.int64, count=n),
        ts=np.fromiter(map(datetime.timestamp, map(itemgetter(1), rows)), dtype=float,
                       count=n),
        lon=np.fromiter(map(itemgetter(2), rows), dtype=float, count=n),
        lat=np.fromiter(map(itemgetter(3), rows), dtype=float, count=n),
        course=np.array(list(map(itemgetter(5), rows)), dtype=float).reshape(n),  # None → NaN
    )


class PositionStore(QObject):
    """The field force on the map: roster once, positions as the gateway reports them.

    ``updated(int)`` after each applied read (how many devices moved);
    ``failed(object)``.  ``applied`` counts the reads applied, ``notifications``
    the NOTIFYs received: far more notifications than reads is the coalescing.
    """

    updated = Signal(int)
    failed = Signal(object)
    fixes = Signal(object)  # the PositionColumns of each applied read (the live trails')
    _notified = Signal(str, str)  # from the listener thread, queued to ours
    _online = Signal(bool)

    def __init__(self, engine: Engine, projector: Projector, parent: QObject | None = None,
                 listen: bool = True):
        super().__init__(parent)
        self.engine = engine
        self.projector = projector
        self.layer = PointLayer("workers", "网格员")
        self.meta: dict[int, dict] = {}  # device id → worker code, name, grid, phone …
        self.watermark: datetime | None = None
        self.is_loaded = False
        self.notifications = 0
        self.applied = 0
        self.last_applied_at = 0.0  # time.monotonic() of the last applied read
        # Raw columns by layer row order are rebuilt from these dicts of arrays.
        self._ids = np.zeros(0, dtype=np.int64)
        self._lon = np.zeros(0)
        self._lat = np.zeros(0)
        self._ts = np.zeros(0)  # POSIX seconds of the fix, NaN: never
        self._course = np.zeros(0, dtype=np.float32)
        self._base_status = np.zeros(0, dtype=np.int16)
        self._offline_event = np.zeros(0, dtype=bool)
        self._in_flight = False
        self._wanted = False
        self._stopped = False
        self._last_read = 0.0
        self._rate_timer = QTimer(self, singleShot=True)
        self._rate_timer.timeout.connect(self._read)
        self._poll = QTimer(self, interval=int(POLL_S * 1000))
        self._poll.timeout.connect(self._tick)
        self._notified.connect(self._on_notify)
        self._online.connect(self._on_online)
        self.listener = None
        if listen:
            from db.map_queries import PositionListener

            self.listener = PositionListener(engine, self._notified.emit, self._online.emit)

    # -- loading ----------------------------------------------------------------

    def load(self) -> None:
        from db.map_queries import field_force

        engine = self.engine
        run_in_thread(lambda: field_force(engine), self._on_roster, self._on_failed,
                      context=self)

    def start(self) -> PositionStore:
        self.load()
        if self.listener is not None:
            self.listener.start()
        self._poll.start()
        return self

    def _on_roster(self, rows: list[dict]) -> None:
        if self._stopped:
            return
        n = len(rows)
        self._ids = np.fromiter((r["device_id"] for r in rows), dtype=np.int64, count=n)
        order = np.argsort(self._ids)
        rows = [rows[i] for i in order]
        self._ids = self._ids[order]
        nan = float("nan")
        self._lon = np.array([r["lon"] if r["lon"] is not None else nan for r in rows], float)
        self._lat = np.array([r["lat"] if r["lat"] is not None else nan for r in rows], float)
        self._ts = np.array([r["ts"].timestamp() if r["ts"] is not None else nan for r in rows],
                            float)
        self._course = np.array([r["course"] if r["course"] is not None else nan
                                 for r in rows], np.float32)
        self._base_status = np.array(
            [WORKER_STATUS_CODE.get(r["status"] or "on_duty", 0) for r in rows], np.int16)
        self._offline_event = np.array([bool(r["offline"]) for r in rows], bool)
        self.meta = {int(r["device_id"]): r for r in rows}
        marks = [r["received_at"] for r in rows if r["received_at"] is not None]
        newest = max(marks) if marks else None
        if self.watermark is None or (newest is not None and newest > self.watermark):
            self.watermark = newest
        labels = np.array([r["name"] or r["identifier"] for r in rows], dtype=object)
        x, y = self.projector.forward(self._lon, self._lat) if n else (np.zeros(0),
                                                                       np.zeros(0))
        status, flags = self._status_flags(time.time())
        self.layer.replace(self._ids, x=x, y=y, status=status, flags=flags,
                           heading=self._course, labels=labels)
        self.is_loaded = True
        self.updated.emit(n)
        self._request()  # whatever arrived while the roster was being read

    def reproject(self) -> None:
        if not len(self._ids):
            return
        x, y = self.projector.forward(self._lon, self._lat)
        self.layer.upsert(self._ids, x=x, y=y)

    def _on_failed(self, exc: Exception) -> None:
        log.warning("field force not loaded: %s", exc)
        self.failed.emit(exc)

    # -- following the gateway -----------------------------------------------------

    def _on_notify(self, channel: str, payload: str) -> None:
        self.notifications += 1
        self._request()

    def _on_online(self, online: bool) -> None:
        if online:
            self._request()  # catch up with what was reported while we were away

    def _tick(self) -> None:
        self._request()
        if self.is_loaded and len(self._ids):
            status, flags = self._status_flags(time.time())
            changed = (status != self.layer.status[self.layer.rows_of(self._ids)]) | (
                flags != self.layer.flags[self.layer.rows_of(self._ids)])
            if changed.any():
                self.layer.upsert(self._ids[changed], status=status[changed],
                                  flags=flags[changed])

    def _request(self) -> None:
        """Read soon: at once when idle, else after the rate limit; one read at a time."""
        if self._stopped or not self.is_loaded:
            return
        self._wanted = True
        if self._in_flight or self._rate_timer.isActive():
            return
        wait = self._last_read + 1.0 / MAX_RATE_HZ - time.monotonic()
        if wait > 0:
            self._rate_timer.start(int(wait * 1000) + 1)
        else:
            self._read()

    def _read(self) -> None:
        if self._stopped or self._in_flight or not self._wanted:
            return
        from db.map_queries import positions_since

        self._wanted = False
        self._in_flight = True
        self._last_read = time.monotonic()
        engine, mark = self.engine, self.watermark

        def read():  # the rows become columns here, on the read thread, not the GUI's
            rows, new_mark = positions_since(engine, mark)
            return (position_columns(rows) if rows else None), new_mark

        run_in_thread(read, self._on_positions, self._on_read_failed, context=self)

    def _on_read_failed(self, exc: Exception) -> None:
        self._in_flight = False
        log.warning("positions not read: %s", exc)
        self.failed.emit(exc)

    def _on_positions(self, result) -> None:
        self._in_flight = False
        if self._stopped:
            return
        columns, mark = result
        if mark is not None:
            self.watermark = mark
        if columns is not None:
            self.apply_columns(columns)
        if self._wanted:
            self._request()

    def apply_rows(self, rows: list) -> None:
        """Apply latest-position rows (``db.positions.latest_since``) as one update."""
        if rows:
            self.apply_columns(position_columns(rows))

    def apply_columns(self, cols: PositionColumns) -> None:
        """Apply one read of latest positions, as columns, as one whole-array update."""
        n = len(cols.device_id)
        if not n:
            return
        dev = cols.device_id
        rowpos = np.searchsorted(self._ids, dev)
        rowpos_c = np.minimum(rowpos, max(len(self._ids) - 1, 0))
        known = (rowpos < len(self._ids)) & (self._ids[rowpos_c] == dev) if len(
            self._ids) else np.zeros(n, bool)
        if not known.all():
            self.load()  # a device we have not met: read the roster again
        idx = np.nonzero(known)[0]
        if not len(idx):
            return
        # In row order (the rows come by time received): the layer then takes sorted ids.
        idx = idx[np.argsort(rowpos_c[idx], kind="stable")]
        r = rowpos_c[idx]
        self._ts[r] = cols.ts[idx]
        self._lon[r] = cols.lon[idx]
        self._lat[r] = cols.lat[idx]
        self._course[r] = cols.course[idx]
        self._offline_event[r] = False  # a report after the offline event: back online
        x, y = self.projector.forward(self._lon[r], self._lat[r])
        status, flags = self._status_flags(time.time())
        self.layer.upsert(self._ids[r], x=x, y=y, heading=self._course[r], status=status[r],
                          flags=flags[r])
        self.applied += 1
        self.last_applied_at = time.monotonic()
        self.fixes.emit(cols)
        self.updated.emit(len(r))

    def _status_flags(self, now_ts: float) -> tuple[np.ndarray, np.ndarray]:
        age = now_ts - self._ts
        never = ~np.isfinite(self._ts)
        offline = self._offline_event | never | (age > OFFLINE_S)
        status = np.where(offline, WORKER_OFFLINE, self._base_status).astype(np.int16)
        flags = np.zeros(len(self._ts), dtype=np.uint16)
        flags[(age > STALE_S) & ~never] |= WORKER_STALE
        flags[never] |= WORKER_NO_FIX
        return status, flags

    # -- reading -----------------------------------------------------------------------

    def fix_age_s(self, device_id: int) -> float | None:
        i = np.searchsorted(self._ids, device_id)
        if i >= len(self._ids) or self._ids[i] != device_id or not np.isfinite(self._ts[i]):
            return None
        return max(0.0, time.time() - float(self._ts[i]))

    def lonlat(self, device_id: int) -> tuple[float, float] | None:
        i = np.searchsorted(self._ids, device_id)
        if i >= len(self._ids) or self._ids[i] != device_id or not np.isfinite(self._lon[i]):
            return None
        return float(self._lon[i]), float(self._lat[i])

    def find(self, text: str, limit: int = 10) -> list[int]:
        """Device ids whose worker's name, worker code or device identifier matches ``text``."""
        text = text.strip()
        if not text:
            return []
        out = []
        for did, m in self.meta.items():
            if text in (m.get("name") or "") or (m.get("code") or "").startswith(text) or (
                    m.get("identifier") == text):
                out.append(did)
                if len(out) >= limit:
                    break
        return out

    def stop(self) -> None:
        self._stopped = True
        self._poll.stop()
        self._rate_timer.stop()
        if self.listener is not None:
            self.listener.stop()


class CameraStore(QObject):
    """The cameras, read once: position and view direction."""

    loaded = Signal()

    def __init__(self, engine: Engine, projector: Projector, parent: QObject | None = None):
        super().__init__(parent)
        self.engine = engine
        self.projector = projector
        self.layer = PointLayer("cameras", "摄像头")
        self.meta: dict[int, dict] = {}
        self.is_loaded = False

    def load(self) -> None:
        from db.map_queries import cameras

        engine = self.engine
        run_in_thread(lambda: cameras(engine), self._on_loaded, self._on_failed, context=self)

    def _on_loaded(self, rows: list[dict]) -> None:
        self.meta = {int(r["id"]): r for r in rows}
        self.reproject()
        self.is_loaded = True
        self.loaded.emit()

    def reproject(self) -> None:
        rows = list(self.meta.values())
        if not rows:
            self.layer.replace(np.zeros(0, np.int64))
            return
        ids = np.array([r["id"] for r in rows], np.int64)
        x, y = self.projector.forward(np.array([r["lon"] for r in rows], float),
                                      np.array([r["lat"] for r in rows], float))
        heading = np.array([r["heading"] if r["heading"] is not None else np.nan for r in rows],
                           np.float32)
        labels = np.array([f"{r['code']} {r['name']}" for r in rows], dtype=object)
        self.layer.replace(ids, x=x, y=y, heading=heading, labels=labels)

    def _on_failed(self, exc: Exception) -> None:
        log.warning("cameras not loaded: %s", exc)
        self.is_loaded = True


class MapData(QObject):
    """Everything the live map shows, with one projector for the basemap's datum.

    ``case_store`` is the console's ``CaseStore`` (the queue's); the map never
    reads cases on its own.  ``listen=False`` leaves the gateway's
    notifications alone (screenshots: a picture of the state as it is).
    """

    figures_changed = Signal()

    def __init__(self, engine: Engine, case_store, datum: str = "wgs84",
                 parent: QObject | None = None, listen: bool = True):
        super().__init__(parent)
        self.engine = engine
        self.projector = Projector(datum)
        self.territory = TerritoryStore(engine, self.projector, self)
        self.cases = CaseFeeder(case_store, self.projector, self)
        self.positions = PositionStore(engine, self.projector, self, listen=listen)
        self.cameras = CameraStore(engine, self.projector, self)
        from console.trail_store import TrailStore

        self.trails = TrailStore(engine, self.positions, self.projector, self)
        self.weekly_by_grid: dict[str, float] = {}
        self.metric = "open"
        self.cases.figures_changed.connect(self._update_choropleth)
        self.territory.loaded.connect(self._update_choropleth)
        self._weekly_timer = QTimer(self, interval=WEEKLY_REFRESH_MS)
        self._weekly_timer.timeout.connect(self._load_weekly)

    def start(self) -> MapData:
        self.territory.load()
        self.positions.start()
        self.trails.start()
        self.cameras.load()
        self._load_weekly()
        self._weekly_timer.start()
        return self

    @property
    def is_loaded(self) -> bool:
        return (self.territory.is_loaded and self.positions.is_loaded
                and self.cameras.is_loaded and self.cases.store.is_loaded)

    def set_datum(self, datum: str) -> None:
        """Draw everything in ``datum`` (the basemap's): re-project every layer."""
        if datum == self.projector.datum:
            return
        self.projector.datum = datum
        self.territory.reproject()
        self.cases.reproject()
        self.positions.reproject()
        self.trails.reproject()
        self.cameras.reproject()

    def set_metric(self, metric: str) -> None:
        if metric in CHOROPLETH_METRICS:
            self.metric = metric
            self._update_choropleth()

    def _load_weekly(self) -> None:
        from db.map_queries import grid_weekly_cases

        engine = self.engine

        def done(values: dict) -> None:
            self.weekly_by_grid = values
            self._update_choropleth()

        run_in_thread(lambda: grid_weekly_cases(engine), done,
                      lambda exc: log.warning("weekly figures not read: %s", exc), context=self)

    def _update_choropleth(self) -> None:
        values = {"open": self.cases.open_by_grid, "overdue": self.cases.overdue_by_grid,
                  "weekly": self.weekly_by_grid}[self.metric]
        self.territory.layer.set_values(self.metric, values)
        self.figures_changed.emit()

    def on_notified(self, channel: str, payload: str) -> None:
        """Connect the console's ``LiveFeed.notified``: a district import redraws the outlines."""
        if channel == "grid_territory":
            self.territory.load()

    def stop(self) -> None:
        self._weekly_timer.stop()
        self.cases.stop()
        self.positions.stop()
        self.trails.stop()


def utc_now() -> datetime:
    return datetime.now(UTC)
