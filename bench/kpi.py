"""The evaluation on a year: a million cases with their full logs; every metric per report.

Builds Dongcheng (589 grids) and one year of cases (``--cases``, default 1,000,000) with
their whole lifecycle in the case log (about eight entries each: report, accept, file,
dispatch, acknowledge, feedback, verify_pass, archive; some returned, reworked, extended,
rejected, the newest still open), then measures, each the median of three warm runs:

* every metric grouped by grid for a month and for the year; by department for the
  month and the year; the district for the year; the district's daily trend for a year
  (``db.metrics`` on the daily rollup of revision 0010, ``db.kpi_rollup``);
* beside each, the direct per-case query over the folded facts (``path="direct"``, what
  the reports ran before the rollup), with a check that both give the same rows;
* and the straightforward alternative: one query per metric per group over the
  raw log (deadlines from the time limits), timed on a sample of groups (``--sample``)
  and scaled to all of them — said so in its line — as a ratio.

After the fold the rollup's tables are vacuumed and analysed (what autovacuum does soon
after a load; the medians' index walks read the visibility map).

The log is loaded the fastest honest way: generated here in time order with its hash
chain computed exactly as the log trigger computes it (``grid_log_text``), and COPYed as
the owner with the trigger switched off for the load; ``db.audit.verify`` then checks the
chain on its first and last entries, so the log is the one the trigger would have
written.  (Through the trigger, ~90 µs an entry, 8 M entries would take about 12 minutes
more; ``bench/audit.py`` measures that path.)  The fold of the whole log into facts
(``grid_metrics_refresh``) is timed too.

Usage: ``python bench/kpi.py [--cases 1000000] [--sample 10]``.  Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchdb import fresh_database, machine_load, server_urls

AIM_S = 1.0  # per report
YEAR = 2025
SEP = "\x1f"
NULL = "\\N"
MICRO = 1_000_000
ACTIONS_TO = {  # action → (from_status, to_status)
    "report": (None, "reported"),
    "accept": ("reported", "accepted"),
    "reject": ("reported", "rejected"),
    "file": ("accepted", "filed"),
    "dispatch": ("filed", "dispatched"),
    "acknowledge": ("dispatched", "in_progress"),
    "return": ("in_progress", "filed"),
    "request_extension": ("in_progress", "in_progress"),
    "approve_extension": ("in_progress", "in_progress"),
    "feedback": ("in_progress", "awaiting_verification"),
    "verify_fail": ("awaiting_verification", "dispatched"),
    "verify_pass": ("awaiting_verification", "closed"),
    "archive": ("closed", "archived"),
}
ROLES = {"report": "intake", "accept": "intake", "reject": "intake", "file": "intake",
         "dispatch": "dispatcher", "acknowledge": "department", "return": "department",
         "request_extension": "department", "approve_extension": "leader",
         "feedback": "department", "verify_fail": "verifier", "verify_pass": "verifier",
         "archive": "intake"}
ACTORS = {"intake": "李娜", "dispatcher": "王伟", "department": "环卫所", "leader": "刘洋",
          "verifier": "陈静"}


def jsonb_text(d: dict) -> str:
    """A dict as PostgreSQL prints the jsonb (keys by length, then bytes; ', ' and ': ')."""
    keys = sorted(d, key=lambda k: (len(k.encode()), k.encode()))
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: "
                           f"{json.dumps(d[k], ensure_ascii=False)}" for k in keys) + "}"


# --- building the year ----------------------------------------------------------------


def world(url: str) -> dict:
    """Dongcheng's grids, the categories with their limits and departments."""
    from sqlalchemy import text

    from db.engine import make_engine
    from db.territory import import_district

    engine = make_engine(url)
    from importlib import resources

    started = time.perf_counter()
    import_district(engine, resources.files("resources").joinpath("districts/110101.geojson"))
    print(f"Dongcheng imported in {time.perf_counter() - started:.1f} s")
    with engine.connect() as conn:
        grids = conn.execute(text(
            "SELECT id, (min_lon + max_lon) / 2, (min_lat + max_lat) / 2 FROM grid")).all()
        cats = conn.execute(text(
            "SELECT c.id, c.code, coalesce(c.default_department_id, "
            "(SELECT min(id) FROM department)), t.handle_h FROM category c "
            "JOIN time_limit t ON t.category_id = c.id AND t.severity = 'normal' "
            "WHERE c.parent_id IS NOT NULL ORDER BY c.id")).all()
        depts = [r[0] for r in conn.execute(text("SELECT id FROM department ORDER BY id"))]
    engine.dispose()
    return {"grids": grids, "cats": cats, "depts": depts}


