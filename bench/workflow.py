"""Benchmark: case actions per second, and commit-to-delivery time of the change feed.

    python bench/workflow.py [--cases-per-worker 50] [--workers 8]

Eight worker processes (eight operators, each with its own connection) take
cases through the whole loop (report, accept, file, dispatch, acknowledge,
feedback, verify, archive) through the real services.  Meanwhile a second
listener (``db.feed.ChangeFeed``) and a polling baseline (re-query the log
every 500 ms, what a console without LISTEN would do) record when each log
entry reaches them; the workers record when each action committed.  The
baseline for throughput is one connection doing the same work alone.

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

from bench.benchdb import fresh_database, server_urls

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
    from db.case_actions import perform
    from db.engine import make_engine
    from db.users import get_actor

    engine = make_engine(url, pool_size=1)
    who = {
        role: get_actor(engine, f"bench_{role}", f"bench-{os.getpid()}")
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
    args = ap.parse_args()

    from db.feed import ChangeFeed, current_seq, dsn_of

    url_for, _server = server_urls()

    url = prepare(url_for, "bench_workflow")
    from db.engine import make_engine

    engine = make_engine(url)
    per_case = 1 + len(CHAIN)

    # Baseline: one connection alone.
    base_cases = max(10, args.cases_per_worker // 2)
    base_wall, base_commits = run_workers(url, 1, base_cases)
    base_rate = len(base_commits) / base_wall

    # The measured run: N connections, with a LISTEN feed and a 500 ms poller watching.
    start_seq = current_seq(engine)
    feed_arrivals: dict[int, float] = {}

    def on_entries(entries) -> None:
        now = time.monotonic()
        for e in entries:
            feed_arrivals[e.seq] = now

    feed = ChangeFeed(dsn_of(engine), on_entries, start_seq=start_seq).start()
    poller = Poller(url, start_seq)
    poller.start()
    time.sleep(0.5)
    wall, commits = run_workers(url, args.workers, args.cases_per_worker)
    time.sleep(1.2)  # let the poller see the tail
    feed.stop()
    poller.stop_flag.set()
    poller.join()
    rate = len(commits) / wall
    loaded_feed = latencies(commits, feed_arrivals)
    loaded_poll = latencies(commits, poller.arrivals)

    # Light load: one operator at a time, the hall on a quiet afternoon.
    start_seq = current_seq(engine)
    feed_arrivals.clear()
    feed = ChangeFeed(dsn_of(engine), on_entries, start_seq=start_seq).start()
    poller = Poller(url, start_seq)
    poller.start()
    time.sleep(0.5)
    from db.case_actions import perform
    from db.users import get_actor

    intake = get_actor(engine, "bench_intake", "bench")
    light: list[tuple[int, float]] = []
    for _ in range(200):
        r = perform(engine, intake, "report", **REPORT)
        light.append((r.seq, time.monotonic()))
        time.sleep(0.01)
    time.sleep(1.2)
    feed.stop()
    poller.stop_flag.set()
    poller.join()
    light_feed = latencies(light, feed_arrivals)
    light_poll = latencies(light, poller.arrivals)
    engine.dispose()

    missing = len(commits) - len(loaded_feed)
    print(
        f"workers: {args.workers} processes × {args.cases_per_worker} cases × "
        f"{per_case} actions = {len(commits)} actions in {wall:.2f} s"
    )
    print(
        f"throughput: {rate:,.0f} actions/s (aim ≥ 500); one connection alone: "
        f"{base_rate:,.0f} actions/s; ratio {rate / base_rate:.2f}×"
    )
    print(
        f"feed under load: p50 {pct(loaded_feed, 0.5):.1f} ms, p99 {pct(loaded_feed, 0.99):.1f} ms "
        f"(aim p99 ≤ 100 ms); entries missed: {missing}"
    )
    print(
        f"polling 500 ms under load: p50 {pct(loaded_poll, 0.5):.1f} ms, "
        f"p99 {pct(loaded_poll, 0.99):.1f} ms"
    )
    print(
        f"feed at light load: p50 {pct(light_feed, 0.5):.1f} ms, "
        f"p99 {pct(light_feed, 0.99):.1f} ms; "
        f"polling: p50 {pct(light_poll, 0.5):.1f} ms, p99 {pct(light_poll, 0.99):.1f} ms"
    )
    figures = {
        "actions_per_s": round(rate, 1),
        "actions_per_s_aim": 500,
        "actions_per_s_baseline_one_connection": round(base_rate, 1),
        "feed_p50_ms": round(pct(loaded_feed, 0.5), 2),
        "feed_p99_ms": round(pct(loaded_feed, 0.99), 2),
        "feed_p99_aim_ms": 100,
        "poll_p50_ms": round(pct(loaded_poll, 0.5), 2),
        "poll_p99_ms": round(pct(loaded_poll, 0.99), 2),
        "poll_over_feed_p99_ratio": round(
            pct(loaded_poll, 0.99) / max(pct(loaded_feed, 0.99), 1e-3), 1
        ),
        "light_feed_p99_ms": round(pct(light_feed, 0.99), 2),
        "light_poll_p99_ms": round(pct(light_poll, 0.99), 2),
        "feed_entries_missed": missing,
        "workers": args.workers,
        "actions": len(commits),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
