"""Benchmark: case actions per second, and commit-to-delivery time of the change feed.

    python bench/workflow.py [--cases-per-worker 50] [--workers 8] [--poll-ms 500,100]

Eight worker processes (eight operators, each with its own connection) take
cases through the whole loop (report, accept, file, dispatch, acknowledge,
feedback, verify, archive) through the real services.  Meanwhile a second
listener (``db.feed.ChangeFeed``) and the polling baseline (re-query the log
every ``--poll-ms``, what a console without LISTEN would do; one poller per
interval, each with its own connection, all watching the same run: 500 ms
and 100 ms by default) record when each log entry reaches them; the workers
record when each action committed.  The baseline for throughput is one
connection doing the same work alone.

Prints the figures and ends with one JSON line: each figure beside its aim
and its baseline.  Runs on the embedded server (a throw-away data directory)
unless GRID_DATABASE_URL names one.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchdb import fresh_database, machine_load, server_urls

CHAIN = [
    ("accept", "intake", {}),
    ("file", "intake", {}),
    ("dispatch", "dispatcher", {"department": "huanwei"}),
    ("acknowledge", "department", {}),
    ("feedback", "department", {"evidence": "已清理"}),
    ("verify_pass", "verifier", {}),
    ("archive", "intake", {}),
]
REPORT = {"category": "S0102", "lon": 116.41, "lat": 39.92, "description": "路边暴露垃圾"}


def _worker(url: str, n_cases: int, start: mp.Event, out: mp.Queue) -> None:
    """One operator's connection.  ``url`` of the console role: each user logs in and every
    action is checked by the database (revision 0005); of the owner: nothing is checked."""
    from db.case_actions import perform
    from db.engine import make_engine
    from db.users import authenticate, get_actor

    engine = make_engine(url, pool_size=1)
    checked = "grid_console@" in url
    station = f"bench-{os.getpid()}"
    who = {
        role: authenticate(engine, f"bench_{role}", "bench-pass", station)
        if checked else get_actor(engine, f"bench_{role}", station)
        for role in ("intake", "dispatcher", "department", "verifier")
    }
    commits: list[tuple[int, float]] = []
    start.wait()
    t0 = time.monotonic()
    for _ in range(n_cases):
        r = perform(engine, who["intake"], "report", **REPORT)
        commits.append((r.seq, time.monotonic()))
        for action, role, params in CHAIN:
            r = perform(engine, who[role], action, r.number, r.version, **params)
            commits.append((r.seq, time.monotonic()))
    out.put((time.monotonic() - t0, commits))
    engine.dispose()


def run_workers(url: str, workers: int, n_cases: int) -> tuple[float, list[tuple[int, float]]]:
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, n_cases, start, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let every worker connect and log in before the clock starts
    t0 = time.monotonic()
    start.set()
    results = [out.get() for _ in procs]
    wall = time.monotonic() - t0
    for p in procs:
        p.join()
    commits = [c for _, cs in results for c in cs]
    return wall, commits


class Poller(threading.Thread):
    """The baseline: re-query the log every ``interval`` seconds."""

    def __init__(self, url: str, start_seq: int, interval: float = 0.5):
        super().__init__(daemon=True)
        import psycopg2

        self.conn = psycopg2.connect(url.replace("+psycopg2", ""))
        self.conn.autocommit = True
        self.last = start_seq
        self.interval = interval
        self.arrivals: dict[int, float] = {}
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.wait(self.interval):
            with self.conn.cursor() as cur:
                cur.execute("SELECT seq FROM case_log WHERE seq > %s ORDER BY seq", (self.last,))
                rows = cur.fetchall()
            now = time.monotonic()
            for (seq,) in rows:
                self.arrivals[seq] = now
            if rows:
                self.last = rows[-1][0]


def poll_intervals(text: str) -> tuple[float, ...]:
    """The ``--poll-ms`` list, in ms; a bad one ends the run with one clear line."""
    try:
        intervals = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        intervals = ()
    if not intervals or min(intervals) <= 0:
        raise SystemExit(f"--poll-ms: positive numbers of milliseconds, comma-separated: {text!r}")
    return intervals


def start_pollers(url: str, start_seq: int, intervals_ms) -> dict[float, Poller]:
    """One polling baseline per interval, each on its own connection, all started."""
    pollers = {ms: Poller(url, start_seq, ms / 1000) for ms in intervals_ms}
    for p in pollers.values():
        p.start()
    return pollers


def stop_pollers(pollers: dict[float, Poller]) -> None:
    for p in pollers.values():
        p.stop_flag.set()
    for p in pollers.values():
        p.join()
        p.conn.close()


def latencies(commits: list[tuple[int, float]], arrivals: dict[int, float]) -> list[float]:
    return [max(0.0, arrivals[s] - t) * 1000 for s, t in commits if s in arrivals]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def prepare(url_for, name: str) -> str:
    """A fresh database with one user per role the workers act as."""
    from db.engine import make_engine
    from db.users import add_user

    url = fresh_database(url_for, name)
    engine = make_engine(url)
    for role in ("intake", "dispatcher", "department", "verifier"):
        add_user(
            engine,
            f"bench_{role}",
            role,
            "bench-pass",
            f"压测{role}",
            "huanwei" if role == "department" else None,
        )
    engine.dispose()
    return url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--cases-per-worker", type=int, default=50)
    ap.add_argument(
        "--poll-ms",
        default="500,100",
        help="the polling baseline's intervals in ms, comma-separated (one poller each)",
    )
    args = ap.parse_args()
    intervals = poll_intervals(args.poll_ms)
    load_before = os.getloadavg()[0]

    from db.feed import ChangeFeed, current_seq, dsn_of

    url_for, _server = server_urls()

    url = prepare(url_for, "bench_workflow")
    from db.engine import make_engine, role_url

    engine = make_engine(url)
    # The operators act as consoles do, through the database's checks; the owner's
    # unchecked path is measured beside it (the cost of the checks, same run).
    console_url = os.environ.get("GRID_BENCH_CONSOLE_URL") or (
        None if os.environ.get("GRID_DATABASE_URL") else role_url(url, "grid_console")
    )
    owner_url = url
    url = console_url or url
    per_case = 1 + len(CHAIN)

    # Baseline: one connection alone.
    base_cases = max(10, args.cases_per_worker // 2)
    base_wall, base_commits = run_workers(url, 1, base_cases)
    base_rate = len(base_commits) / base_wall

    # The measured run: N connections, with a LISTEN feed and the pollers watching.
    tail = max(intervals) / 1000 + 0.7  # long enough for the slowest poller to see the tail
    start_seq = current_seq(engine)
    feed_arrivals: dict[int, float] = {}

    def on_entries(entries) -> None:
        now = time.monotonic()
        for e in entries:
            feed_arrivals[e.seq] = now

    feed = ChangeFeed(dsn_of(engine), on_entries, start_seq=start_seq).start()
    pollers = start_pollers(url, start_seq, intervals)
    time.sleep(0.5)
    wall, commits = run_workers(url, args.workers, args.cases_per_worker)
    time.sleep(tail)
    feed.stop()
    stop_pollers(pollers)
    rate = len(commits) / wall
    loaded_feed = latencies(commits, feed_arrivals)
    # The same load on the owner's connection, the database checking nothing.
    owner_wall, owner_commits = run_workers(owner_url, args.workers, args.cases_per_worker)
    owner_rate = len(owner_commits) / owner_wall
    loaded_poll = {ms: latencies(commits, p.arrivals) for ms, p in pollers.items()}

    # Light load: one operator at a time, the hall on a quiet afternoon.
    start_seq = current_seq(engine)
    feed_arrivals.clear()
    feed = ChangeFeed(dsn_of(engine), on_entries, start_seq=start_seq).start()
    pollers = start_pollers(url, start_seq, intervals)
    time.sleep(0.5)
    from db.case_actions import perform
    from db.users import get_actor

    intake = get_actor(engine, "bench_intake", "bench")
    light: list[tuple[int, float]] = []
    for _ in range(200):
        r = perform(engine, intake, "report", **REPORT)
        light.append((r.seq, time.monotonic()))
        time.sleep(0.01)
    time.sleep(tail)
    feed.stop()
    stop_pollers(pollers)
    light_feed = latencies(light, feed_arrivals)
    light_poll = {ms: latencies(light, p.arrivals) for ms, p in pollers.items()}
    engine.dispose()

    missing = len(commits) - len(loaded_feed)
    print(
        f"workers: {args.workers} processes × {args.cases_per_worker} cases × "
        f"{per_case} actions = {len(commits)} actions in {wall:.2f} s"
    )
    print(
        f"throughput: {rate:,.0f} actions/s (aim ≥ 500) with the database's checks "
        f"({'on' if console_url else 'OFF: no console URL'}); one connection alone: "
        f"{base_rate:,.0f} actions/s; ratio {rate / base_rate:.2f}×"
    )
    print(
        f"the same load unchecked (owner's connection): {owner_rate:,.0f} actions/s; "
        f"the checks cost {(1 - rate / owner_rate) * 100:.0f} % of throughput"
    )
    print(
        f"feed under load: p50 {pct(loaded_feed, 0.5):.1f} ms, p99 {pct(loaded_feed, 0.99):.1f} ms "
        f"(aim p99 ≤ 100 ms); entries missed: {missing}"
    )
    for ms, lat in loaded_poll.items():
        print(
            f"polling every {ms:g} ms under load: p50 {pct(lat, 0.5):.1f} ms, "
            f"p99 {pct(lat, 0.99):.1f} ms ({pct(lat, 0.99) / max(pct(loaded_feed, 0.99), 1e-3):.1f}"
            f"× the feed's p99); entries seen {len(lat)} of {len(commits)}"
        )
    print(
        f"feed at light load: p50 {pct(light_feed, 0.5):.1f} ms, p99 {pct(light_feed, 0.99):.1f} ms"
    )
    for ms, lat in light_poll.items():
        print(
            f"polling every {ms:g} ms at light load: p50 {pct(lat, 0.5):.1f} ms, "
            f"p99 {pct(lat, 0.99):.1f} ms"
        )
    figures = {
        "actions_per_s": round(rate, 1),
        "actions_per_s_aim": 500,
        "actions_per_s_baseline_one_connection": round(base_rate, 1),
        "checks_on": bool(console_url),
        "actions_per_s_unchecked_owner": round(owner_rate, 1),
        "feed_p50_ms": round(pct(loaded_feed, 0.5), 2),
        "feed_p99_ms": round(pct(loaded_feed, 0.99), 2),
        "feed_p99_aim_ms": 100,
        "poll_intervals_ms": list(intervals),
        "light_feed_p99_ms": round(pct(light_feed, 0.99), 2),
        "feed_entries_missed": missing,
        "workers": args.workers,
        "actions": len(commits),
        **machine_load(load_before),
    }
    for ms in intervals:  # each polling baseline beside the feed
        key = f"poll_{ms:g}ms"
        figures[f"{key}_p50_ms"] = round(pct(loaded_poll[ms], 0.5), 2)
        figures[f"{key}_p99_ms"] = round(pct(loaded_poll[ms], 0.99), 2)
        figures[f"{key}_over_feed_p99_ratio"] = round(
            pct(loaded_poll[ms], 0.99) / max(pct(loaded_feed, 0.99), 1e-3), 1
        )
        figures[f"light_{key}_p99_ms"] = round(pct(light_poll[ms], 0.99), 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
