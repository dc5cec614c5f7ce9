"""Position history for the demo: the simulator's patrols, walked in the past.

The demo's district is seeded with a month of cases but the terminals' history starts
when the simulator first runs, so a replay of the morning would show nobody.
``python main.py demo tracks`` walks every worker with a terminal through [start, end)
(today from 08:00 unless told) exactly as the simulator does (``console.simulator.Walker``:
cell to cell in the own grid, walking or cycling, with pauses), one fix every 30 s, and loads
the fixes with one COPY.  Only time more than one reporting interval before the first fix
already stored in the span is filled, so running it twice adds nothing (also with
``--hours``, whose span has moved on by the seconds between the runs).
"""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import Engine, text

from console.simulator import REPORT_EVERY_S, Simulator
from db.clock import hall_timezone

STEP_S = 5.0  # the walkers' tick


def backfill(engine: Engine, start: datetime | None = None, end: datetime | None = None,
             seed: int = 12) -> dict:
    """Walk the demo's workers through [start, end) (default: today from 08:00, the
    start of the day shift, to now)."""
    tz = hall_timezone()
    now = datetime.now(UTC)
    start = start or datetime.combine(now.astimezone(tz).date(), time(8), tz)
    end = end or now
    with engine.connect() as conn:
        first = conn.execute(text("SELECT min(ts) FROM positions WHERE ts >= :a AND ts < :b"),
                             {"a": start, "b": end}).scalar()
    if first is not None:
        # Up to one reporting interval before the first stored fix: a span that starts a
        # few seconds before it (``--hours`` again, the span moved on with the clock) is
        # already covered, not a hole to walk another fix into.
        end = min(end, first - timedelta(seconds=REPORT_EVERY_S))
    if end <= start:
        return {"fixes": 0, "workers": 0, "from": start.isoformat(), "to": end.isoformat()}
    sim = Simulator(engine, operators=False, seed=seed)
    sim.load()
    walkers = sim.walkers
    with engine.connect() as conn:
        ids = dict(conn.execute(text("SELECT identifier, id FROM device")).all())
    rng = random.Random(seed)
    buf = io.StringIO()
    n = 0
    t = start.timestamp()
    stop = end.timestamp()
    while t < stop:
        stamp = datetime.fromtimestamp(t, UTC).isoformat()
        for w in walkers:
            w.step(STEP_S, rng)
            w.next_report_s -= STEP_S
            if w.next_report_s <= 0:
                w.next_report_s += REPORT_EVERY_S
                speed = 0.0 if w.pause_s > 0 else w.speed_ms * 3.6
                buf.write(f"{ids[w.device]}\t{stamp}\t{w.lon:.7f}\t{w.lat:.7f}\t{speed:.1f}\t"
                          f"{w.course:.1f}\t{w.battery:.1f}\t{w.grid_id}\n")
                n += 1
        t += STEP_S
    buf.seek(0)
    from db.positions import ensure_partitions

    day, last = start.astimezone(UTC).date(), end.astimezone(UTC).date()
    ensure_partitions(engine, [day + timedelta(days=k) for k in range((last - day).days + 1)])
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.copy_expert("COPY positions (device_id, ts, lon, lat, speed_kmh, course, battery, "
                        "grid_id) FROM STDIN", buf)
        raw.commit()
    finally:
        raw.close()
    return {"fixes": n, "workers": len(walkers), "from": start.isoformat(),
            "to": end.isoformat()}


def cmd_tracks(engine: Engine, hours: float | None) -> dict:
    start = None
    if hours is not None:
        start = datetime.now(UTC) - timedelta(hours=hours)
    return backfill(engine, start)
