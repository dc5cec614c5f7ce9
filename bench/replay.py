"""Replay frames on the demo: the map in replay mode, scrubbing the day, 590 workers.

Offscreen at 1600×1000 on the embedded demo (run ``python main.py demo tracks`` first for
the day's history): the map enters replay for the hall's day so far, everyone, and the
slider is moved to N random instants.  A frame is what the GUI thread does for one move
of the slider: ``ReplayMode.show_frame`` (everyone at T by one searchsorted, the cases at
T, trails and stops up to T, the layers updated) — timed alone as *update* — then the
scheduled rebuilds (trail segments, case scatter, the totals table up to T — in use at
most every 120 ms, here on every frame) and a synchronous ``viewport().repaint()``
(Qt paints with it every widget of the window marked dirty: the timeline, the time label)
— the whole as *frame*.  Figures for the whole district and for a street-level view.
Beside the wall-clock frame, the process's CPU time for it: on a machine shared with
other work the difference is time spent waiting for a core.

The straightforward alternative runs in the same loop at the same instants, one frame
after the other: the trails as one ``QPainterPath`` per age level (``arrayToQPath`` per
level, stroked by QPainter: ``TrailItem.vector``) and the timeline's marks drawn again
from the marks on every frame (its kept image dropped), as the first cut did.

    .venv/bin/python bench/replay.py [--frames 100]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=100)
    args = ap.parse_args()
    from console.config import Settings
    from widgets.app import _wait, make_app
    from widgets.map.replay_mode import today_window
    from widgets.map.standalone import MapWindow

    app = make_app()
    window = MapWindow(Settings.from_env())
    window.resize(1600, 1000)
    window.show()
    window.open()
    _wait(app, window.ready, 120)
    m = window.map
    t0, t1 = today_window()
    started = time.perf_counter()
    m.set_replay(True, t0=t0, t1=t1)
    _wait(app, lambda: m.replay.data is not None and m.replay.ready(), 300)
    load_s = time.perf_counter() - started
    r = m.replay
    data = r.data
    rng = random.Random(1)
    out = {"workers": len(data.devices), "fixes": len(data.tracks), "load_s": load_s}
    for name, view in (("district", None), ("street", 1.5)):
        if view is None:
            m.zoom_home()
        else:
            x, y = m.canvas.centre()
            m.canvas.set_view(x, y, view)
        _wait(app, m.ready, 30)
        update, frame, old, cpu, old_cpu = [], [], [], [], []
        for _ in range(args.frames):
            when = rng.uniform(max(data.t0, data.tracks.t_min), min(data.t1, data.tracks.t_max))
            for way in ("new", "old"):
                r.trails.vector = way == "old"
                if way == "old":
                    r.bar.timeline.strip._ticks_key = None
                a, a_cpu = time.perf_counter(), time.process_time()
                r.clock.seek(when)
                b = time.perf_counter()
                r.trails.rebuild()
                if r.cases.pending:
                    r.cases.rebuild()
                if r.side.pending:  # coalesced to 120 ms in use; here on every frame
                    r.side.refresh_totals()
                m.canvas.viewport().repaint()
                c, c_cpu = time.perf_counter(), time.process_time()
                if way == "new":
                    update.append((b - a) * 1000)
                    frame.append((c - a) * 1000)
                    cpu.append((c_cpu - a_cpu) * 1000)
                else:
                    old.append((c - a) * 1000)
                    old_cpu.append((c_cpu - a_cpu) * 1000)
        r.trails.vector = False
        out[name] = {"update_p50_ms": _pct(update, 0.5), "update_p95_ms": _pct(update, 0.95),
                     "frame_p50_ms": _pct(frame, 0.5), "frame_p95_ms": _pct(frame, 0.95),
                     "alternative_frame_p50_ms": _pct(old, 0.5),
                     "alternative_frame_p95_ms": _pct(old, 0.95),
                     "frame_cpu_p50_ms": _pct(cpu, 0.5), "frame_cpu_p95_ms": _pct(cpu, 0.95),
                     "alternative_frame_cpu_p95_ms": _pct(old_cpu, 0.95),
                     "segments_last": int(sum(r.trails.segment_counts))}
        o = out[name]
        print(f"{name}: update p50 {o['update_p50_ms']:.1f} ms, p95 {o['update_p95_ms']:.1f} ms;"
              f" frame (with the paint) p50 {o['frame_p50_ms']:.1f} ms, p95 "
              f"{o['frame_p95_ms']:.1f} ms (aim ≤ 33); the first cut's way p50 "
              f"{o['alternative_frame_p50_ms']:.1f} ms, p95 {o['alternative_frame_p95_ms']:.1f} ms;"
              f" the process's CPU time per frame p95 {o['frame_cpu_p95_ms']:.1f} ms (first cut "
              f"{o['alternative_frame_cpu_p95_ms']:.1f} ms)")
    print(f"{out['workers']} workers, {out['fixes']} fixes, loaded in {load_s:.2f} s "
          f"(off the GUI thread)")
    window.shutdown()
    window.close()
    out["aims"] = {"frame_p95_ms": 33.0}
    out["meets_aims"] = all(out[k]["frame_p95_ms"] <= 33.0 for k in ("district", "street"))
    out["load_average"] = [round(v, 2) for v in os.getloadavg()]
    out["cores"] = os.cpu_count()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
