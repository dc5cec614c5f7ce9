"""The field force's data: the roster with its schedules, tracks, patrol compliance.

What the worker board, the replay and ``patrol report`` read.  Tracks come out of the
day-partitioned ``positions`` by binary COPY straight into numpy columns (about ten
times less work than rows of Python objects: a day of 590 workers is 1.7 M fixes); what
counts as patrolling is ``maps.patrol``'s, the duty schedule is revision 0008's
``duty_schedule`` (edited only by an administrator through ``grid_duty_schedule_set``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise

import numpy as np
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from db.clock import hall_timezone
from db.errors import BadInput, Forbidden
from db.session import bind, transaction
from maps.cells import Lattice
from maps.patrol import DAILY, PatrolResult, PatrolRule, compute, week_compliance

ROSTER_ROLES = ("instructor", "grid_leader", "full_time", "part_time")


# --- the roster ---------------------------------------------------------------------------


def roster(engine: Engine, street: str | None = None) -> list[dict]:
    """Every active worker with grid, community, street, device and duty schedule.

    ``street`` (a street code) keeps that street's workers; an unknown code is one line.
    """
    sql = """
        SELECT w.id AS worker_id, w.code, w.name, w.phone, w.roster_role, w.status,
               w.grid_id, g.code AS grid_code, g.name AS grid_name, g.kind AS grid_kind,
               c.code AS community_code, c.name AS community_name,
               s.code AS street_code, s.name AS street_name, s.adcode,
               (SELECT min(d.id) FROM device d WHERE d.worker_id = w.id) AS device_id,
               ds.days AS duty_days, ds.start_time AS duty_start, ds.end_time AS duty_end
        FROM worker w
        LEFT JOIN grid g ON g.id = w.grid_id
        LEFT JOIN community c ON c.id = g.community_id
        LEFT JOIN street s ON s.id = c.street_id
        LEFT JOIN duty_schedule ds ON ds.worker_id = w.id
        WHERE w.active AND (CAST(:street AS text) IS NULL OR s.code = :street)
        ORDER BY s.code NULLS LAST, c.code NULLS LAST, g.code NULLS LAST,
                 array_position(CAST(:roles AS text[]), CAST(w.roster_role AS text)), w.code
    """
    with engine.connect() as conn:
        if street is not None and conn.execute(
                text("SELECT 1 FROM street WHERE code = :s"), {"s": street}).first() is None:
            raise BadInput(f"未知街道“{street}”。", f"Unknown street '{street}'.")
        rows = conn.execute(text(sql), {"street": street, "roles": list(ROSTER_ROLES)})
        return [dict(r._mapping) for r in rows]


# --- duty schedules -----------------------------------------------------------------------


@dataclass(frozen=True)
class DutySchedule:
    """ISO weekdays (1 = Monday) and hours, in the hall's time zone; end < start: overnight."""

    days: tuple[int, ...]
    start: time
    end: time

    def on_duty(self, when: datetime) -> bool:
        local = when.astimezone(hall_timezone())
        t, wd = local.time(), local.isoweekday()
        if self.start < self.end:
            return wd in self.days and self.start <= t < self.end
        # Overnight: from start on a duty day, until end the next morning.
        yesterday = 7 if wd == 1 else wd - 1
        return (wd in self.days and t >= self.start) or (yesterday in self.days and t < self.end)

    def duty_day(self, d: date) -> bool:
        return d.isoweekday() in self.days


def schedule_of(row: dict) -> DutySchedule | None:
    """The schedule of a ``roster`` row, or None when the worker has none."""
    if not row.get("duty_days"):
        return None
    return DutySchedule(tuple(int(x) for x in row["duty_days"]), row["duty_start"],
                        row["duty_end"])


def parse_days(value: str) -> list[int]:
    """``1-5`` or ``1,3,5`` (ISO weekdays) or one clear line."""
    try:
        days: set[int] = set()
        for part in str(value).split(","):
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                days.update(range(a, b + 1))
            else:
                days.add(int(part))
        if days and all(1 <= d <= 7 for d in days):
            return sorted(days)
    except ValueError:
        pass
    raise BadInput(f"值班日须为 1–7 的星期（如 1-5 或 1,3,5），收到“{value}”。",
                   f"Duty days are ISO weekdays 1-7 (e.g. 1-5 or 1,3,5), got '{value}'.")


def parse_hours(value: str) -> tuple[time, time]:
    """``08:30-17:30`` or one clear line."""
    try:
        a, b = str(value).split("-", 1)
        start, end = time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
        if start != end:
            return start, end
    except ValueError:
        pass
    raise BadInput(f"值班时间须为 HH:MM-HH:MM，收到“{value}”。",
                   f"Duty hours are HH:MM-HH:MM, got '{value}'.")


