"""Trail replay without Qt and SQL: "everyone at time T", trails, stops, trip totals, GPX.

A window's fixes are held as numpy columns sorted by device then time (``db.field``
loads them by binary COPY), so a frame of the replay is one ``searchsorted`` over every
device at once instead of one query per worker: the newest fix at or before T is found
by searching the combined key ``device rank · 2⁴⁴ + microseconds since the window's
start``, and a fix older than ``stale_s`` at T shows nobody (the terminal was silent;
the board calls it offline).

Cases are rebuilt the same way from their log: each entry's ``to_status`` holds from its
time until the next entry, so the status at T is that of the newest entry at or before
T, and a case is open at T when that status is not final.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape

import numpy as np

from maps.coords import haversine_m

FINAL_STATUSES = ("closed", "archived", "rejected", "merged")
DEFAULT_STALE_S = 600.0  # as the board's offline (console.worker_status): 10 minutes
_SHIFT = np.int64(1) << np.int64(44)  # 2⁴⁴ µs ≈ 203 days after the model's base time
_SPAN_S = float(_SHIFT - 1) / 1e6


def _us(t, base: float) -> np.ndarray:
    """Microseconds since ``base``, clamped into one key's span (earlier: "before")."""
    rel = np.clip(np.asarray(t, np.float64) - base, 0.0, _SPAN_S)
    return np.round(rel * 1e6).astype(np.int64)


@dataclass
class Frame:
    """Who was where at T: device ids and their fix (index into the model's columns)."""

    device: np.ndarray
    index: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    age_s: np.ndarray