def generate(n_cases: int, w: dict, seed: int = 14):
    """Cases and their events: arrays of (time µs, case index, action, department)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    start = int(datetime(YEAR, 1, 1, tzinfo=UTC).timestamp() * MICRO) - 8 * 3600 * MICRO
    end = start + 365 * 86400 * MICRO
    day = rng.integers(0, 365, n_cases)
    hour = np.clip(np.where(rng.random(n_cases) < 0.7, rng.normal(11, 3, n_cases),
                            rng.uniform(0, 24, n_cases)), 0, 23.99)
    reported = np.sort(start + day * 86400 * MICRO + (hour * 3600 * MICRO).astype(np.int64))
    cat_idx = rng.integers(0, len(w["cats"]), n_cases)
    grid_idx = rng.integers(0, len(w["grids"]), n_cases)
    kind = rng.random(n_cases)  # <.01 rejected, <.06 returned, <.13 rework, <.15 extension
    late = rng.random(n_cases) < 0.03
    minutes = MICRO * 60
    times, cases, acts, depts = [], [], [], []
    handle_h = np.array([c[3] for c in w["cats"]])[cat_idx]
    dept_of = np.array([c[2] for c in w["cats"]])[cat_idx]
    wrong = np.array(w["depts"])[rng.integers(0, len(w["depts"]), n_cases)]
    gaps = rng.exponential(1.0, (n_cases, 12))
    for i in range(n_cases):
        t = int(reported[i])
        g = gaps[i]
        ev = [(t, "report", 0)]
        if kind[i] < 0.01:
            ev.append((t + int(20 * minutes * g[0]), "reject", 0))
        else:
            t += int(10 * minutes * g[0])
            ev.append((t, "accept", 0))
            t += int(15 * minutes * g[1])
            ev.append((t, "file", 0))
            d = int(dept_of[i])
            if kind[i] < 0.06:
                t += int(20 * minutes * g[2])
                ev.append((t, "dispatch", int(wrong[i])))
                t += int(40 * minutes * g[3])
                ev.append((t, "return", int(wrong[i])))
            t += int(20 * minutes * g[4])
            ev.append((t, "dispatch", d))
            rounds = 2 if 0.06 <= kind[i] < 0.13 else 1
            for r in range(rounds):
                t += int(30 * minutes * g[5 + r])
                ev.append((t, "acknowledge", d))
                span = handle_h[i] * 3600 * MICRO
                if r == 0 and 0.13 <= kind[i] < 0.15:
                    ev.append((t + int(span * 0.3), "request_extension", d))
                    ev.append((t + int(span * 0.4), "approve_extension", d))
                    span += 24 * 3600 * MICRO
                t += int(span * (1.3 if late[i] else 0.5) * min(g[7 + r], 1.9) / 1.9)
                ev.append((t, "feedback", d))
                t += int(90 * minutes * g[9])
                ev.append((t, "verify_fail" if r < rounds - 1 else "verify_pass", 0))
            t += int(30 * 3600 * MICRO * g[10])
            ev.append((t, "archive", 0))
        for at, action, dep in ev:
            if at >= end:
                break  # the newest cases are still open when the year ends
            times.append(at)
            cases.append(i)
            acts.append(action)
            depts.append(dep)
    order = np.argsort(np.array(times, dtype=np.int64), kind="stable")
    return {
        "reported": reported, "cat_idx": cat_idx, "grid_idx": grid_idx,
        "times": np.array(times, dtype=np.int64)[order], "cases": np.array(cases)[order],
        "acts": [acts[j] for j in order], "depts": np.array(depts)[order], "end": end,
    }


def _ts(us: int) -> str:
    return datetime.fromtimestamp(us / MICRO, UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def load(url: str, w: dict, gen: dict) -> tuple[int, float]:
    """COPY the cases and the chained log as the owner; (entries, seconds)."""
    import psycopg2

    started = time.perf_counter()
    n = len(gen["reported"])
    acts, cases_of, times, depts = gen["acts"], gen["cases"], gen["times"], gen["depts"]
    # final state of each case, from its events
    version = [0] * n
    status = ["reported"] * n
    last_dept = [None] * n
    for a, c, d in zip(acts, cases_of, depts, strict=True):
        version[c] += 1
        status[c] = ACTIONS_TO[a][1]
        if a == "dispatch":
            last_dept[c] = int(d)
    conn = psycopg2.connect(url.replace("+psycopg2", ""))
    conn.autocommit = False
    cur = conn.cursor()
    cur.execute("SELECT nextval(pg_get_serial_sequence('case', 'id'))")
    first_id = cur.fetchone()[0]
    cur.execute(f"SELECT setval(pg_get_serial_sequence('case', 'id'), {first_id + n})")
    grids, cats = w["grids"], w["cats"]
    buf = io.StringIO()
    for i in range(n):
        g = grids[gen["grid_idx"][i]]
        cat = cats[gen["cat_idx"][i]]
        rep = _ts(int(gen["reported"][i]))
        dep = last_dept[i] if status[i] not in ("reported", "accepted", "filed", "rejected") \
            else None
        buf.write(f"{first_id + i}\tY{i:09d}\tpatrol\t{cat[0]}\tnormal\t{g[1]}\t{g[2]}\t{g[0]}\t"
                  f"bench {i}\t{status[i]}\t{NULL if dep is None else dep}\t{rep}\t{rep}\t"
                  f"{version[i]}\t{rep}\n")
    buf.seek(0)
    cur.execute("ALTER TABLE \"case\" DISABLE TRIGGER USER")
    cur.copy_expert(
        'COPY "case" (id, number, source, category_id, severity, lon, lat, grid_id, description, '
        "status, department_id, reported_at, stage_started_at, version, updated_at) FROM STDIN",
        buf)
    cur.execute("ALTER TABLE \"case\" ENABLE ALWAYS TRIGGER case_guard")
    cur.execute("ALTER TABLE \"case\" ENABLE TRIGGER USER")
    cur.execute("ALTER TABLE \"case\" ENABLE ALWAYS TRIGGER case_guard")
    cur.execute("ALTER TABLE \"case\" ENABLE ALWAYS TRIGGER case_origin_guard")
    print(f"{n:,} cases copied in {time.perf_counter() - started:.1f} s")
    payloads = {
        "report": lambda c, d: {"category": cats[gen["cat_idx"][c]][1], "severity": "normal",
                                "source": "patrol", "onsite": False, "attachments": 0},
        "dispatch": lambda c, d: {"department_id": d, "co_department_ids": [],
                                  "worker_id": None},
        "acknowledge": lambda c, d: {"department_id": d},
        "return": lambda c, d: {"department_id": d},
        "feedback": lambda c, d: {"department_id": d, "evidence": "已处置", "attachments": 0,
                                  "waiting_for": 0},
        "request_extension": lambda c, d: {"hours": 24.0},
        "approve_extension": lambda c, d: {"hours": 24.0, "approved": True},
        "archive": lambda c, d: {"evaluation": "satisfied"},
    }
    reasons = {"reject": "不属于城市管理范围", "return": "不属于本单位职责",
               "verify_fail": "现场复查仍未整改到位", "request_extension": "需要协调"}
    cur.execute("ALTER TABLE case_log DISABLE TRIGGER case_log_guard")
    cur.execute("ALTER TABLE case_log DISABLE TRIGGER case_log_notify")
    # The foreign key and the secondary indexes are rebuilt after the load, in one pass
    # each (the key is validated then against every entry): what a bulk load does.
    cur.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conname = 'fk_case_log_case_id_case'")
    fk_def = cur.fetchone()[0]
    cur.execute("ALTER TABLE case_log DROP CONSTRAINT fk_case_log_case_id_case")
    cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'case_log' "
                "AND indexname <> 'pk_case_log'")
    index_defs = cur.fetchall()
    for name, _definition in index_defs:
        cur.execute(f"DROP INDEX {name}")
    cur.execute("SELECT nextval(pg_get_serial_sequence('case_log', 'seq'))")
    seq = cur.fetchone()[0] - 1
    entries = len(acts)
    cur.execute(f"SELECT setval(pg_get_serial_sequence('case_log', 'seq'), {seq + entries})")
    prev = b""
    ver = [0] * n
    chunk = 500_000
    out = io.StringIO()
    copied = 0
    for j in range(entries):
        a, c = acts[j], int(cases_of[j])
        d = int(depts[j])
        seq += 1
        ver[c] += 1
        frm, to = ACTIONS_TO[a]
        role = ROLES[a]
        us = int(times[j])
        payload = jsonb_text(payloads[a](c, d)) if a in payloads else "{}"
        reason = reasons.get(a)
        cid, number = first_id + c, f"Y{c:09d}"
        content = SEP.join((str(seq), str(cid), number, a, frm or NULL, to, str(ver[c]), NULL,
                            ACTORS[role], role, "bench", str(us), reason or NULL, payload,
                            "local", "bench"))
        h = hashlib.sha256(prev + content.encode()).digest()
        out.write(f"{seq}\t{cid}\t{number}\t{a}\t{frm or NULL}\t{to}\t{ver[c]}\t{NULL}\t"
                  f"{ACTORS[role]}\t{role}\tbench\t{_ts(us)}\t{reason or NULL}\t"
                  f"{payload.replace(chr(92), chr(92) * 2)}\tlocal\tbench\t\\\\x{prev.hex()}\t"
                  f"\\\\x{h.hex()}\n")
        prev = h
        if (j + 1) % chunk == 0 or j + 1 == entries:
            out.seek(0)
            cur.copy_expert(
                "COPY case_log (seq, case_id, case_number, action, from_status, to_status, "
                "case_version, actor_id, actor_name, actor_role, workstation, at, reason, "
                "payload, client_addr, client_app, prev_hash, hash) FROM STDIN", out)
            copied = j + 1
            out = io.StringIO()
            el = time.perf_counter() - started
            print(f"  log {copied:,} / {entries:,} entries ({el:.0f} s)", flush=True)
    t = time.perf_counter()
    for _name, definition in index_defs:
        cur.execute(definition)
    cur.execute(f"ALTER TABLE case_log ADD CONSTRAINT fk_case_log_case_id_case {fk_def}")
    print(f"  indexes and the foreign key rebuilt in {time.perf_counter() - t:.1f} s")
    cur.execute("ALTER TABLE case_log ENABLE ALWAYS TRIGGER case_log_guard")
    cur.execute("ALTER TABLE case_log ENABLE TRIGGER case_log_notify")
    conn.commit()
    conn.close()
    return entries, time.perf_counter() - started


# --- measuring --------------------------------------------------------------------------


def timed(fn, runs: int = 3) -> tuple[float, object]:
    out, times = None, []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


# The straightforward way: each metric of one group, its own query over the raw log
# (the case's first steps found by scanning its entries; deadlines from the time limits).
_STEPS = """
WITH e AS (
    SELECT l.case_id, l.action, l.to_status, l.at, l.payload FROM case_log l
      JOIN "case" c ON c.id = l.case_id {join} WHERE {group}
), s AS (
    SELECT case_id,
           min(at) FILTER (WHERE action = 'report') AS rep,
           min(at) FILTER (WHERE action = 'accept') AS acc,
           min(at) FILTER (WHERE action = 'file') AS fil,
           min(at) FILTER (WHERE action = 'dispatch') AS dis,
           max(at) FILTER (WHERE action IN ('dispatch', 'reassign')) AS last_dis,
           min(at) FILTER (WHERE action = 'feedback' AND to_status = 'awaiting_verification')
               AS fb,
           min(at) FILTER (WHERE action IN ('verify_pass', 'close')) AS clo,
           min(at) FILTER (WHERE action = 'return') AS ret,
           min(at) FILTER (WHERE action = 'verify_fail') AS rew,
           coalesce(sum((payload->>'hours')::float8)
               FILTER (WHERE action = 'approve_extension'), 0) AS ext
      FROM e GROUP BY case_id
), f AS (
    SELECT s.*, t.file_h, t.dispatch_h, t.handle_h, t.close_h FROM s
      JOIN "case" c ON c.id = s.case_id
      JOIN time_limit t ON t.category_id = c.category_id AND t.severity = c.severity
)
"""
_DUE = ("fil < :t1 AND (clo IS NULL OR clo >= :t0) AND (clo < :t1 OR "
        "fil + make_interval(secs => 3600 * (close_h + ext)) < :t1)")
BASELINE_METRICS = {
    "reported": "count(*) FILTER (WHERE rep >= :t0 AND rep < :t1)",
    "filed": "count(*) FILTER (WHERE fil >= :t0 AND fil < :t1)",
    "dispatched": "count(*) FILTER (WHERE dis >= :t0 AND dis < :t1)",
    "closed": "count(*) FILTER (WHERE clo >= :t0 AND clo < :t1)",
    "due": f"count(*) FILTER (WHERE {_DUE})",
    "timely_filing": "avg((fil <= acc + make_interval(secs => 3600 * file_h))::int) "
                     "FILTER (WHERE fil >= :t0 AND fil < :t1)",
    "timely_dispatch": "avg((dis <= fil + make_interval(secs => 3600 * dispatch_h))::int) "
                       "FILTER (WHERE dis >= :t0 AND dis < :t1)",
    "ontime_handling": "avg((fb <= last_dis + make_interval(secs => 3600 * (handle_h + ext)))"
                       "::int) FILTER (WHERE fb >= :t0 AND fb < :t1)",
    "dispatch_accuracy": "1 - avg((ret < :t1)::int) FILTER (WHERE dis >= :t0 AND dis < :t1)",
    "rework": f"avg((rew < :t1)::int) FILTER (WHERE {_DUE})",
    "closure": f"count(*) FILTER (WHERE clo >= :t0 AND clo < :t1)::float8 / "
               f"nullif(count(*) FILTER (WHERE {_DUE}), 0)",
    "ontime_closure": "count(*) FILTER (WHERE clo >= :t0 AND clo < :t1 AND clo <= fil + "
                      f"make_interval(secs => 3600 * (close_h + ext)))::float8 / "
                      f"nullif(count(*) FILTER (WHERE {_DUE}), 0)",
    "handling_hours_mean": "avg(extract(epoch FROM clo - fil) / 3600) "
                           "FILTER (WHERE clo >= :t0 AND clo < :t1)",
    "handling_hours_median": "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "
                             "clo - fil) / 3600) FILTER (WHERE clo >= :t0 AND clo < :t1)",
}


BASELINE_TIMED = len(BASELINE_METRICS)  # how many of the metric queries are timed (scaled)


def baseline(engine, by: str, keys: list, t0, t1) -> float:
    """Every metric of each group in ``keys``, one query each; seconds for all of them
    (with ``--baseline-metrics N``, N of the queries timed and scaled to all)."""
    from sqlalchemy import text

    if by == "grid":
        join, group = "", "c.grid_id = :k"
    elif by == "department":  # naively, the case's department now
        join, group = "", "c.department_id = :k"
    else:
        join, group = "", "true"
    started = time.perf_counter()
    with engine.connect() as conn:
        for k in keys:
            for expr in list(BASELINE_METRICS.values())[:BASELINE_TIMED]:
                sql = _STEPS.format(join=join, group=group) + f"SELECT {expr} FROM f"
                conn.execute(text(sql), {"k": k, "ks": str(k), "t0": t0, "t1": t1}).scalar()
    return (time.perf_counter() - started) * len(BASELINE_METRICS) / BASELINE_TIMED


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=3, help="grids timed for the baseline")
    ap.add_argument("--days-sample", type=int, default=2, help="days timed for the baseline")
    ap.add_argument("--baseline-metrics", type=int, default=len(BASELINE_METRICS),
                    help="of the 14 per-metric baseline queries, how many to time (scaled)")
    ap.add_argument("--only", help="comma-separated reports to measure (default all)")
    ap.add_argument("--reuse", metavar="DIR",
                    help="measure the year an earlier run built (its data directory)")
    args = ap.parse_args()
    global BASELINE_TIMED
    BASELINE_TIMED = max(1, min(args.baseline_metrics, len(BASELINE_METRICS)))
    os.environ.setdefault("GRID_TZ", "Asia/Shanghai")
    load_before = os.getloadavg()[0]
    from db.audit import verify
    from db.engine import make_engine
    from db.metrics import refresh

    if args.reuse:  # the year built by an earlier run of this bench (its data directory)
        from db.embedded import EmbeddedServer

        server = EmbeddedServer(Path(args.reuse), "postgres")
        url = server.url_for("bench_kpi")
        return measure_all(args, url, server, None, None, None, load_before)
    url_for, server = server_urls("grid-bench-kpi-")
    url = fresh_database(url_for, "bench_kpi")
    print(f"data directory: {server.data_dir if server is not None else url}")
    w = world(url)
    t = time.perf_counter()
    gen = generate(args.cases, w)
    print(f"generated {args.cases:,} cases, {len(gen['acts']):,} log entries in "
          f"{time.perf_counter() - t:.1f} s")
    entries, load_s = load(url, w, gen)
    print(f"loaded {entries:,} log entries with their chain in {load_s:.1f} s "
          f"({load_s / entries * 1e6:.1f} µs an entry)")
    engine = make_engine(url)
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    head = verify(engine, max(1, entries - 50_000), None)
    tail_ok = head.ok
    start_ok = _verify_first(engine, 50_000)  # from the very first entry
    print(f"chain verified by audit verify: first 50,000 entries {start_ok}, "
          f"last {head.entries:,} {tail_ok}")
    t = time.perf_counter()
    folded = refresh(engine)
    fold_s = time.perf_counter() - t
    print(f"folded {folded:,} cases' logs into facts and the daily rollup in {fold_s:.1f} s")
    vacuum(engine)
    engine.dispose()
    return measure_all(args, url, server, entries, load_s, fold_s, load_before,
                       bool(start_ok and tail_ok))


def vacuum(engine) -> None:
    """VACUUM ANALYZE the rollup's tables, as autovacuum does after a load."""
    t = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE kpi_case, kpi_day")
    print(f"kpi_case and kpi_day vacuumed and analysed in {time.perf_counter() - t:.1f} s")


