"""The console's live cache of open cases, kept current from the change feed.

The database is the one source of truth (docs/ARCHITECTURE.md); this store is a cache of
the rows the case queue shows.  It is filled once (``load``) from a single
snapshot that also names the newest log sequence it reflects, and from then
on it changes only row by row: every log entry names a case, the store
re-reads just those cases and upserts them.  A whole-table reload would cost
every console a full query per action and make the queue jump under the
operator's hands; a per-row refresh costs one indexed query per burst.

Bursts are coalesced: while one refresh query is running, further entries only
add their case ids to a pending set, and the next query fetches all of them
at once (a burst of any size costs two or three queries).  With at most one
query in flight, results are applied in the order they were read, so an
older read can never overwrite a newer one.

All database work runs on a pool thread (``console.tasks.run_in_thread``);
results are applied and signals emitted on the thread the store lives in (the
GUI thread).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from PySide6.QtCore import QObject, QThreadPool, QTimer, Signal
from sqlalchemy import Engine

from console.tasks import run_in_thread
from db.case_queries import queue_rows, queue_snapshot
from db.workflow import OPEN_STATUSES

log = logging.getLogger(__name__)

RETRY_MS = 1000  # after a failed refresh, try again (the ids stay pending)


@dataclass(slots=True)
class CaseRow:
    """One case as the queue shows it; built from a ``db.case_queries.queue_rows`` dict.

    The ``*_ts`` fields are the timestamps as POSIX seconds, computed once per
    row: the countdown of every visible row is recomputed every second and
    sorting compares these, so neither should convert datetimes each time.
    """

    id: int
    number: str
    status: str
    category_code: str
    category_name: str
    category_class: str
    kind: str
    severity: str
    source: str
    street_code: str | None
    street_name: str | None
    grid_code: str | None
    grid_name: str | None
    department_code: str | None
    department_name: str | None
    escalation: int
    reported_at: datetime
    stage_started_at: datetime | None
    stage_due_at: datetime | None
    extension_pending: bool
    version: int
    description: str
    address: str
    lon: float
    lat: float
    onsite: bool
    updated_at: datetime | None
    category_name_en: str = ""
    department_name_en: str = ""
    reported_ts: float = field(init=False, repr=False, compare=False, default=0.0)
    started_ts: float | None = field(init=False, repr=False, compare=False, default=None)
    due_ts: float | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        self.reported_ts = self.reported_at.timestamp()
        self.started_ts = self.stage_started_at.timestamp() if self.stage_started_at else None
        self.due_ts = self.stage_due_at.timestamp() if self.stage_due_at else None

    @classmethod
    def from_mapping(cls, m: dict) -> CaseRow:
        return cls(
            id=int(m["id"]),
            number=m["number"],
            status=m["status"],
            category_code=m["category_code"],
            category_name=m["category_name"],
            category_class=m["category_class"],
            kind=m["kind"],
            severity=m["severity"],
            source=m["source"],
            street_code=m["street_code"],
            street_name=m["street_name"],
            grid_code=m["grid_code"],
            grid_name=m["grid_name"],
            department_code=m["department_code"],
            department_name=m["department_name"],
            escalation=int(m["escalation"] or 0),
            reported_at=m["reported_at"],
            stage_started_at=m["stage_started_at"],
            stage_due_at=m["stage_due_at"],
            extension_pending=bool(m["extension_pending"]),
            version=int(m["version"]),
            description=m["description"] or "",
            address=m["address"] or "",
            lon=float(m["lon"]),
            lat=float(m["lat"]),
            onsite=bool(m["onsite"]),
            updated_at=m["updated_at"],
            category_name_en=m.get("category_name_en") or "",
            department_name_en=m.get("department_name_en") or "",
        )

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def overdue(self, now_ts: float) -> bool:
        return self.due_ts is not None and self.due_ts < now_ts

    def used_share(self, now_ts: float) -> float | None:
        """How much of the current stage's time limit is used (1.0 = due now)."""
        if self.due_ts is None or self.started_ts is None:
            return None
        span = self.due_ts - self.started_ts
        if span <= 0:
            return 1.0 if now_ts >= self.due_ts else 0.0
        return (now_ts - self.started_ts) / span