def set_schedule(engine: Engine, by, worker_code: str, days: list[int] | None,
                 start: time | None = None, end: time | None = None) -> None:
    """Set (or with ``days`` None clear) a worker's schedule: an administrator's only.

    The database decides (``grid_duty_schedule_set`` calls ``grid_require_admin``);
    ``by`` is the administrator's ``Actor`` (None on the owner's engine).
    """
    with transaction(engine) as conn:
        bind(conn, by, "duty_schedule")
        try:
            with conn.begin_nested():
                conn.execute(text("SELECT grid_duty_schedule_set(:w, CAST(:d AS smallint[]), "
                                  "CAST(:s AS time), CAST(:e AS time))"),
                             {"w": worker_code, "d": days, "s": start, "e": end})
        except DBAPIError as exc:
            code = getattr(exc.orig, "pgcode", None)
            if code == "42501":
                raise Forbidden("只有管理员可以编辑值班表。",
                                "Only an administrator may edit duty schedules.") from None
            if code == "P0002":
                raise BadInput(f"未知网格员“{worker_code}”。",
                               f"Unknown worker '{worker_code}'.") from None
            raise


# --- tracks -------------------------------------------------------------------------------


@dataclass
class Tracks:
    """Fixes sorted by device then time, as numpy columns (``t`` in epoch seconds)."""

    device: np.ndarray  # int32
    t: np.ndarray  # float64
    lon: np.ndarray
    lat: np.ndarray
    speed: np.ndarray  # float32, NaN where the terminal sent none
    course: np.ndarray  # float32, NaN where none
    battery: np.ndarray  # float32, NaN where none
    grid: np.ndarray  # int32, -1 outside every grid

    def __len__(self) -> int:
        return int(self.t.size)


_TRACK_DTYPE = np.dtype([
    ("n", ">i2"),
    ("l0", ">i4"), ("device", ">i4"),
    ("l1", ">i4"), ("t", ">i8"),  # timestamptz on the wire: microseconds since 2000
    ("l2", ">i4"), ("lon", ">f8"),
    ("l3", ">i4"), ("lat", ">f8"),
    ("l4", ">i4"), ("speed", ">f4"),
    ("l5", ">i4"), ("course", ">f4"),
    ("l6", ">i4"), ("battery", ">f4"),
    ("l7", ">i4"), ("grid", ">i4"),
])
_HEADER = 19  # signature (11), flags (4), extension length (4)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds


def load_tracks(engine: Engine, t0: datetime, t1: datetime,
                devices: list[int] | None = None) -> Tracks:
    """Every fix with ``t0 <= ts < t1`` (of ``devices``, or all), by binary COPY.

    Every column is made NOT NULL in the query (NaN, -1), so each row has the same
    length and the whole answer is one ``np.frombuffer``.  The partitions outside the
    window are pruned by the ``ts`` bounds.  The server neither sorts (fixes are stored
    in arrival order, nearly by time: sorting a day of 1.7 M rows there took 4 s of the
    5) nor converts the times (``ts`` goes as its binary microseconds): numpy does both.
    """
    where = "ts >= %(t0)s AND ts < %(t1)s"
    if devices is not None:
        where += " AND device_id = ANY(%(d)s)"
    sql = f"""
        SELECT device_id, ts,
               lon, lat, coalesce(speed_kmh, 'NaN')::float4, coalesce(course, 'NaN')::float4,
               coalesce(battery, 'NaN')::float4, coalesce(grid_id, -1)::int4
        FROM positions WHERE {where}
    """
    # A window of more than a few hours is read as two halves on two connections at once:
    # the server's scan and the transfer are most of the time, and each half gets a core
    # (a day of 590 workers: 1.4 s → 0.8 s).
    parts = 2 if t1 - t0 > PARALLEL_WINDOW else 1
    edges = [t0 + (t1 - t0) * k / parts for k in range(parts)] + [t1]
    return _copy_tracks(engine, sql, [{"t0": a, "t1": b, "d": list(devices or [])}
                                      for a, b in pairwise(edges)])


PARALLEL_WINDOW = timedelta(hours=3)


def _copy_rows(engine: Engine, sql: str, params: dict) -> np.ndarray:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        query = cur.mogrify(sql, params).decode()
        buf = io.BytesIO()
        cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT binary)", buf)
        raw.commit()
    finally:
        raw.close()
    data = buf.getbuffer()
    body = data[_HEADER: len(data) - 2]  # the trailer is a field count of -1
    return np.frombuffer(body, dtype=_TRACK_DTYPE)


def _copy_tracks(engine: Engine, sql: str, params: dict | list[dict]) -> Tracks:
    """The rows of ``sql`` (``load_tracks``'s eight NOT NULL columns) by binary COPY,
    sorted by device then time; a list of parameter sets is read on as many connections
    at once."""
    if isinstance(params, dict) or len(params) == 1:
        rows = _copy_rows(engine, sql, params if isinstance(params, dict) else params[0])
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(params)) as pool:
            parts = list(pool.map(lambda p: _copy_rows(engine, sql, p), params))
        rows = np.concatenate(parts)
    device = rows["device"].astype(np.int32)
    us = rows["t"].astype(np.int64) + _PG_EPOCH_US
    # By device, stable: arrival order is time order unless a fix came late; then fully.
    order = np.argsort(device, kind="stable")
    device, us = device[order], us[order]
    late = (device[1:] == device[:-1]) & (us[1:] < us[:-1])
    if late.any():
        again = np.lexsort((us, device))
        order, device, us = order[again], device[again], us[again]
    # One correctly rounded division: the same float as the exact epoch seconds.
    t = us.astype(np.float64) / 1e6
    # Each column to native byte order first (one contiguous copy), then gathered.
    return Tracks(device, t, rows["lon"].astype(np.float64)[order],
                  rows["lat"].astype(np.float64)[order],
                  rows["speed"].astype(np.float32)[order],
                  rows["course"].astype(np.float32)[order],
                  rows["battery"].astype(np.float32)[order],
                  rows["grid"].astype(np.int32)[order])


