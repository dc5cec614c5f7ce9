"""Trails without Qt: where workers went in the last minutes, as segments by age level.

The live map draws the last ``window_s`` (30 minutes by default) of every worker, or only
the selected ones, fading with age.  Drawing one item per worker would cost a scene item
and a paint call each (590 workers: 590 items); instead the segments between consecutive
fixes are sorted into a few age levels (``LEVELS``), and one visual draws one path per
level with one pen each (``widgets.map.trail_item``): the number of graphics items does
not grow with the number of workers.

:class:`TrailLayer` is the live model: new fixes are appended (the positions store hands
in whole arrays), fixes older than the window are trimmed, ordering by (device, time) is
done lazily once per drawing.  :func:`segments_by_level` is the one routine both the
live layer and the replay (``maps.replay``, trails up to T) use to cut a set of tracks
into levels.
"""

from __future__ import annotations

import numpy as np

from maps.layers import Event

LEVELS = 4  # age levels: the newest quarter of the window is drawn most opaque
DEFAULT_WINDOW_S = 1800.0  # the last 30 minutes
MAX_GAP_S = 600.0  # two fixes further apart are not joined (the terminal was silent)


def segments_by_level(device: np.ndarray, t: np.ndarray, x: np.ndarray, y: np.ndarray,
                      now: float, window_s: float, levels: int = LEVELS,
                      max_gap_s: float = MAX_GAP_S) -> list[np.ndarray]:
    """The segments between consecutive fixes of each device, by the age of their newer end.

    ``device``/``t``/``x``/``y`` sorted by (device, t).  A segment whose newer fix is
    ``age`` seconds before ``now`` lies in level ``floor(age / window_s · levels)``
    (level 0 the newest); segments older than the window, joining two devices, across
    a silence longer than ``max_gap_s`` or ending after ``now`` are left out.  Returns,
    per level, an (n, 4) array of x0, y0, x1, y1.
    """
    n = t.size
    empty = [np.zeros((0, 4)) for _ in range(levels)]
    if n < 2:
        return empty
    same = device[1:] == device[:-1]
    gap = t[1:] - t[:-1]
    age = now - t[1:]
    ok = same & (gap <= max_gap_s) & (age >= 0) & (t[:-1] >= now - window_s)
    ok &= np.isfinite(x[1:]) & np.isfinite(x[:-1])
    idx = np.flatnonzero(ok)
    if not idx.size:
        return empty
    level = np.minimum((age[idx] / max(window_s, 1e-9) * levels).astype(np.int8), levels - 1)
    # One pass per level over the small level array (no sort of the segments): each
    # level's rows in their (device, time) order, gathered straight into its (n, 4).
    out = []
    for k in range(levels):
        rows = idx[level == k]
        seg = np.empty((rows.size, 4))
        seg[:, 0], seg[:, 1] = x[rows], y[rows]
        seg[:, 2], seg[:, 3] = x[rows + 1], y[rows + 1]
        out.append(seg)
    return out


class TrailLayer:
    """The recent fixes of the field force, by device (canvas metres), trimmed by age.

    ``selected`` None shows every worker; an array of device ids only those.
    Events: ``changed()`` (fixes added or trimmed, or the selection changed),
    ``style_changed()`` (visibility).  ``version`` counts the changes.
    """

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, levels: int = LEVELS):
        self.window_s = float(window_s)
        self.levels = int(levels)
        self.visible = True
        self.selected: np.ndarray | None = None
        self.device = np.zeros(0, np.int64)
        self.t = np.zeros(0)
        self.x = np.zeros(0)
        self.y = np.zeros(0)
        self.now = 0.0
        self.version = 0
        self._sorted = True
        self.changed = Event()
        self.style_changed = Event()

    def __len__(self) -> int:
        return int(self.t.size)

    def replace(self, device, t, x, y, now: float | None = None) -> None:
        """Hold exactly these fixes (the history read when the map opens)."""
        self.device = np.asarray(device, np.int64)
        self.t = np.asarray(t, np.float64)
        self.x = np.asarray(x, np.float64)
        self.y = np.asarray(y, np.float64)
        self._sorted = False
        if now is not None:
            self.now = float(now)
        self._trim()
        self._changed()

    def append(self, device, t, x, y, now: float | None = None) -> None:
        """New fixes (whole arrays); a fix already held (same device and time) is skipped."""
        device = np.asarray(device, np.int64)
        if not device.size:
            return
        t = np.asarray(t, np.float64)
        self.device = np.concatenate([self.device, device])
        self.t = np.concatenate([self.t, t])
        self.x = np.concatenate([self.x, np.asarray(x, np.float64)])
        self.y = np.concatenate([self.y, np.asarray(y, np.float64)])
        self._sorted = False
        self.now = max(self.now, float(now if now is not None else t.max()))
        self._trim()
        self._changed()

    def set_positions(self, x, y) -> None:
        """The same fixes in another projection (the basemap's datum changed)."""
        self.x, self.y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        self._changed()

    def set_now(self, now: float) -> None:
        """The clock moved: fixes age (levels shift) and those out of the window go."""
        self.now = float(now)
        self._trim()
        self._changed()

    def set_window(self, window_s: float) -> None:
        if window_s != self.window_s:
            self.window_s = float(window_s)
            self._trim()
            self._changed()

    def set_selected(self, device_ids) -> None:
        self.selected = None if device_ids is None else np.unique(
            np.asarray(list(device_ids), np.int64))
        self._changed()

    def set_visible(self, visible: bool) -> None:
        if visible != self.visible:
            self.visible = bool(visible)
            self.style_changed.emit()

    def devices(self) -> np.ndarray:
        return np.unique(self.device)

    def segments(self) -> list[np.ndarray]:
        """Per age level, the (n, 4) segments to draw (see :func:`segments_by_level`)."""
        self._sort()
        d, t, x, y = self.device, self.t, self.x, self.y
        if self.selected is not None:
            keep = np.isin(d, self.selected)
            d, t, x, y = d[keep], t[keep], x[keep], y[keep]
        return segments_by_level(d, t, x, y, self.now, self.window_s, self.levels)

    # -- inside ----------------------------------------------------------------------

    def _sort(self) -> None:
        if self._sorted:
            return
        order = np.lexsort((self.t, self.device))
        d, t = self.device[order], self.t[order]
        # A fix delivered twice (the history read overlapping the first live read) once.
        dup = np.zeros(t.size, bool)
        if t.size > 1:
            dup[1:] = (d[1:] == d[:-1]) & (t[1:] == t[:-1])
        keep = order[~dup]
        self.device, self.t = self.device[keep], self.t[keep]
        self.x, self.y = self.x[keep], self.y[keep]
        self._sorted = True

    def _trim(self) -> None:
        if not self.t.size:
            return
        keep = self.t >= self.now - self.window_s
        if not keep.all():
            self.device, self.t = self.device[keep], self.t[keep]
            self.x, self.y = self.x[keep], self.y[keep]

    def _changed(self) -> None:
        self.version += 1
        self.changed.emit()