def same_rows(a: list[dict], b: list[dict], key: str = "key") -> bool:
    """The rollup's rows and the direct query's: the same groups and figures (the mean to
    1e-12: exact microseconds against a float8 average)."""
    import math

    ra, rb = {r.get(key): r for r in a}, {r.get(key): r for r in b}
    if set(ra) != set(rb):
        return False
    for k, row in rb.items():
        for name, value in row.items():
            other = ra[k].get(name)
            if isinstance(value, float) and isinstance(other, float) \
                    and name == "handling_hours_mean":
                if not math.isclose(value, other, rel_tol=1e-12):
                    return False
            elif other != value:
                return False
    return True


def measure_all(args, url, server, entries, load_s, fold_s, load_before,
                chain_ok=None) -> int:
    from db import migrate
    from db.engine import make_engine
    from db.metrics import Period, report

    engine = make_engine(url)
    if args.reuse:  # a year built before the rollup: migrate it (the rollup is built then)
        t = time.perf_counter()
        before = migrate.current_revision(engine)
        now = migrate.upgrade(engine)
        if now != before:
            print(f"migrated {before} → {now} in {time.perf_counter() - t:.1f} s")
            vacuum(engine)
    if entries is None:
        with engine.connect() as conn:
            entries = conn.exec_driver_sql("SELECT count(*) FROM case_log").scalar_one()
            args.cases = conn.exec_driver_sql('SELECT count(*) FROM "case"').scalar_one()
    month = Period(date(YEAR, 6, 1), date(YEAR, 7, 1))
    year = Period(date(YEAR, 1, 1), date(YEAR + 1, 1, 1))
    results = {}

    wanted = set(args.only.split(",")) if args.only else None

    def measure(name: str, fn, base_by: str | None, period: Period, all_keys: list,
                sample: list | None = None) -> None:
        if wanted is not None and name not in wanted:
            return
        secs, out = timed(fn)
        direct_s, direct = timed(lambda: fn("direct"), runs=1)
        same = same_rows(out["rows"], direct["rows"])
        line = (f"{name}: {secs:.3f} s (aim ≤ {AIM_S:.0f} s); the direct per-case query "
                f"{direct_s:.3f} s (× {direct_s / secs:.1f}), same rows: {same}")
        entry = {"s": round(secs, 3), "meets_aim": secs <= AIM_S,
                 "direct_s": round(direct_s, 3), "direct_ratio": round(direct_s / secs, 1),
                 "same_rows": same}
        if base_by is not None:
            sample = sample if sample is not None else all_keys[: args.sample]
            t0, t1 = period.bounds()
            b = baseline(engine, base_by, sample, t0, t1)
            scaled = b * len(all_keys) / max(1, len(sample))
            entry.update(baseline_s=round(scaled, 1), baseline_sample=len(sample),
                         baseline_groups=len(all_keys), ratio=round(scaled / secs, 1))
            line += (f"; one query per metric per group over the raw log: {b:.1f} s for "
                     f"{len(sample)} of {len(all_keys)} groups → {scaled:.0f} s for all "
                     f"(× {scaled / secs:.0f})")
        results[name] = entry
        print(line, flush=True)

    with engine.connect() as conn:
        grid_ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM grid ORDER BY id")]
        dept_ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM department ORDER BY id")]
    def rep(period, by):
        return lambda path="auto": report(engine, period, by, path=path)

    measure("grid_month", rep(month, "grid"), "grid", month, grid_ids, grid_ids[: args.sample])
    measure("grid_year", rep(year, "grid"), "grid", year, grid_ids,
            grid_ids[: max(1, args.sample // 2)])
    measure("department_month", rep(month, "department"), "department", month, dept_ids,
            dept_ids[1:2])
    measure("department_year", rep(year, "department"), "department", year, dept_ids,
            dept_ids[1:2])
    measure("district_year", rep(year, "district"), "district", year, [0])
    if wanted is None or "district_daily_trend_year" in wanted:
        measure_trend(args, engine, year, results)
    y = report(engine, year)["rows"][0]
    print(f"the year: reported {y['reported']:,}, closed {y['closed']:,}, due {y['due']:,}, "
          f"closure {y['closure']:.3f}, on time {y['ontime_closure']:.3f}, "
          f"mean handling {y['handling_hours_mean']:.1f} h")
    engine.dispose()
    if server is not None:
        server.stop()
    print(json.dumps({
        "bench": "kpi",
        "cases": args.cases,
        "log_entries": entries,
        "load_s": None if load_s is None else round(load_s, 1),
        "fold_s": None if fold_s is None else round(fold_s, 1),
        "chain_ok": chain_ok,
        "reused": bool(args.reuse),
        "baseline_metric_queries_timed": BASELINE_TIMED,
        "aim_s_per_report": AIM_S,
        "reports": results,
        "all_meet_aim": all(r["meets_aim"] for r in results.values()),
        "all_same_rows": all(r.get("same_rows") for r in results.values()),
        **machine_load(load_before),
    }, ensure_ascii=False))
    return 0


def measure_trend(args, engine, year, results) -> None:
    from db.metrics import Period, trend

    secs, days = timed(lambda: trend(engine, year, "day"))
    direct_s, direct = timed(lambda: trend(engine, year, "day", path="direct"), runs=1)
    same = same_rows(days, direct, "start")
    sample_days = [Period(date(YEAR, 3, 1) + timedelta(days=i * 97),
                          date(YEAR, 3, 2) + timedelta(days=i * 97))
                   for i in range(args.days_sample)]
    b = sum(baseline(engine, "district", [0], *p.bounds()) for p in sample_days)
    scaled = b * 365 / len(sample_days)
    results["district_daily_trend_year"] = {
        "s": round(secs, 3), "meets_aim": secs <= AIM_S, "days": len(days),
        "direct_s": round(direct_s, 3), "direct_ratio": round(direct_s / secs, 1),
        "same_rows": same,
        "baseline_s": round(scaled, 1), "baseline_sample": len(sample_days),
        "baseline_groups": 365, "ratio": round(scaled / secs, 1)}
    print(f"district_daily_trend_year: {secs:.3f} s for {len(days)} days (aim ≤ {AIM_S:.0f} s); "
          f"the direct per-case query {direct_s:.3f} s (× {direct_s / secs:.1f}), same rows: "
          f"{same}; one query per metric per day over the raw log: {b:.1f} s for "
          f"{len(sample_days)} days → {scaled:.0f} s for 365 (× {scaled / secs:.0f})", flush=True)


def _verify_first(engine, n: int) -> bool:
    """The chain from the very first entry over ``n`` entries, recomputed here."""
    from db.audit import _SELECT, entry_text

    prev = b""
    with engine.connect() as conn:
        for row in conn.exec_driver_sql(_SELECT + f" LIMIT {int(n)}", {"from": 0}):
            expected = hashlib.sha256(prev + entry_text(row)).digest()
            if bytes(row[16]) != prev or bytes(row[17]) != expected:
                return False
            prev = expected
    return True


if __name__ == "__main__":
    sys.exit(main())
