"""The map's replay mode: everyone at T, trails up to T, stops, totals, in place of live.

Entered from the map's 回放 button (``MapWidget.set_replay``).  The live layers' items
are hidden and the replay's own take their place on the same canvas: workers at T in
the workers' raster item (``WorkerItem`` over a layer of the replay's), the cases open
at T with their status at T in the case scatter (``CaseItems``), the last minutes of
everyone's trail by age and the whole trail of the selected worker (``TrailItem`` over a
``maps.trails.ReplayTrail``), the stops (``StopItem``).  A frame is numpy on what
``console.replay_store.ReplayStore`` loaded off the GUI thread: one ``searchsorted``
for everyone's position (``TrackReplay.at``), one for the cases (``CaseReplay``); the
layers' changes only schedule repaints.  Leaving returns to live exactly as it was.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QLabel

from console.i18n import tr
from console.map_stores import STALE_S
from console.replay_store import STEP_S, ReplayClock, ReplayStore, write_gpx
from db.clock import hall_timezone
from maps.layers import CASE_STATUS_CODE, WORKER_STALE, WORKER_STATUS_CODE, PointLayer
from maps.replay import TrackReplay
from maps.trails import DEFAULT_WINDOW_S, ReplayTrail
from widgets.map import style
from widgets.map.point_items import CaseItems, WorkerItem
from widgets.map.replay_items import StopItem, duration_text
from widgets.map.replay_panel import ReplayBar, ReplaySide
from widgets.map.trail_item import TrailItem

HIT_PX = 9.0
MOVING_KMH = 1.0
PATROLLING = WORKER_STATUS_CODE["patrolling"]
ON_DUTY = WORKER_STATUS_CODE["on_duty"]


def _empty_tracks() -> TrackReplay:
    z = np.zeros(0)
    return TrackReplay(z.astype(np.int64), z, z, z)


class ReplayMode(QObject):
    """The replay of one map.  ``frame_shown(float T)`` after each frame is applied;
    ``gpx_written(str)`` / ``gpx_failed(str)``; ``loaded()`` after a window arrives."""

    frame_shown = Signal(float)
    loaded = Signal()
    gpx_written = Signal(str)
    gpx_failed = Signal(str)

    def __init__(self, live_map):
        super().__init__(live_map)
        self.map = live_map
        canvas = live_map.canvas
        self.canvas = canvas
        d = live_map.data
        self.store = ReplayStore(d.engine, d.projector, self)
        self.clock = ReplayClock(self)
        self.data = None
        self.active = False
        self.selected: int | None = None
        self.following = True
        self.pending_at: float | None = None
        self.error: str | None = None
        self._live_visible: dict[str, bool] = {}
        self._case_idx: np.ndarray | None = None
        self._names = np.array([""], dtype=object)
        self.worker_layer = PointLayer("replay_workers", tr("网格员（回放）"))
        self.case_layer = PointLayer("replay_cases", tr("案件（回放）"))
        self.trail = ReplayTrail(_empty_tracks(), np.zeros(0), np.zeros(0))
        self.workers = WorkerItem(canvas, self.worker_layer)
        self.cases = CaseItems(canvas, self.case_layer)
        self.trails = TrailItem(self.trail, z=46.0)
        self.stops = StopItem()
        self.items = [self.trails, self.workers, *self.cases.items(), self.stops]
        for item in self.items:
            item.setVisible(False)
            canvas.vb.addItem(item, ignoreBounds=True)
        self.side = ReplaySide()
        self.bar = ReplayBar()
        self.side.hide()
        self.bar.hide()
        self.info = QLabel(canvas)
        self.info.setObjectName("replayInfo")
        self.info.setStyleSheet("background: rgba(12,16,24,215); color: #e8eef8; "
                                "padding: 6px; border-radius: 4px;")
        self.info.hide()
        self.dialog: QFileDialog | None = None
        self._wire()

    def _wire(self) -> None:
        self.store.loaded.connect(self._on_loaded)
        self.store.failed.connect(self._on_failed)
        self.store.totals_changed.connect(self._on_totals)
        self.clock.moved.connect(self.show_frame)
        self.clock.state_changed.connect(lambda: self.bar.set_playing(self.clock.playing))
        self.side.load_asked.connect(self.load)
        self.side.stop_min.connect(self.store.set_stop_min)
        self.side.worker_chosen.connect(self.select)
        self.bar.play_toggled.connect(self.toggle_play)
        self.bar.step.connect(self.step)
        self.bar.speed.connect(self.clock.set_speed)
        self.bar.follow.connect(self.set_following)
        self.bar.export_gpx.connect(self.ask_gpx)
        self.bar.leave.connect(lambda: self.map.set_replay(False))
        self.bar.timeline.scrubbed.connect(self.clock.seek)
        self.canvas.user_moved.connect(self._user_moved)
        self.map.panel.trail_minutes.connect(lambda _m: self.trail.set_span(self.trail_span_s()))

    def trail_span_s(self) -> float:
        """Everyone's trail behind T is as long as the live trails' (the layer panel's
        minutes), so the replay looks like live did at T."""
        spin = getattr(self.map.panel, "trail_spin", None)
        return spin.value() * 60.0 if spin is not None else DEFAULT_WINDOW_S

    # -- entering and leaving -----------------------------------------------------------

    def enter(self, t0: datetime | None = None, t1: datetime | None = None,
              at: datetime | None = None, who: str = "everyone", value=None) -> None:
        """Show the replay instead of live; load a window (default: today so far)."""
        m = self.map
        if not self.active:
            self.active = True
            self._live_visible = {k: m.layer_visible(k) for k in ("cases", "workers", "trails")}
            for key in self._live_visible:
                for item in m._items_of(key):
                    item.setVisible(False)
            m.overlay.setVisible(False)
            m.card.hide()
            for item in self.items:
                item.setVisible(True)
            self.side.show()
            self.bar.show()
        if t0 is None and self.data is not None:
            return  # the window loaded before, as it was left
        if t0 is None:
            t0, t1 = today_window()
        t1 = t1 or datetime.now(hall_timezone())
        self.side.set_window(t0, t1)
        self.pending_at = at.timestamp() if at is not None else None
        self.load(t0, t1, who, value, self.side.stop_spin.value() * 60.0)

    def leave(self) -> None:
        """Back to live: the live layers as they were, the replay's hidden (kept loaded)."""
        if not self.active:
            return
        self.active = False
        self.clock.pause()
        for item in self.items:
            item.setVisible(False)
        m = self.map
        for key, visible in self._live_visible.items():
            for item in m._items_of(key):
                item.setVisible(visible)
        m.overlay.setVisible(True)
        self.side.hide()
        self.bar.hide()
        self.info.hide()

    # -- loading -------------------------------------------------------------------------

    def load(self, t0: datetime, t1: datetime, who: str = "everyone", value=None,
             stop_min_s: float = 300.0) -> None:
        self.error = None
        self.clock.pause()
        self.side.status.setText(tr("正在加载回放…"))
        self.side.load_button.setEnabled(False)
        self.store.load(t0, t1, who, value, stop_min_s)

    @property
    def loading(self) -> bool:
        return self.store.loading

    def _on_failed(self, exc: Exception) -> None:
        from db.errors import GridError

        text = exc.message(self.map.lang) if isinstance(exc, GridError) else str(exc)
        self.error = text
        self.side.load_button.setEnabled(True)
        self.side.status.setText(f"{tr('回放加载失败')}：{text}")

    def _on_loaded(self, data) -> None:
        self.data = data
        self.side.load_button.setEnabled(True)
        self.side.status.setText(
            f"{len(data.devices)} {tr('名网格员')}，{len(data.tracks)} {tr('个定位')}，"
            f"{len(data.marks)} {tr('个事件')}")
        trail = ReplayTrail(data.tracks, data.x, data.y, self.trail_span_s())
        trail.window_start = data.t0
        trail.set_devices(data.devices)
        self.trail = trail
        self.trails.set_model(trail)
        # Each device's name by its rank in the tracks, once (a frame indexes it).
        self._names = np.array([data.meta.get(int(d), {}).get("name") or "" for d in
                                data.tracks.devices.tolist()] + [""], dtype=object)
        self._case_idx = None
        if self.selected is not None and self.selected not in data.meta:
            self.selected = None
        self.stops.set_focus(self.selected)
        self._on_totals()
        self.bar.timeline.set_window(data.t0, data.t1, data.marks)
        at = self.pending_at if self.pending_at is not None else data.t1
        self.pending_at = None
        self.clock.set_window(data.t0, data.t1, at)
        if self.selected is None and len(data.devices):
            self.bar.gpx_button.setEnabled(False)
        self.loaded.emit()

    def _on_totals(self) -> None:
        data = self.data
        if data is None:
            return
        self.side.show_totals(data)
        self.side.select_device(self.selected)
        dev, start, end, lon, lat = [], [], [], [], []
        for device, trip in data.totals.items():
            for s in trip["stops"]:
                dev.append(device)
                start.append(s["start"])
                end.append(s["end"])
                lon.append(s["lon"])
                lat.append(s["lat"])
        x, y = (self.map.data.projector.forward(np.array(lon), np.array(lat)) if dev
                else (np.zeros(0), np.zeros(0)))
        self.stops.set_stops(dev, x, y, start, end, data.stop_min_s)

    # -- a frame -------------------------------------------------------------------------

    def show_frame(self, when: float) -> None:
        """Everyone at T, the cases open at T, trails and stops up to T."""
        data = self.data
        if data is None:
            return
        frame = data.tracks.at(when, data.devices)
        idx = frame.index
        speed = data.tracks.speed[idx]
        moving = np.isfinite(speed) & (speed >= MOVING_KMH)
        status = np.where(moving, PATROLLING, ON_DUTY).astype(np.int16)
        flags = np.where(frame.age_s > STALE_S, WORKER_STALE, 0).astype(np.uint16)
        names = self._names[np.searchsorted(data.tracks.devices, frame.device)]
        self.worker_layer.replace(frame.device, x=data.x[idx], y=data.y[idx], status=status,
                                  flags=flags, heading=data.tracks.course[idx].astype(
                                      np.float32), labels=names)
        cidx = data.cases.index_at(when)
        if self._case_idx is None or not np.array_equal(cidx, self._case_idx):
            self._case_idx = cidx
            codes = np.array([CASE_STATUS_CODE.get(s, 0) for s in data.cases.status[cidx]],
                             np.int16)
            self.case_layer.replace(data.cases.case_id[cidx], x=data.case_x[cidx],
                                    y=data.case_y[cidx], status=codes,
                                    labels=data.case_number[cidx])
        self.trail.set_time(when)
        self.trails.set_highlight(self.selected)
        self.stops.set_time(when)
        self.bar.timeline.set_time(when)
        self.side.set_time(when)
        self.bar.set_time_text(when, data.t0, data.t1)
        self._follow()
        self.frame_shown.emit(when)

    def _follow(self) -> None:
        if not (self.following and self.selected is not None):
            return
        pos = self.worker_layer.position(self.selected)
        if pos is not None and np.isfinite(pos[0]):
            self.canvas.pan_to(*pos)

    @property
    def t(self) -> float:
        return self.clock.t

    def ready(self) -> bool:
        """Loaded, a frame shown, every replay item drawn and the totals table at T
        (screenshots wait on it)."""
        return (self.data is not None or self.error is not None) and not self.loading and (
            not self.trails.pending and not self.workers.pending and not self.cases.pending
            and not self.side.pending)

    # -- transport -------------------------------------------------------------------------

    def toggle_play(self) -> None:
        if self.clock.playing:
            self.clock.pause()
        else:
            self.clock.play()

    def step(self, direction: int) -> None:
        """One fix of the selected worker forward or back; a minute without one."""
        self.clock.pause()
        data = self.data
        if data is None:
            return
        if self.selected is not None:
            seg = data.tracks.segment(self.selected)
            ts = data.tracks.t[seg]
            ts = ts[(ts >= data.t0) & (ts <= data.t1)]
            if ts.size:
                if direction > 0:
                    k = int(np.searchsorted(ts, self.clock.t, side="right"))
                    if k < ts.size:
                        self.clock.seek(float(ts[k]))
                        return
                else:
                    k = int(np.searchsorted(ts, self.clock.t, side="left")) - 1
                    if k >= 0:
                        self.clock.seek(float(ts[k]))
                        return
        self.clock.step(direction * STEP_S)

    def set_following(self, on: bool) -> None:
        self.following = bool(on)
        if self.bar.follow_box.isChecked() != self.following:
            self.bar.follow_box.setChecked(self.following)
        self._follow()

    def _user_moved(self) -> None:
        if self.active and self.following and self.selected is not None:
            self.set_following(False)

    def select(self, device: int | None) -> None:
        """The worker followed, highlighted (whole trail up to T) and exported as GPX."""
        self.selected = None if device is None else int(device)
        self.trails.set_highlight(self.selected)
        self.stops.set_focus(self.selected)
        self.side.select_device(self.selected)
        self.bar.gpx_button.setEnabled(self.selected is not None)
        if self.selected is not None and not self.following:
            self.set_following(True)
        self._follow()

    # -- clicks --------------------------------------------------------------------------

    def hit(self, x: float, y: float):
        """("worker", device), ("case", case id) or ("fix", index of a trail fix) near a point."""
        data = self.data
        if data is None:
            return None
        tol2 = (HIT_PX * self.canvas.m_per_px()) ** 2
        w = self.worker_layer
        if len(w):
            d2 = (w.x - x) ** 2 + (w.y - y) ** 2
            k = int(np.argmin(d2))
            if d2[k] <= tol2:
                return "worker", int(w.ids[k])
        c = self.case_layer
        if len(c):
            d2 = (c.x - x) ** 2 + (c.y - y) ** 2
            k = int(np.argmin(d2))
            if d2[k] <= tol2 * 1.44:
                return "case", int(c.ids[k])
        shown = [self.selected] if self.selected is not None else self.trail.devices
        idx = self.trail.indexes(self.clock.t - self.trail.span_s if self.selected is None
                                 else data.t0, self.clock.t, shown)
        if idx.size:
            d2 = (data.x[idx] - x) ** 2 + (data.y[idx] - y) ** 2
            k = int(np.argmin(d2))
            if d2[k] <= tol2:
                return "fix", int(idx[k])
        return None

    def describe(self, found) -> str:
        """What a click shows: the fix's time and attributes, or the case's status at T."""
        data = self.data
        if found is None or data is None:
            return ""
        kind, key = found
        tz = hall_timezone()
        if kind == "case":
            rows = self._case_idx if self._case_idx is not None else np.zeros(0, np.int64)
            row = rows[data.cases.case_id[rows] == key]
            if not row.size:
                return ""
            r = int(row[0])
            status = str(data.cases.status[r])
            since = datetime.fromtimestamp(float(data.cases.at[r]), tz)
            return (f"<b>{data.case_number[r]}</b><br>"
                    f"{tr('状态')}：{tr(style.CASE_STATUS_LABELS.get(status, status))}"
                    f"（{tr('自')} {since:%H:%M:%S}）")
        if kind == "worker":
            frame = data.tracks.at(self.clock.t, [key])
            if not frame.index.size:
                return ""
            index = int(frame.index[0])
        else:
            index = int(key)
        tr_ = data.tracks
        device = int(tr_.device[index])
        meta = data.meta.get(device, {})
        at = datetime.fromtimestamp(float(tr_.t[index]), tz)
        speed = tr_.speed[index]
        course = tr_.course[index]
        lines = [f"<b>{meta.get('name') or device}</b> {meta.get('code') or ''}",
                 f"{tr('定位时间')}：{at:%Y-%m-%d %H:%M:%S}",
                 f"{tr('速度')}：{'—' if not np.isfinite(speed) else f'{speed:.1f} km/h'}"
                 + ("" if not np.isfinite(course) else f"　{tr('航向')}：{course:.0f}°"),
                 f"{tr_.lon[index]:.6f}, {tr_.lat[index]:.6f}",
                 f"{tr('网格')}：{meta.get('grid_code') or '—'}"]
        trip = data.totals.get(device)
        if trip is not None:
            lines.append(f"{tr('里程')} {trip['distance_m'] / 1000:.2f} km · "
                         f"{tr('停留点')} {len(trip['stops'])}")
        return "<br>".join(lines)

    def click(self, x: float, y: float) -> None:
        found = self.hit(x, y)
        text = self.describe(found)
        if found is not None and found[0] in ("worker", "fix"):
            device = found[1] if found[0] == "worker" else int(self.data.tracks.device[found[1]])
            self.select(device)
        if text:
            self.info.setText(text)
            self.info.adjustSize()
            self.info.move(12, 12)
            self.info.show()
            self.info.raise_()
        else:
            self.info.hide()

    # -- GPX ------------------------------------------------------------------------------

    def ask_gpx(self) -> None:
        """Where to write the selected worker's trail (a dialog that does not block)."""
        if self.selected is None or self.data is None:
            return
        meta = self.data.meta.get(self.selected, {})
        stamp = datetime.fromtimestamp(self.data.t0, hall_timezone()).strftime("%Y%m%d-%H%M")
        name = f"{meta.get('code') or self.selected}-{stamp}.gpx"
        dialog = QFileDialog(self.map, tr("导出轨迹 GPX"), str(Path.home() / name),
                             "GPX (*.gpx)")
        dialog.setObjectName("replayGpxDialog")
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        dialog.setDefaultSuffix("gpx")
        dialog.fileSelected.connect(self.export_gpx)
        dialog.finished.connect(dialog.deleteLater)
        self.dialog = dialog
        dialog.open()

    def export_gpx(self, path: str) -> None:
        """Write the selected worker's trail for the window to ``path`` (a pool thread)."""
        from console.tasks import run_in_thread

        data, device = self.data, self.selected
        if data is None or device is None:
            return
        sl = data.tracks.trail(device, data.t0, data.t1)
        t, lon, lat = (data.tracks.t[sl].copy(), data.tracks.lon[sl].copy(),
                       data.tracks.lat[sl].copy())
        meta = data.meta.get(device, {})
        name = f"{meta.get('name') or ''} {meta.get('code') or device}".strip()

        def done(written: str) -> None:
            self.map.canvas.set_note(f"{tr('已导出')}：{written}")
            self.gpx_written.emit(written)

        def failed(exc: Exception) -> None:
            self.map.canvas.set_note(f"{tr('导出失败')}：{exc}")
            self.gpx_failed.emit(str(exc))

        run_in_thread(lambda: write_gpx(path, name, t, lon, lat), done, failed, context=self)

    # -- for the screenshot and the tests ---------------------------------------------------

    def stop_labels(self) -> list[tuple[int, str]]:
        """(device, duration text) of the stops shown at T."""
        rows, seconds = self.stops.shown()
        return [(int(self.stops.device[r]), duration_text(s))
                for r, s in zip(rows.tolist(), seconds.tolist(), strict=True)]

    def focus_busiest(self) -> int | None:
        """Select the worker who went furthest up to T and show their whole trail so far
        (the screenshot's view: one highlighted trail, its stops, everyone around)."""
        data = self.data
        if data is None or not data.totals:
            return None
        t = self.clock.t
        best = max(data.totals, key=lambda d: data.tracks.trip(d, data.t0, t)["distance_m"])
        self.select(best)
        seg = self.trail.device_segments(best)
        if len(seg):
            xs, ys = seg[:, [0, 2]], seg[:, [1, 3]]
            pad = 120.0
            self.canvas.fit((xs.min() - pad, ys.min() - pad, xs.max() + pad, ys.max() + pad),
                            padding=0.05)
        self.set_following(False)  # the view stays on the whole trail
        return best

    def shutdown(self) -> None:
        self.clock.pause()


def today_window(now: datetime | None = None) -> tuple[datetime, datetime]:
    """Today so far in the hall's time zone."""
    tz = hall_timezone()
    now = (now or datetime.now(tz)).astimezone(tz)
    return datetime.combine(now.date(), datetime.min.time(), tz), now


def day_window(at: datetime) -> tuple[datetime, datetime]:
    """The hall's day of ``at``, up to now when it is today."""
    tz = hall_timezone()
    local = at.astimezone(tz)
    start = datetime.combine(local.date(), datetime.min.time(), tz)
    end = min(start + timedelta(days=1), max(datetime.now(tz), local))
    return start, max(end, local)