def _lattices(engine: Engine) -> dict[str, Lattice]:
    with engine.connect() as conn:
        return {r.adcode: Lattice(r.origin_lon, r.origin_lat, r.dlon, r.dlat, r.n_cols,
                                  r.n_rows, r.cell_m)
                for r in conn.execute(text(
                    "SELECT adcode, origin_lon, origin_lat, dlon, dlat, n_cols, n_rows, cell_m "
                    "FROM district WHERE n_cols > 0"))}


def _grid_cells(engine: Engine, grid_ids: list[int]) -> tuple[dict[int, int], np.ndarray]:
    """Cells per grid and the sorted keys ``grid·2³² + col·2¹⁶ + row`` of their cells."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT grid_id, col, row FROM unit_cell "
                                 "WHERE grid_id = ANY(:g)"), {"g": grid_ids}).all()
    counts: dict[int, int] = {}
    keys = np.empty(len(rows), np.int64)
    for i, (g, col, row) in enumerate(rows):
        counts[g] = counts.get(g, 0) + 1
        keys[i] = _cell_key(g, col, row)
    return counts, np.sort(keys)


def _cell_key(grid, col, row):
    return (np.asarray(grid, np.int64) << 32) + (np.asarray(col, np.int64) << 16) \
        + np.asarray(row, np.int64)


# --- patrol compliance --------------------------------------------------------------------


def period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """Midnight in the hall's time zone at both ends of [start, end), as UTC instants."""
    tz = hall_timezone()
    return (datetime.combine(start, time(), tz).astimezone(UTC),
            datetime.combine(end, time(), tz).astimezone(UTC))


def check_period(start: date, end: date) -> None:
    if end <= start:
        raise BadInput("结束日期须晚于开始日期（--to 不含当天）。",
                       "The end date must be after the start date (--to is exclusive).")
    if (end - start).days > 92:
        raise BadInput("巡查报告最长 92 天。", "A patrol report covers at most 92 days.")


def patrol_report(engine: Engine, start: date, end: date, street: str | None = None,
                  rule: PatrolRule = DAILY, summaries: bool = True) -> dict:
    """Per worker with a terminal and an own grid, per day of [start, end): the sessions,
    their total, patrols, coverage of the own grid, time outside it, compliance.

    A day is required when it is a duty day of the worker's schedule (every day for a
    worker without one); see ``maps.patrol`` for how a track is read.  With
    ``summaries`` the (worker, day) figures kept in ``patrol_day`` for closed days are
    reused where they still hold (``summarize_patrol_days``) and the rest, today
    included, is computed from the fixes: the answer is the same either way, only
    faster (a month of 590 workers is 51 M fixes).
    """
    check_period(start, end)
    workers = [w for w in roster(engine, street) if w["device_id"] and w["grid_id"]]
    n_days = (end - start).days
    days = [start + timedelta(days=k) for k in range(n_days)]
    counts, cell_keys = _grid_cells(engine, [w["grid_id"] for w in workers])
    res = _patrol_result(engine, workers, start, end, rule, cell_keys, summaries)
    return _report_rows(workers, days, counts, res, rule, start, end, street)


def _compute_live(engine: Engine, workers: list[dict], start: date, end: date,
                  rule: PatrolRule, cell_keys: np.ndarray) -> PatrolResult:
    """``maps.patrol.compute`` over the fixes of ``workers`` in [start, end)."""
    t0, t1 = period_bounds(start, end)
    n_days = (end - start).days
    widx = {w["device_id"]: i for i, w in enumerate(workers)}
    # One extra fix after the period ends a last interval; load to the next day's start.
    tracks = load_tracks(engine, t0, t1 + SUMMARY_MARGIN, list(widx)) if workers else None
    if tracks is not None and len(tracks):
        wi = _map_ids(tracks.device, widx)
        own = np.array([w["grid_id"] for w in workers], np.int64)[wi]
        inside = tracks.grid.astype(np.int64) == own
        cell = np.full(len(tracks), -1, np.int64)
        adcodes = np.array([w["adcode"] or "" for w in workers], object)[wi]
        for code, lattice in _lattices(engine).items():
            sel = inside & (adcodes == code)
            if sel.any():
                col, row = lattice.col_row(tracks.lon[sel], tracks.lat[sel])
                k = _cell_key(own[sel], col, row)
                pos = np.searchsorted(cell_keys, k).clip(0, max(cell_keys.size - 1, 0))
                hit = cell_keys.size > 0
                ok = (cell_keys[pos] == k) if hit else np.zeros(k.size, bool)
                cell[np.flatnonzero(sel)[ok]] = k[ok]
        day = _local_days(tracks.t, start)
        return compute(wi, tracks.t, tracks.lon, tracks.lat, tracks.speed, inside, cell, day,
                       len(workers), n_days, rule)
    return compute(np.empty(0), np.empty(0), np.empty(0), np.empty(0), np.empty(0),
                   np.empty(0, bool), np.empty(0), np.empty(0), len(workers), n_days, rule)