class ReplayTrail:
    """Trails up to the replay's T: the last ``span_s`` of every worker shown, by age level,
    and the whole window up to T of one worker (``device_segments``, the followed one).

    ``tracks`` is a ``maps.replay.TrackReplay``; ``x``/``y`` its fixes in canvas metres.
    The fixes of each device up to T are found with two ``searchsorted`` over the model's
    combined (device, time) key for all devices at once, so a frame costs the same few
    numpy calls for 5 workers or 590.  Events as :class:`TrailLayer`.
    """

    def __init__(self, tracks, x, y, span_s: float = DEFAULT_WINDOW_S, levels: int = LEVELS,
                 max_gap_s: float = MAX_GAP_S):
        self.tracks = tracks
        self.x = np.asarray(x, np.float64)
        self.y = np.asarray(y, np.float64)
        self.span_s = float(span_s)
        self.levels = int(levels)
        self.max_gap_s = float(max_gap_s)
        self.window_start = tracks.t_min
        self.devices: np.ndarray | None = None  # None: every device of the model
        self.now = tracks.t_min
        self.visible = True
        self.version = 0
        self.changed = Event()
        self.style_changed = Event()

    def set_time(self, when: float) -> None:
        self.now = float(when)
        self.version += 1
        self.changed.emit()

    def set_devices(self, devices) -> None:
        self.devices = None if devices is None else np.asarray(devices, np.int64)
        self.version += 1
        self.changed.emit()

    def set_span(self, span_s: float) -> None:
        self.span_s = float(span_s)
        self.version += 1
        self.changed.emit()

    def set_visible(self, visible: bool) -> None:
        if visible != self.visible:
            self.visible = bool(visible)
            self.style_changed.emit()

    def indexes(self, start: float, end: float, devices=None) -> np.ndarray:
        """Indexes (into the model's columns) of the fixes with ``start <= t <= end`` of
        ``devices`` (all when None), grouped by device in time order."""
        from maps.replay import _SHIFT, _us  # the model's own key, not a copy of it

        tr = self.tracks
        ranks = np.arange(tr.devices.size, dtype=np.int64)
        if devices is not None:
            ranks = np.flatnonzero(np.isin(tr.devices, np.asarray(devices, np.int64)))
        if not ranks.size or end < tr.t_min:
            return np.zeros(0, np.int64)
        lo = np.searchsorted(tr._key, ranks * _SHIFT + _us(max(start, tr.t_min), tr.t_min))
        if start <= tr.t_min:
            lo = tr.starts[ranks]
        hi = np.searchsorted(tr._key, ranks * _SHIFT + _us(end, tr.t_min), side="right")
        counts = np.maximum(hi - lo, 0)
        total = int(counts.sum())
        if not total:
            return np.zeros(0, np.int64)
        # The ranges lo[k]…hi[k] one after another, without a loop over devices.
        offsets = np.repeat(lo - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
        return np.arange(total, dtype=np.int64) + offsets

    def segments(self) -> list[np.ndarray]:
        idx = self.indexes(self.now - self.span_s, self.now, self.devices)
        tr = self.tracks
        return segments_by_level(tr.device[idx], tr.t[idx], self.x[idx], self.y[idx], self.now,
                                 self.span_s, self.levels, self.max_gap_s)

    def device_segments(self, device: int) -> np.ndarray:
        """The whole trail of ``device`` from the window's start up to T, as (n, 4)."""
        idx = self.indexes(self.window_start, self.now, [device])
        tr = self.tracks
        span = max(self.now - self.window_start, 1.0) + 1.0
        levels = segments_by_level(tr.device[idx], tr.t[idx], self.x[idx], self.y[idx],
                                   self.now, span, 1, self.max_gap_s)
        return levels[0]