class CaseStore(QObject):
    """Open cases by id, loaded once and then upserted row by row from the feed.

    Signals: ``loaded()`` after a (re)load replaced everything;
    ``case_changed(CaseRow)`` for a case that entered the queue or changed;
    ``row_removed(int)`` for a case that left it (closed, archived, rejected,
    merged); ``failed(object)`` with the exception of a failed load or refresh.
    """

    loaded = Signal()
    case_changed = Signal(object)
    row_removed = Signal(int)
    failed = Signal(object)

    def __init__(
        self, engine: Engine, parent: QObject | None = None, pool: QThreadPool | None = None
    ):
        super().__init__(parent)
        self.engine = engine
        self.pool = pool
        self.rows: dict[int, CaseRow] = {}
        self.loaded_seq: int | None = None  # newest log entry the loaded snapshot reflects
        self.is_loaded = False
        self.queries = 0  # refresh queries run (coalescing shows as queries << entries)
        self.entries_seen = 0
        self._pending: dict[int, int] = {}  # case id → newest log seq naming it
        self._loading = False
        self._in_flight = False
        self._scheduled = False
        self._stopped = False
        # Cases shown whatever their status (a drill-down from the evaluation panel).
        self.pinned: frozenset[int] = frozenset()

    # -- reading ---------------------------------------------------------------

    def get(self, case_id: int) -> CaseRow | None:
        return self.rows.get(case_id)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def idle(self) -> bool:
        """True when nothing is pending or being fetched (tests and benches wait on it)."""
        return not (self._pending or self._in_flight or self._loading or self._scheduled)

    # -- loading ---------------------------------------------------------------

    def load(self) -> None:
        """(Re)load every open case off the GUI thread; ``loaded`` follows."""
        if self._loading or self._stopped:
            return
        self._loading = True
        engine = self.engine
        run_in_thread(
            lambda: queue_snapshot(engine),
            self._on_loaded,
            self._on_load_failed,
            pool=self.pool,
            context=self,
        )

    def _on_loaded(self, result: tuple[list[dict], int]) -> None:
        self._loading = False
        if self._stopped:
            return
        mappings, seq = result
        self.rows = {r.id: r for r in map(CaseRow.from_mapping, mappings)}
        self.loaded_seq = seq
        self.is_loaded = True
        # Entries the snapshot already reflects need no refresh.
        self._pending = {cid: s for cid, s in self._pending.items() if s > seq}
        self.loaded.emit()
        self._schedule()

    def _on_load_failed(self, exc: Exception) -> None:
        self._loading = False
        log.warning("case queue load failed: %s", exc)
        self.failed.emit(exc)

    # -- following the feed ----------------------------------------------------

    def apply_entries(self, entries: Iterable) -> None:
        """Note the cases that log entries touched; fetch them in one batch soon.

        Connect ``console.live.LiveFeed.entries`` here.  Entries the loaded
        snapshot already reflects are ignored, so the feed may start before
        or at the load's sequence (``loaded_seq``) without double work.
        """
        if self._stopped:
            return
        for e in entries:
            self.entries_seen += 1
            if self.loaded_seq is not None and e.seq <= self.loaded_seq:
                continue
            if e.seq > self._pending.get(e.case_id, 0):
                self._pending[e.case_id] = e.seq
        self._schedule()

    def pin(self, case_ids: Iterable[int]) -> None:
        """Hold these cases too, closed or not, until the next ``pin`` (``[]`` lets go).

        The evaluation panel's drill-down lists the cases behind a number, most of them
        closed; the queue holds open cases only, so they are fetched and kept here while
        shown.  Cases let go that are not open leave (``row_removed``).
        """
        old, self.pinned = self.pinned, frozenset(int(i) for i in case_ids)
        for cid in old - self.pinned:
            row = self.rows.get(cid)
            if row is not None and not row.is_open:
                del self.rows[cid]
                self.row_removed.emit(cid)
        self.refresh(self.pinned - old)

    def refresh(self, case_ids: Iterable[int]) -> None:
        """Re-read these cases (e.g. after this console's own action), coalesced likewise."""
        for cid in case_ids:
            self._pending.setdefault(int(cid), 0)
        self._schedule()

    def _schedule(self, delay_ms: int = 0) -> None:
        # An idle store queries at once (a lone change should not wait for
        # another trip through a busy event loop); while a query runs, entries
        # only accumulate, so a burst costs one more query, not one per entry.
        if self._scheduled or self._in_flight or self._loading or not self._pending:
            return
        if not self.is_loaded:
            return  # the load will pick these up
        if delay_ms <= 0:
            self._flush()
            return
        self._scheduled = True
        QTimer.singleShot(delay_ms, self, self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._stopped or self._in_flight or not self._pending:
            return
        batch = self._pending
        self._pending = {}
        self._in_flight = True
        self.queries += 1
        engine, ids = self.engine, sorted(batch)
        open_only = not self.pinned.intersection(ids)
        run_in_thread(
            lambda: queue_rows(engine, ids=ids, open_only=open_only),
            lambda rows: self._on_rows(ids, rows),
            lambda exc: self._on_refresh_failed(batch, exc),
            pool=self.pool,
            context=self,
        )

    def _on_rows(self, ids: list[int], mappings: list[dict]) -> None:
        self._in_flight = False
        if self._stopped:
            return
        fresh = {r.id: r for r in map(CaseRow.from_mapping, mappings)}
        fresh = {cid: r for cid, r in fresh.items() if r.is_open or cid in self.pinned}
        for cid in ids:
            new = fresh.get(cid)
            old = self.rows.get(cid)
            if new is None:
                if old is not None:  # left the queue (or vanished): drop it
                    del self.rows[cid]
                    self.row_removed.emit(cid)
            elif old is None or (new.version >= old.version and new != old):
                self.rows[cid] = new
                self.case_changed.emit(new)
        self._schedule()

    def _on_refresh_failed(self, batch: dict[int, int], exc: Exception) -> None:
        self._in_flight = False
        log.warning("case queue refresh failed, retrying: %s", exc)
        for cid, seq in batch.items():  # keep them: no update may be missed
            if seq > self._pending.get(cid, -1):
                self._pending[cid] = seq
        self.failed.emit(exc)
        self._schedule(RETRY_MS)

    def stop(self) -> None:
        """Ignore further entries and results (window closing)."""
        self._stopped = True
        self._pending.clear()