def _map_ids(device: np.ndarray, widx: dict[int, int]) -> np.ndarray:
    ids = np.array(sorted(widx), np.int64)
    pos = np.searchsorted(ids, device.astype(np.int64))
    lut = np.array([widx[int(i)] for i in ids], np.int64)
    return lut[pos]


def _local_days(t: np.ndarray, start: date) -> np.ndarray:
    """Index of each instant's local day, counted from ``start`` (the hall's time zone)."""
    tz = hall_timezone()
    base = datetime.combine(start, time(), tz)
    # The offset changes at most at a few instants a year: compute it per distinct hour.
    hours = np.floor(t / 3600.0).astype(np.int64)
    uniq, inv = np.unique(hours, return_inverse=True)
    offs = np.array([datetime.fromtimestamp(h * 3600, tz).utcoffset().total_seconds()
                     for h in uniq.tolist()])
    local = t + offs[inv]
    base_local = base.timestamp() + base.utcoffset().total_seconds()
    return np.floor((local - base_local) / 86400.0).astype(np.int64)


def _iso_local(t: np.ndarray) -> list[str]:
    """``datetime.fromtimestamp(x, hall zone).isoformat()`` of many instants at once (a
    month's report has some 300,000 session ends): the same rounding to microseconds,
    the zone's offset looked up once per quarter hour."""
    t = np.asarray(t, np.float64)
    if not t.size:
        return []
    tz = hall_timezone()
    whole = np.floor(t)
    us = np.round((t - whole) * 1e6).astype(np.int64)  # half to even, as datetime does
    whole = whole.astype(np.int64) + (us >= 1_000_000)
    us = np.where(us >= 1_000_000, us - 1_000_000, us)
    blocks, inv = np.unique(whole // 900, return_inverse=True)
    stamps = [datetime.fromtimestamp(b * 900, tz) for b in blocks.tolist()]
    offs = np.array([int(x.utcoffset().total_seconds()) for x in stamps], np.int64)[inv]
    zone = np.array([x.isoformat()[19:] for x in stamps], object)[inv]
    local = np.datetime_as_string((whole + offs).astype("datetime64[s]"), unit="s")
    frac = np.full(t.size, "", object)
    some = np.flatnonzero(us)
    frac[some] = [f".{u:06d}" for u in us[some].tolist()]
    return (local.astype(object) + frac + zone).tolist()


def _report_rows(workers, days, counts, res, rule, start, end, street) -> dict:
    weeks = np.array([d.isocalendar()[:2] for d in days]).reshape(len(days), 2)
    week_key = weeks[:, 0] * 100 + weeks[:, 1]
    sess_by: dict[tuple[int, int], list] = {}
    s = res.sessions
    for w, d, a, b, sa, sb in zip(s[:, 0].astype(np.int64).tolist(),
                                  s[:, 1].astype(np.int64).tolist(), s[:, 2].tolist(),
                                  s[:, 3].tolist(), _iso_local(s[:, 2]), _iso_local(s[:, 3]),
                                  strict=True):
        sess_by.setdefault((w, d), []).append(
            {"start": sa, "end": sb, "minutes": round((b - a) / 60.0, 2)})
    rows = []
    for i, w in enumerate(workers):
        sched = schedule_of(w)
        required = np.array([sched.duty_day(d) if sched else True for d in days])
        compliant = res.patrols[i] >= rule.min_patrols
        n_cells = counts.get(w["grid_id"], 0)
        got, need, ok = week_compliance(compliant, required, week_key, rule.days_per_week)
        day_rows = []
        for k, d in enumerate(days):
            day_rows.append({
                "date": d.isoformat(),
                "sessions": sess_by.get((i, k), []),
                "patrols": int(res.patrols[i, k]),
                "patrol_minutes": round(float(res.patrol_s[i, k]) / 60.0, 2),
                "outside_minutes": round(float(res.outside_s[i, k]) / 60.0, 2),
                "cells_visited": int(res.cells_visited[i, k]),
                "cells": n_cells,
                "coverage": round(int(res.cells_visited[i, k]) / n_cells, 4) if n_cells
                else None,
                "required": bool(required[k]),
                "compliant": bool(compliant[k]),
            })
        rows.append({
            "worker": w["code"], "name": w["name"], "roster_role": w["roster_role"],
            "grid": w["grid_code"], "community": w["community_code"],
            "street": w["street_code"],
            "compliant_days": got, "required_days": need, "compliant": ok,
            "patrol_minutes": round(float(res.patrol_s[i].sum()) / 60.0, 2),
            "days": day_rows,
        })
    return {"from": start.isoformat(), "to": end.isoformat(), "street": street,
            "rule": {"name": rule.name, "min_patrols": rule.min_patrols,
                     "min_minutes": rule.min_minutes, "days_per_week": rule.days_per_week,
                     "max_gap_s": rule.max_gap_s, "moving_kmh": rule.moving_kmh,
                     "max_stop_s": rule.max_stop_s},
            "workers": rows}


# --- the worker board ---------------------------------------------------------------------


def board_rows(engine: Engine, street: str | None = None) -> tuple[list[dict], datetime]:
    """The roster with each worker's latest fix and open handling, and the database's now.

    ``handling``: a case dispatched to the worker whose department acknowledged it (status
    ``in_progress``).  ``offline_event``: the gateway recorded the terminal offline after
    its last report.  The time is the database's, so a workstation's clock does not decide
    who is offline.
    """
    rows = roster(engine, street)
    with engine.connect() as conn:
        now = conn.execute(text("SELECT now()")).scalar_one()
        fixes = {r.device_id: dict(r._mapping) for r in conn.execute(text("""
            SELECT lp.device_id, lp.ts, lp.lon, lp.lat, lp.speed_kmh, lp.course, lp.battery,
                   lp.grid_id AS fix_grid_id,
                   EXISTS (SELECT 1 FROM worker_event e WHERE e.device_id = lp.device_id
                           AND e.kind = 'offline' AND e.at >= lp.received_at) AS offline_event
            FROM latest_position lp"""))}
        handling = {r[0]: r[1] for r in conn.execute(text(
            "SELECT worker_id, min(number) FROM \"case\" WHERE status = 'in_progress' "
            "AND worker_id IS NOT NULL GROUP BY worker_id"))}
    for r in rows:
        r.update(fixes.get(r["device_id"], {}))
        r["handling_case"] = handling.get(r["worker_id"])
    return rows, now


# --- replay -------------------------------------------------------------------------------


def case_log_window(engine: Engine, t0: datetime, t1: datetime) -> dict[str, np.ndarray]:
    """What the replay needs to rebuild the cases through [t0, t1]: for every case open at
    ``t0`` its newest entry before ``t0``, and every entry in the window, with the case's
    number and position (columns: case_id, seq, at (epoch s), to_status, action, number,
    lon, lat)."""
    sql = """
        WITH before AS (
            SELECT DISTINCT ON (case_id) case_id, seq, at, to_status, action
            FROM case_log WHERE at < :t0 ORDER BY case_id, seq DESC
        ), entries AS (
            SELECT * FROM before
             WHERE to_status NOT IN ('closed', 'archived', 'rejected', 'merged')
            UNION ALL
            SELECT case_id, seq, at, to_status, action FROM case_log
             WHERE at >= :t0 AND at <= :t1
        )
        SELECT e.case_id, e.seq, extract(epoch FROM e.at)::float8 AS at, e.to_status,
               e.action, c.number, c.lon, c.lat
        FROM entries e JOIN "case" c ON c.id = e.case_id ORDER BY e.case_id, e.seq
    """
    with engine.connect() as conn:
        rows = conn.execute(text(sql), {"t0": t0, "t1": t1}).all()
    cols = ("case_id", "seq", "at", "to_status", "action", "number", "lon", "lat")
    out = {c: np.array([r[i] for r in rows], dtype=object if c in (
        "to_status", "action", "number") else None) for i, c in enumerate(cols)}
    if not rows:
        out = {c: np.empty(0, object if c in ("to_status", "action", "number") else float)
               for c in cols}
    return out


def worker_events_window(engine: Engine, t0: datetime, t1: datetime) -> list[dict]:
    """Worker events in the window (the replay's timeline marks)."""
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(
            "SELECT device_id, worker_id, kind, extract(epoch FROM at)::float8 AS at, lon, lat "
            "FROM worker_event WHERE at >= :t0 AND at <= :t1 ORDER BY at"),
            {"t0": t0, "t1": t1})]


