"""The replay's store and clock: a window of tracks and cases loaded off the GUI thread.

``ReplayStore.load`` resolves who is replayed (everyone, some workers, a grid, a street:
``db.field.roster``), reads the window by binary COPY (``db.field.load_replay``: fixes
into ``maps.replay.TrackReplay``, the case log into ``CaseReplay``, the timeline's
events), projects every fix and case once and works out each worker's trip totals and
stops over the window and the running sums that give everyone's totals up to any T
(``maps.replay.TripProgress``), all on a pool thread; the GUI thread only receives the finished
:class:`ReplayData`.  A frame of the replay is then pure numpy on what is held.

``ReplayClock`` is the replay's time: play advances T by ``speed × elapsed`` (elapsed
from a monotonic clock, so a slow frame does not slow the replay down), pause, step,
seek; ``moved(T)`` on every change.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from sqlalchemy import Engine

from console.tasks import run_in_thread
from db.errors import BadInput
from maps.mercator import Projector
from maps.replay import TripProgress

log = logging.getLogger(__name__)

SPEEDS = (1, 2, 5, 10, 20, 60)
TICK_MS = 40  # the clock's frame while playing (25 a second)
STEP_S = 60.0  # a step without a followed worker: one minute
DEFAULT_STOP_MIN_S = 300.0  # a stop is a dwell of at least 5 minutes
WHO = ("everyone", "workers", "grid", "street")


@dataclass
class ReplayData:
    """What a replay holds: tracks and cases of [t0, t1], projected, with the totals."""

    t0: float
    t1: float
    tracks: object  # maps.replay.TrackReplay
    x: np.ndarray  # canvas metres of every fix
    y: np.ndarray
    cases: object  # maps.replay.CaseReplay
    case_x: np.ndarray  # canvas metres of every case entry (CaseReplay's order)
    case_y: np.ndarray
    case_number: np.ndarray  # the case's number per entry
    marks: list[dict]
    devices: np.ndarray  # the devices replayed (sorted)
    meta: dict[int, dict]  # device id → roster row (name, code, grid …)
    totals: dict[int, dict] = field(default_factory=dict)  # device id → TrackReplay.trip
    stop_min_s: float = DEFAULT_STOP_MIN_S
    who: tuple = ("everyone", None)
    progress: object = None  # maps.replay.TripProgress: everyone's totals up to any T


def resolve_who(roster_rows: list[dict], who: str, value=None) -> list[dict]:
    """The roster rows with a terminal that ``who`` names (a clear line for an unknown one).

    ``workers``: ``value`` a list of worker codes or device ids; ``grid`` / ``street``: a
    code; ``everyone``: all.
    """
    rows = [r for r in roster_rows if r.get("device_id")]
    if who == "everyone":
        return rows
    if who == "workers":
        wanted = {str(v) for v in (value or [])}
        chosen = [r for r in rows if r["code"] in wanted or str(r["device_id"]) in wanted]
        if not chosen:
            raise BadInput("没有找到所选的网格员。", "None of the chosen workers was found.")
        return chosen
    if who in ("grid", "street"):
        key = "grid_code" if who == "grid" else "street_code"
        chosen = [r for r in rows if r.get(key) == value]
        if not chosen:
            zh = "网格" if who == "grid" else "街道"
            raise BadInput(f"{zh}“{value}”没有带终端的网格员。",
                           f"No worker with a terminal in {who} '{value}'.")
        return chosen
    raise BadInput(f"未知回放对象“{who}”。", f"Unknown replay selection '{who}'.")


def trip_totals(tracks, devices, t0: float, t1: float, stop_min_s: float) -> dict[int, dict]:
    """Each device's ``TrackReplay.trip`` over the window (a pool thread's work)."""
    return {int(d): tracks.trip(int(d), t0, t1, stop_min_s=stop_min_s) for d in devices}


def build_replay(engine: Engine, projector: Projector, t0: datetime, t1: datetime,
                 who: str = "everyone", value=None,
                 stop_min_s: float = DEFAULT_STOP_MIN_S) -> ReplayData:
    """Read and prepare a replay (blocking: call it on a pool thread)."""
    from db.field import load_replay, roster

    if t1 <= t0:
        raise BadInput("回放的结束时间须晚于开始时间。",
                       "The replay's end must be after its start.")
    rows = resolve_who(roster(engine), who, value)
    devices = sorted({int(r["device_id"]) for r in rows})
    tracks, cases, log_cols, marks = load_replay(
        engine, t0, t1, None if who == "everyone" else devices)
    x, y = (projector.forward(tracks.lon, tracks.lat) if len(tracks)
            else (np.zeros(0), np.zeros(0)))
    cx, cy = (projector.forward(cases.lon, cases.lat) if cases.lon is not None
              and cases.lon.size else (np.zeros(0), np.zeros(0)))
    number_of = dict(zip(np.asarray(log_cols["case_id"]).tolist(),
                         np.asarray(log_cols["number"]).tolist(), strict=True))
    numbers = np.array([number_of.get(int(c), "") for c in cases.case_id.tolist()], object)
    a, b = t0.timestamp(), t1.timestamp()
    shown = np.intersect1d(np.asarray(devices, np.int64), tracks.devices) if devices \
        else np.zeros(0, np.int64)
    chosen = {int(r["device_id"]) for r in rows}
    marks = [m for m in marks if "device_id" not in m or int(m["device_id"]) in chosen]
    return ReplayData(a, b, tracks, x, y, cases, cx, cy, numbers, marks, shown,
                      {int(r["device_id"]): r for r in rows},
                      trip_totals(tracks, shown, a, b, stop_min_s), stop_min_s, (who, value),
                      TripProgress(tracks, a, b))


def write_gpx(path: str, name: str, t, lon, lat) -> str:
    """Write one worker's trail as GPX 1.1 (a pool thread's work); returns the path."""
    from maps.replay import gpx

    target = Path(path).expanduser()
    target.write_text(gpx(name, t, lon, lat), encoding="utf-8")
    return str(target)


class ReplayStore(QObject):
    """Loads replays off the GUI thread; ``loaded(ReplayData)``, ``failed(exc)``."""

    loaded = Signal(object)
    failed = Signal(object)
    totals_changed = Signal()

    def __init__(self, engine: Engine, projector: Projector, parent: QObject | None = None):
        super().__init__(parent)
        self.engine = engine
        self.projector = projector
        self.data: ReplayData | None = None
        self.loading = False
        self._generation = 0

    def load(self, t0: datetime, t1: datetime, who: str = "everyone", value=None,
             stop_min_s: float = DEFAULT_STOP_MIN_S) -> None:
        self._generation += 1
        generation, engine, projector = self._generation, self.engine, self.projector
        self.loading = True

        def done(data: ReplayData) -> None:
            if generation != self._generation:
                return
            self.loading = False
            self.data = data
            self.loaded.emit(data)

        def failed(exc: Exception) -> None:
            if generation == self._generation:
                self.loading = False
                self.failed.emit(exc)

        run_in_thread(lambda: build_replay(engine, projector, t0, t1, who, value, stop_min_s),
                      done, failed, context=self)

    def set_stop_min(self, stop_min_s: float) -> None:
        """Work the stops out again for another dwell threshold (off the GUI thread)."""
        data = self.data
        if data is None or stop_min_s == data.stop_min_s:
            return

        def done(totals: dict) -> None:
            if self.data is data:
                data.totals, data.stop_min_s = totals, stop_min_s
                self.totals_changed.emit()

        run_in_thread(lambda: trip_totals(data.tracks, data.devices, data.t0, data.t1,
                                          stop_min_s), done,
                      lambda exc: self.failed.emit(exc), context=self)


class ReplayClock(QObject):
    """The replay's T within [t0, t1]; ``moved(float)`` whenever it changes.

    ``monotonic`` is the clock elapsed time is read from (``time.monotonic``).
    """

    moved = Signal(float)
    state_changed = Signal()

    def __init__(self, parent: QObject | None = None, monotonic=time.monotonic,
                 interval_ms: int = TICK_MS):
        super().__init__(parent)
        self.monotonic = monotonic
        self.t0 = self.t1 = self.t = 0.0
        self.speed = 1.0
        self.playing = False
        self._last = 0.0
        self._timer = QTimer(self, interval=interval_ms)
        self._timer.timeout.connect(self.tick)

    def set_window(self, t0: float, t1: float, at: float | None = None) -> None:
        self.t0, self.t1 = float(t0), float(t1)
        self.seek(self.t0 if at is None else at)

    def seek(self, when: float) -> None:
        self.t = min(max(float(when), self.t0), self.t1)
        self.moved.emit(self.t)

    def step(self, seconds: float) -> None:
        self.seek(self.t + seconds)

    def set_speed(self, speed: float) -> None:
        self.speed = float(speed)
        self.state_changed.emit()

    def play(self) -> None:
        if self.t >= self.t1:
            self.seek(self.t0)
        self.playing = True
        self._last = self.monotonic()
        self._timer.start()
        self.state_changed.emit()

    def pause(self) -> None:
        self.playing = False
        self._timer.stop()
        self.state_changed.emit()

    def tick(self) -> None:
        """Advance by speed × the time elapsed since the last tick; stop at the end."""
        if not self.playing:
            return
        now = self.monotonic()
        elapsed, self._last = now - self._last, now
        self.seek(self.t + self.speed * elapsed)
        if self.t >= self.t1:
            self.pause()