class TrackReplay:
    """Fixes of a window, sorted by (device, t); ``t`` in epoch seconds."""

    def __init__(self, device, t, lon, lat, speed=None, course=None,
                 stale_s: float = DEFAULT_STALE_S):
        self.device = np.asarray(device, np.int64)
        self.t = np.asarray(t, np.float64)
        self.lon = np.asarray(lon, np.float64)
        self.lat = np.asarray(lat, np.float64)
        n = self.t.size
        self.speed = (np.asarray(speed, np.float64) if speed is not None
                      else np.full(n, np.nan))
        self.course = (np.asarray(course, np.float64) if course is not None
                       else np.full(n, np.nan))
        self.stale_s = float(stale_s)
        if n and np.any((self.device[1:] < self.device[:-1])
                        | ((self.device[1:] == self.device[:-1]) & (self.t[1:] < self.t[:-1]))):
            order = np.lexsort((self.t, self.device))
            for name in ("device", "t", "lon", "lat", "speed", "course"):
                setattr(self, name, getattr(self, name)[order])
        self.devices, self.starts = np.unique(self.device, return_index=True)
        self.ends = np.append(self.starts[1:], n)
        rank = np.repeat(np.arange(self.devices.size, dtype=np.int64), self.ends - self.starts)
        self.t_min = float(self.t.min()) if n else 0.0
        self._key = rank * _SHIFT + _us(self.t, self.t_min)
        self.t_max = float(self.t.max()) if n else 0.0

    def __len__(self) -> int:
        return int(self.t.size)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.device, self.t, self.lon, self.lat, self.speed,
                                      self.course, self._key))

    def at(self, when: float, devices=None) -> Frame:
        """The newest fix at or before ``when`` of each device, if at most ``stale_s`` old."""
        ranks = np.arange(self.devices.size, dtype=np.int64)
        if devices is not None:
            ranks = np.flatnonzero(np.isin(self.devices, np.asarray(devices, np.int64)))
        if when < self.t_min:
            ranks = ranks[:0]
        q = ranks * _SHIFT + _us(when, self.t_min)
        idx = np.searchsorted(self._key, q, side="right") - 1
        ok = idx >= self.starts[ranks]
        idx, ranks = idx[ok], ranks[ok]
        age = when - self.t[idx]
        fresh = age <= self.stale_s
        idx, ranks, age = idx[fresh], ranks[fresh], age[fresh]
        return Frame(self.devices[ranks], idx, self.lon[idx], self.lat[idx], age)

    def segment(self, device: int) -> slice:
        k = int(np.searchsorted(self.devices, device))
        if k >= self.devices.size or self.devices[k] != device:
            return slice(0, 0)
        return slice(int(self.starts[k]), int(self.ends[k]))

    def trail(self, device: int, t0: float, t1: float) -> slice:
        """The fixes of ``device`` with ``t0 <= t <= t1`` (a slice of the columns)."""
        seg = self.segment(device)
        ts = self.t[seg]
        a = int(np.searchsorted(ts, t0, side="left"))
        b = int(np.searchsorted(ts, t1, side="right"))
        return slice(seg.start + a, seg.start + b)

    def trip(self, device: int, t0: float, t1: float, moving_kmh: float = 1.0,
             max_gap_s: float = 300.0, stop_min_s: float = 300.0) -> dict:
        """Distance, moving and stopped time, maximum and average speed, and the stops.

        Between two fixes at most ``max_gap_s`` apart the worker moved the straight line
        (a longer gap is a hole: no distance, no time); an interval is stopped when its
        speed (reported, or the distance over the time) is below ``moving_kmh``; a stop is
        a run of stopped intervals lasting ``stop_min_s`` or more.
        """
        sl = self.trail(device, t0, t1)
        t, lon, lat = self.t[sl], self.lon[sl], self.lat[sl]
        out = {"distance_m": 0.0, "moving_s": 0.0, "stopped_s": 0.0, "max_kmh": 0.0,
               "avg_kmh": None, "stops": []}
        if t.size < 2:
            return out
        gap = np.diff(t)
        dist = haversine_m(lon[:-1], lat[:-1], lon[1:], lat[1:])
        ok = (gap > 0) & (gap <= max_gap_s)
        rep = self.speed[sl][:-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            derived = np.where(gap > 0, dist / gap * 3.6, 0.0)
        speed = np.where(np.isfinite(rep), rep, derived)
        moving = ok & (speed >= moving_kmh)
        stopped = ok & ~moving
        out["distance_m"] = float(dist[ok].sum())
        out["moving_s"] = float(gap[moving].sum())
        out["stopped_s"] = float(gap[stopped].sum())
        out["max_kmh"] = float(speed[ok].max()) if ok.any() else 0.0
        if out["moving_s"] > 0:
            out["avg_kmh"] = float(dist[moving].sum() / out["moving_s"] * 3.6)
        # Stops: runs of stopped intervals.
        edges = np.diff(np.concatenate(([0], stopped.astype(np.int8), [0])))
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            start, end = float(t[a]), float(t[b])
            if end - start >= stop_min_s:
                out["stops"].append({"start": start, "end": end, "seconds": end - start,
                                     "lon": float(lon[a]), "lat": float(lat[a])})
        return out


class TripProgress:
    """Every device's trip totals up to any T of a window, for all devices at once.

    What ``TrackReplay.trip(device, t0, T)`` answers (distance, moving and stopped time,
    maximum and average speed over the fixes of [t0, T]) for every device, from running
    sums worked out once per window: each interval between two consecutive fixes of a
    device inside the window counts, by the same rules as ``trip``, at its later fix, so
    the totals up to T are the sums at each device's newest fix at or before T minus those
    at its first fix of the window — one ``searchsorted`` per frame, not a trip per worker.
    """

    def __init__(self, tracks: TrackReplay, t0: float, t1: float, moving_kmh: float = 1.0,
                 max_gap_s: float = 300.0):
        self.tracks, self.t0, self.t1 = tracks, float(t0), float(t1)
        t, n = tracks.t, len(tracks)
        inside = (t >= t0) & (t <= t1)
        dist = np.zeros(n)
        moving = np.zeros(n)
        stopped = np.zeros(n)
        moving_dist = np.zeros(n)
        top = np.zeros(n)
        if n > 1:
            gap = np.diff(t)
            ok = ((tracks.device[1:] == tracks.device[:-1]) & inside[1:] & inside[:-1]
                  & (gap > 0) & (gap <= max_gap_s))
            d = haversine_m(tracks.lon[:-1], tracks.lat[:-1], tracks.lon[1:], tracks.lat[1:])
            rep = tracks.speed[:-1]
            with np.errstate(divide="ignore", invalid="ignore"):
                derived = np.where(gap > 0, d / gap * 3.6, 0.0)
            speed = np.where(np.isfinite(rep), rep, derived)
            go = ok & (speed >= moving_kmh)
            dist[1:] = np.where(ok, d, 0.0)
            moving[1:] = np.where(go, gap, 0.0)
            stopped[1:] = np.where(ok & ~go, gap, 0.0)
            moving_dist[1:] = np.where(go, d, 0.0)
            top[1:] = np.where(ok, speed, 0.0)
        self._sums = {k: np.cumsum(v) for k, v in (("distance_m", dist), ("moving_s", moving),
                                                    ("stopped_s", stopped),
                                                    ("moving_m", moving_dist))}
        # The running maximum within each device: ranks lift every device above the last.
        rank = np.repeat(np.arange(tracks.devices.size), tracks.ends - tracks.starts)
        lift = rank * (float(np.nanmax(top, initial=0.0)) + 1.0)
        self._top = np.maximum.accumulate(top + lift) - lift if n else top
        self._first = np.searchsorted(tracks._key, np.arange(tracks.devices.size, dtype=np.int64)
                                      * _SHIFT + _us(t0, tracks.t_min)) if n else \
            np.zeros(0, np.int64)

    def at(self, when: float) -> dict[str, np.ndarray]:
        """Per device of ``tracks.devices``: distance_m, moving_s, stopped_s, max_kmh and
        avg_kmh (NaN without moving time) over [t0, min(T, t1)]."""
        tr = self.tracks
        k = tr.devices.size
        when = min(float(when), self.t1)
        if not k:
            return {c: np.zeros(0) for c in ("distance_m", "moving_s", "stopped_s", "max_kmh",
                                             "avg_kmh")}
        ranks = np.arange(k, dtype=np.int64)
        last = np.searchsorted(tr._key, ranks * _SHIFT + _us(when, tr.t_min), side="right") - 1
        some = (last >= self._first) & (last >= tr.starts) & (when >= self.t0) & (
            when >= tr.t_min)
        last = np.where(some, last, self._first)
        first = np.minimum(self._first, len(tr) - 1)
        last = np.clip(last, 0, len(tr) - 1)
        out = {c: np.where(some, s[last] - s[first], 0.0) for c, s in self._sums.items()}
        out["max_kmh"] = np.where(some, self._top[last], 0.0)
        moving_m = out.pop("moving_m")
        with np.errstate(divide="ignore", invalid="ignore"):
            out["avg_kmh"] = np.where(out["moving_s"] > 0, moving_m / out["moving_s"] * 3.6,
                                      np.nan)
        return out


class CaseReplay:
    """The cases' statuses through a window, from their log entries."""

    def __init__(self, case_id, at, to_status, lon=None, lat=None, seq=None):
        case_id = np.asarray(case_id, np.int64)
        at = np.asarray(at, np.float64)
        seq = np.asarray(seq if seq is not None else np.arange(case_id.size), np.int64)
        order = np.lexsort((seq, at, case_id))
        self.case_id, self.at = case_id[order], at[order]
        self.status = np.asarray(to_status, object)[order]
        self.lon = np.asarray(lon, np.float64)[order] if lon is not None else None
        self.lat = np.asarray(lat, np.float64)[order] if lat is not None else None
        self.cases, self.starts = np.unique(self.case_id, return_index=True)
        rank = np.repeat(np.arange(self.cases.size, dtype=np.int64),
                         np.diff(np.append(self.starts, self.case_id.size)))
        # Entries long before the window are clamped to "before" (their order kept by seq).
        self.base = max(float(self.at.min()), float(self.at.max()) - _SPAN_S / 2) \
            if self.at.size else 0.0
        self._key = rank * _SHIFT + _us(self.at, self.base)
        self._final = np.isin(self.status, FINAL_STATUSES)

    def _q(self, when: float) -> np.int64:
        """The key offset of ``when``; before the base nothing is known (-1 finds nothing)."""
        if when < self.base:
            return np.int64(-1)
        return _us(when, self.base)

    def at_time(self, when: float, open_only: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Case ids and their statuses at ``when`` (the open ones unless ``open_only`` off)."""
        ranks = np.arange(self.cases.size, dtype=np.int64)
        idx = np.searchsorted(self._key, ranks * _SHIFT + self._q(when), side="right") - 1
        ok = idx >= self.starts
        idx, ranks = idx[ok], ranks[ok]
        if open_only:
            keep = ~self._final[idx]
            idx, ranks = idx[keep], ranks[keep]
        return self.cases[ranks], self.status[idx]

    def index_at(self, when: float) -> np.ndarray:
        """Indexes (into the entries) of the open cases' current entries at ``when``."""
        ranks = np.arange(self.cases.size, dtype=np.int64)
        idx = np.searchsorted(self._key, ranks * _SHIFT + self._q(when), side="right") - 1
        idx = idx[idx >= self.starts]
        return idx[~self._final[idx]]


def gpx(name: str, t, lon, lat) -> str:
    """A GPX 1.1 track of one worker (times in UTC)."""
    pts = "\n".join(
        f'      <trkpt lat="{la:.7f}" lon="{lo:.7f}"><time>'
        f'{datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}</time></trkpt>'
        for ts, lo, la in zip(np.asarray(t).tolist(), np.asarray(lon).tolist(),
                              np.asarray(lat).tolist(), strict=True))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<gpx version="1.1" creator="Grid Command Console" '
            'xmlns="http://www.topografix.com/GPX/1/1">\n'
            f"  <trk><name>{escape(name)}</name>\n    <trkseg>\n{pts}\n    </trkseg>\n  </trk>\n"
            "</gpx>\n")