def load_replay(engine: Engine, t0: datetime, t1: datetime, devices: list[int] | None = None,
                stale_s: float | None = None):
    """Tracks and cases of a window as ``maps.replay`` models (plus the timeline events).

    Fixes are loaded from ``stale_s`` before ``t0``, so "everyone at t0" sees those whose
    last fix came shortly before the window.
    """
    from maps.replay import DEFAULT_STALE_S, CaseReplay, TrackReplay

    stale = DEFAULT_STALE_S if stale_s is None else stale_s
    tr = load_tracks(engine, t0 - timedelta(seconds=stale), t1 + timedelta(microseconds=1),
                     devices)
    tracks = TrackReplay(tr.device, tr.t, tr.lon, tr.lat, tr.speed, tr.course, stale)
    log = case_log_window(engine, t0, t1)
    cases = CaseReplay(log["case_id"], log["at"], log["to_status"], log["lon"], log["lat"],
                       log["seq"])
    marks = [{"at": float(a), "kind": str(k), "number": str(n)}
             for a, k, n in zip(log["at"], log["action"], log["number"], strict=True)
             if k in ("report", "dispatch", "close") and a >= t0.timestamp()]
    marks += [{"at": e["at"], "kind": e["kind"], "device_id": e["device_id"]}
              for e in worker_events_window(engine, t0, t1)]
    return tracks, cases, log, sorted(marks, key=lambda m: m["at"])


# --- patrol summaries of closed days (revision 0009) -------------------------------------

SUMMARY_MARGIN = timedelta(minutes=30)  # fixes this long after a day may end its intervals


def session_params(rule: PatrolRule) -> str | None:
    """The key of what a day's sessions depend on (not ``min_minutes`` nor the compliance
    counts, which the report applies to the sessions); None when a day cannot be
    summarised alone (a gap longer than the margin loaded after it)."""
    if rule.max_gap_s > SUMMARY_MARGIN.total_seconds():
        return None
    return f"gap={rule.max_gap_s!r};moving={rule.moving_kmh!r};stop={rule.max_stop_s!r}"


def _empty_result(n_workers: int, n_days: int) -> PatrolResult:
    shape = (n_workers, n_days)
    return PatrolResult(np.zeros(shape), np.zeros(shape), np.zeros(shape, np.int64),
                        np.zeros(shape, np.int64), np.empty((0, 4)))


def _stored_days(engine: Engine, workers: list[dict], start: date, end: date,
                 params: str, out: PatrolResult) -> tuple[np.ndarray, list[np.ndarray]]:
    """Fill ``out`` from the summaries that still hold; (which cells were filled, sessions).

    A row holds when its terminal and own grid are the worker's now and its day began
    at the local midnight of the hall's time zone now (a changed ``GRID_TZ`` cuts other
    days).
    """
    have = np.zeros(out.patrol_s.shape, bool)
    sessions: list[np.ndarray] = []
    by_worker = {w["worker_id"]: i for i, w in enumerate(workers)}
    tz = hall_timezone()
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT worker_id, day, device_id, grid_id, day_start, patrol_s, outside_s, "
            "cells_visited, sessions FROM patrol_day WHERE params = :p AND day >= :a "
            "AND day < :b AND worker_id = ANY(:w)"),
            {"p": params, "a": start, "b": end, "w": list(by_worker)}).all()
    midnight = {}
    wi, ki, ps, os_, cv, counts, flat = [], [], [], [], [], [], []
    for r in rows:
        i = by_worker[r.worker_id]
        w = workers[i]
        if r.day not in midnight:
            midnight[r.day] = datetime.combine(r.day, time(), tz)
        if (r.device_id != w["device_id"] or r.grid_id != w["grid_id"]
                or r.day_start != midnight[r.day]):
            continue
        wi.append(i)
        ki.append((r.day - start).days)
        ps.append(r.patrol_s)
        os_.append(r.outside_s)
        cv.append(r.cells_visited)
        counts.append(len(r.sessions) // 2)
        flat.extend(r.sessions)
    if wi:
        at = (np.array(wi), np.array(ki))
        have[at] = True
        out.patrol_s[at], out.outside_s[at], out.cells_visited[at] = ps, os_, cv
        if flat:
            n = np.array(counts)
            sessions.append(np.column_stack([np.repeat(at[0], n).astype(float),
                                             np.repeat(at[1], n).astype(float),
                                             np.array(flat, np.float64).reshape(-1, 2)]))
    return have, sessions


def _patrol_result(engine: Engine, workers: list[dict], start: date, end: date,
                   rule: PatrolRule, cell_keys: np.ndarray, summaries: bool) -> PatrolResult:
    """The report's figures: stored summaries where they hold, the fixes for the rest.

    Days are independent (a session never crosses midnight, a day's last interval ends
    at most ``SUMMARY_MARGIN`` after it), so each run of days some worker lacks is
    computed for just those workers and only their missing cells are taken.
    """
    n_w, n_days = len(workers), (end - start).days
    params = session_params(rule) if summaries else None
    if params is None or not workers:
        return _compute_live(engine, workers, start, end, rule, cell_keys)
    out = _empty_result(n_w, n_days)
    have, sessions = _stored_days(engine, workers, start, end, params, out)
    missing = ~have
    need = missing.any(axis=0)
    k = 0
    while k < n_days:
        if not need[k]:
            k += 1
            continue
        k1 = k
        while k1 < n_days and need[k1]:
            k1 += 1
        sel = np.flatnonzero(missing[:, k:k1].any(axis=1))
        sub = _compute_live(engine, [workers[i] for i in sel], start + timedelta(days=k),
                            start + timedelta(days=k1), rule, cell_keys)
        take = missing[sel, k:k1]
        for name in ("patrol_s", "outside_s", "cells_visited"):
            getattr(out, name)[sel, k:k1] = np.where(
                take, getattr(sub, name), getattr(out, name)[sel, k:k1])
        if sub.sessions.size:
            s = sub.sessions.copy()
            wi, di = s[:, 0].astype(np.int64), s[:, 1].astype(np.int64)
            s[:, 0], s[:, 1] = sel[wi], di + k
            sessions.append(s[take[wi, di]])
        k = k1
    if sessions:
        allsess = np.concatenate(sessions)
        out.sessions = allsess[np.lexsort((allsess[:, 2], allsess[:, 0]))]
        patrol = (out.sessions[:, 3] - out.sessions[:, 2]) >= rule.min_minutes * 60.0
        np.add.at(out.patrols, (out.sessions[patrol, 0].astype(np.int64),
                                out.sessions[patrol, 1].astype(np.int64)), 1)
    return out


def summarize_patrol_days(engine: Engine, start: date, end: date,
                          rule: PatrolRule = DAILY) -> int:
    """Compute and keep ``patrol_day`` for every closed day of [start, end); rows written.

    A day is closed once its margin has passed by the database's clock.  Each day is
    computed while holding the position writers' lock (``db.positions``), so no batch
    commits between reading the fixes and keeping the summary, and one that commits after
    it deletes the summary again (the trigger of revision 0009); the gateway waits for a
    day's computation (a second or two) with its reports safe in its on-disk queue.
    Run as the gateway's role or the owner (consoles only read the summaries).
    """
    from db.positions import _WRITE_LOCK

    check_period(start, end)
    params = session_params(rule)
    if params is None:
        raise BadInput(f"最长间隔超过 {SUMMARY_MARGIN.total_seconds():g} 秒的规则不能按日汇总。",
                       f"A rule whose longest gap exceeds {SUMMARY_MARGIN.total_seconds():g} s "
                       "cannot be summarised by day.")
    workers = [w for w in roster(engine) if w["device_id"] and w["grid_id"]]
    if not workers:
        return 0
    _, cell_keys = _grid_cells(engine, [w["grid_id"] for w in workers])
    written = 0
    d = start
    while d < end:
        day_start, day_end = period_bounds(d, d + timedelta(days=1))
        with engine.begin() as conn:
            now = conn.execute(text("SELECT now()")).scalar_one()
            if day_end + SUMMARY_MARGIN > now:
                break  # this day and the later ones are not over
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _WRITE_LOCK})
            res = _compute_live(engine, workers, d, d + timedelta(days=1), rule, cell_keys)
            fixes = _fix_counts(engine, workers, day_start, day_end)
            by_w: dict[int, list[float]] = {}
            for wi, _, a, b in res.sessions.tolist():
                by_w.setdefault(int(wi), []).extend((a, b))
            conn.execute(text("DELETE FROM patrol_day WHERE day = :d AND params = :p"),
                         {"d": d, "p": params})
            conn.execute(text(
                "INSERT INTO patrol_day (worker_id, day, params, device_id, grid_id, day_start, "
                "until, patrol_s, outside_s, cells_visited, sessions, fixes) VALUES (:w, :d, "
                ":p, :dev, :g, :a, :u, :ps, :os, :cv, CAST(:s AS float8[]), :n)"),
                [{"w": w["worker_id"], "d": d, "p": params, "dev": w["device_id"],
                  "g": w["grid_id"], "a": day_start, "u": day_end + SUMMARY_MARGIN,
                  "ps": float(res.patrol_s[i, 0]), "os": float(res.outside_s[i, 0]),
                  "cv": int(res.cells_visited[i, 0]), "s": by_w.get(i, []),
                  "n": int(fixes.get(w["device_id"], 0))}
                 for i, w in enumerate(workers)])
            written += len(workers)
        d += timedelta(days=1)
    return written


def _fix_counts(engine: Engine, workers: list[dict], t0: datetime, t1: datetime) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(text(
            "SELECT device_id, count(*) FROM positions WHERE ts >= :a AND ts < :b "
            "AND device_id = ANY(:d) GROUP BY device_id"),
            {"a": t0, "b": t1, "d": [w["device_id"] for w in workers]}).all())


# --- where everyone was ------------------------------------------------------------------


def positions_at(engine: Engine, when: datetime, stale_s: float = 600.0,
                 devices: list[int] | None = None) -> Tracks:
    """Each device's newest fix at or before ``when`` and at most ``stale_s`` older, straight
    from ``positions`` (what ``maps.replay.TrackReplay.at`` answers from a loaded window):
    one query over the window's pages (the BRIN index on ``ts``), not one per worker."""
    where = "ts <= %(t)s AND ts >= %(t)s - make_interval(secs => %(s)s)"
    if devices is not None:
        where += " AND device_id = ANY(%(d)s)"
    sql = f"""
        SELECT DISTINCT ON (device_id) device_id, ts,
               lon, lat, coalesce(speed_kmh, 'NaN')::float4, coalesce(course, 'NaN')::float4,
               coalesce(battery, 'NaN')::float4, coalesce(grid_id, -1)::int4
        FROM positions WHERE {where} ORDER BY device_id, ts DESC
    """
    return _copy_tracks(engine, sql, {"t": when, "s": float(stale_s), "d": list(devices or [])})


MAX_WINDOW_DAYS = 92
MAX_RADIUS_M = 10_000.0


def parse_instant(value: str, option: str) -> datetime:
    """An ISO date-time (a time without a zone is the hall's) or one clear line."""
    try:
        when = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise BadInput(f"{option} 须为 ISO 时间（如 2026-11-02T16:00），收到“{value}”。",
                       f"{option} must be an ISO time (e.g. 2026-11-02T16:00), got '{value}'."
                       ) from None
    return when if when.tzinfo else when.replace(tzinfo=hall_timezone())


def check_window(t0: datetime, t1: datetime) -> None:
    if t1 <= t0:
        raise BadInput("结束时间须晚于开始时间。", "The end time must be after the start time.")
    if t1 - t0 > timedelta(days=MAX_WINDOW_DAYS):
        raise BadInput(f"时间窗最长 {MAX_WINDOW_DAYS} 天。",
                       f"A time window covers at most {MAX_WINDOW_DAYS} days.")


def who_was_at(engine: Engine, lon: float, lat: float, radius_m: float, t0: datetime,
               t1: datetime) -> list[dict]:
    """Every terminal with a fix within ``radius_m`` of (lon, lat) in [t0, t1], with its
    worker, the first and last such fix, how many, and the closest one.

    A bounding box on lon/lat narrows the fixes in SQL (the SP-GiST index on
    ``point(lon, lat)`` finds them, the partitions and the BRIN index on ``ts`` keep to
    the window); the exact great-circle distance decides (``maps.coords``).  Ordered by
    the first time there.
    """
    import math

    from maps.coords import haversine_m

    for value, lo, hi, zh, en in ((lon, -180.0, 180.0, "经度", "longitude"),
                                  (lat, -85.0, 85.0, "纬度", "latitude"),
                                  (radius_m, 0.0, MAX_RADIUS_M, "半径（米）", "radius (m)")):
        if not (isinstance(value, int | float) and math.isfinite(value) and lo <= value <= hi
                and not (en.startswith("radius") and value <= 0)):
            raise BadInput(f"{zh}须在 {lo:g}–{hi:g} 之间（收到 {value}）。",
                           f"The {en} must be within {lo:g}–{hi:g} (got {value}).")
    check_window(t0, t1)
    dlat = radius_m / 111_195.0 * 1.01 + 1e-7  # a little wider than the circle: never cut it
    dlon = dlat / max(0.01, math.cos(math.radians(abs(lat) + dlat)))
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT device_id, ts, lon, lat FROM positions WHERE ts >= :t0 AND ts <= :t1 "
            "AND point(lon, lat) <@ box(point(:x0, :y0), point(:x1, :y1)) "
            "ORDER BY device_id, ts"),
            {"t0": t0, "t1": t1, "x0": lon - dlon, "x1": lon + dlon, "y0": lat - dlat,
             "y1": lat + dlat}).all()
        if not rows:
            return []
        dev = np.array([r[0] for r in rows], np.int64)
        dist = np.asarray(haversine_m(lon, lat, np.array([r[2] for r in rows]),
                                      np.array([r[3] for r in rows])), np.float64).reshape(-1)
        near = np.flatnonzero(dist <= radius_m)
        found: dict[int, dict] = {}
        for i in near.tolist():
            d, ts = int(dev[i]), rows[i][1]
            hit = found.get(d)
            if hit is None:
                found[d] = hit = {"device_id": d, "first": ts, "last": ts, "fixes": 0,
                                  "closest_m": float(dist[i]), "closest_at": ts,
                                  "closest_lon": rows[i][2], "closest_lat": rows[i][3]}
            hit["last"], hit["fixes"] = ts, hit["fixes"] + 1
            if dist[i] < hit["closest_m"]:
                hit.update(closest_m=float(dist[i]), closest_at=ts, closest_lon=rows[i][2],
                           closest_lat=rows[i][3])
        who = {r.device_id: r for r in conn.execute(text(
            "SELECT d.id AS device_id, d.identifier, w.id AS worker_id, w.code, w.name, "
            "g.code AS grid_code FROM device d LEFT JOIN worker w ON w.id = d.worker_id "
            "LEFT JOIN grid g ON g.id = w.grid_id WHERE d.id = ANY(:d)"), {"d": list(found)})}
    out = []
    for d, hit in found.items():
        r = who.get(d)
        hit.update(device=r.identifier if r else None, worker_id=r.worker_id if r else None,
                   worker=r.code if r else None, name=r.name if r else None,
                   grid=r.grid_code if r else None, closest_m=round(hit["closest_m"], 1))
        out.append(hit)
    return sorted(out, key=lambda h: (h["first"], h["device_id"]))


def worker_track(engine: Engine, worker_code: str, t0: datetime,
                 t1: datetime) -> tuple[str, Tracks]:
    """A worker's name and fixes in [t0, t1] from every terminal of theirs (for GPX)."""
    check_window(t0, t1)
    with engine.connect() as conn:
        w = conn.execute(text("SELECT id, name FROM worker WHERE code = :c"),
                         {"c": worker_code}).first()
        if w is None:
            raise BadInput(f"未知网格员“{worker_code}”。", f"Unknown worker '{worker_code}'.")
        devices = conn.execute(text("SELECT id FROM device WHERE worker_id = :w"),
                               {"w": w.id}).scalars().all()
    tracks = load_tracks(engine, t0, t1 + timedelta(microseconds=1), list(devices))
    order = np.argsort(tracks.t, kind="stable")
    return w.name, Tracks(*(getattr(tracks, f)[order] for f in (
        "device", "t", "lon", "lat", "speed", "course", "battery", "grid")))
