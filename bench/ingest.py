"""Benchmark: GPS reports into the database, over HTTP and through the bulk path.

    python bench/ingest.py [--devices 10000] [--seconds 10] [--procs 2] [--conns 32]

1. Over HTTP: the real gateway (``python main.py gateway`` in its own
   process) on loopback; load-generator processes hold keep-alive
   connections and send OsmAnd reports (query parameters, as OsmAnd and
   Traccar Client send them) for 10,000 registered devices, each answer
   awaited before the next request on that connection.  Measured: accepted
   (200) reports per second over the window, latency percentiles, and the
   time the gateway needs after the load to have everything committed (so
   the rate is sustained by the database, not only by the queue on disk).
2. The bulk path alone: ``store_positions`` with batches of 100,000.
3. The baseline, measured in the same run: one INSERT per report, each
   committed, one connection.

Prints the figures and ends with one JSON line: each figure beside its aim
and the baseline.  Runs on the embedded server (a throw-away data directory)
unless GRID_DATABASE_URL names one.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.benchdb import fresh_database, server_urls  # noqa: E402

BASE_LON, BASE_LAT = 116.40, 39.90


def device_name(i: int) -> str:
    return f"bench-{i:05d}"


# --- load generator ---------------------------------------------------------------


def _load(
    port: int, proc: int, procs: int, conns: int, devices: int, base_ts: int,
    seconds: float, warmup: float, start: mp.Event, out: mp.Queue,
) -> None:  # fmt: skip
    """One process: ``conns`` keep-alive connections, one request in flight on each."""
    sel = selectors.DefaultSelector()
    counter = 0

    def next_request() -> bytes:
        nonlocal counter
        g = counter * procs + proc
        counter += 1
        dev, step = g % devices, g // devices
        lon = BASE_LON + (dev % 100) * 1e-4 + step * 1e-6
        lat = BASE_LAT + (dev // 100) * 1e-4
        return (
            f"GET /?id={device_name(dev)}&lat={lat:.6f}&lon={lon:.6f}&timestamp={base_ts + step}"
            f"&speed=2.7&bearing=90&altitude=45&accuracy=5&batt=77 HTTP/1.1\r\n"
            f"Host: gateway\r\nUser-Agent: bench\r\n\r\n"
        ).encode()

    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
    start.wait()
    t0 = time.monotonic()
    measure_from, end = t0 + warmup, t0 + warmup + seconds
    state = {}
    for s in socks:
        s.send(next_request())
        state[s] = [time.monotonic(), bytearray()]
        sel.register(s, selectors.EVENT_READ)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    while True:
        now = time.monotonic()
        if now >= end:
            break
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            sent_at, buf = state[s]
            data = s.recv(65536)
            if not data:
                sel.unregister(s)
                continue
            buf += data
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                continue
            m = re.search(rb"Content-Length: (\d+)", bytes(buf[:head_end]))
            total = head_end + 4 + (int(m.group(1)) if m else 0)
            if len(buf) < total:
                continue
            done = time.monotonic()
            if done >= measure_from:
                status = int(buf[9:12])
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append((done - sent_at) * 1000.0)
            del buf[:total]
            s.send(next_request())
            state[s][0] = time.monotonic()
    for s in socks:
        s.close()
    out.put((statuses, latencies))


def run_http(url: str, devices: int, procs: int, conns: int, seconds: float, warmup: float):
    queue_dir = Path(tempfile.mkdtemp(prefix="grid-bench-queue-"))
    log_path = queue_dir.parent / f"{queue_dir.name}.log"
    env = {**os.environ, "GRID_GATEWAY_MAX_BACKLOG": "50000"}
    env.pop("GRID_DATABASE_URL", None)
    with open(log_path, "wb") as log_file:
        gateway = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "--database-url", url, "gateway",
             "--port", "0", "--queue-dir", str(queue_dir)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_file,
        )  # fmt: skip
    port = 0
    deadline = time.monotonic() + 60
    while not port and time.monotonic() < deadline and gateway.poll() is None:
        found = re.findall(r"listening on http://127\.0\.0\.1:(\d+)", log_path.read_text())
        port = int(found[-1]) if found else 0
        time.sleep(0.05)
    if not port:
        raise SystemExit(f"gateway did not start:\n{log_path.read_text()[-2000:]}")
    try:
        ctx = mp.get_context("fork")
        start, out = ctx.Event(), ctx.Queue()
        base_ts = int(time.time()) - 3 * 3600
        workers = [
            ctx.Process(
                target=_load,
                args=(port, p, procs, conns, devices, base_ts, seconds, warmup, start, out),
            )
            for p in range(procs)
        ]
        for w in workers:
            w.start()
        time.sleep(1.0)
        start.set()
        results = [out.get() for _ in workers]
        load_end = time.monotonic()
        for w in workers:
            w.join()
        drained_after = wait_drained(port, timeout=120) - load_end
        health = fetch_health(port)
    finally:
        gateway.terminate()
        gateway.wait(60)
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    for st, lat in results:
        latencies.extend(lat)
        for k, v in st.items():
            statuses[k] = statuses.get(k, 0) + v
    return statuses, latencies, drained_after, health


def fetch_health(port: int) -> dict:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/health")
    body = conn.getresponse().read()
    conn.close()
    return json.loads(body)


def wait_drained(port: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fetch_health(port)["backlog"] == 0:
            return time.monotonic()
        time.sleep(0.02)
    return float("inf")


# --- bulk path and baseline -----------------------------------------------------------


def reports(devices: int, n: int, start: datetime):
    from db.positions import PositionReport

    return [
        PositionReport(
            device_name(k % devices),
            start + timedelta(seconds=k // devices),
            BASE_LON + (k % 100) * 1e-4,
            BASE_LAT + ((k % devices) // 100) * 1e-4,
            speed_kmh=5.0,
            course=90.0,
            altitude=45.0,
            accuracy=5.0,
            battery=77.0,
            attributes={"hdop": 1.1},
        )
        for k in range(n)
    ]


def run_bulk(engine, devices: int, batch: int, batches: int) -> tuple[float, int]:
    from db.positions import store_positions

    start = datetime.now(UTC) - timedelta(hours=6)
    data = reports(devices, batch * batches, start)
    store_positions(engine, reports(devices, 1000, start - timedelta(hours=1)))  # warm
    t0 = time.perf_counter()
    stored = 0
    for i in range(batches):
        stored += store_positions(engine, data[i * batch : (i + 1) * batch]).stored
    return stored / (time.perf_counter() - t0), stored


def run_baseline(url: str, devices: int, n: int) -> float:
    """One INSERT per report, committed: what a gateway without batching does."""
    import psycopg2

    from db.feed import dsn_of

    conn = psycopg2.connect(dsn_of(url))
    cur = conn.cursor()
    cur.execute("SELECT identifier, id FROM device")
    ids = dict(cur.fetchall())
    conn.commit()
    data = reports(devices, n, datetime.now(UTC) - timedelta(hours=9))
    t0 = time.perf_counter()
    for r in data:
        cur.execute(
            "INSERT INTO positions (device_id, ts, lon, lat, speed_kmh, course, altitude, "
            "accuracy, battery, attributes) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            (ids[r.device], r.ts, r.lon, r.lat, r.speed_kmh, r.course, r.altitude,
             r.accuracy, r.battery, json.dumps(r.attributes)),
        )  # fmt: skip
        conn.commit()
    rate = n / (time.perf_counter() - t0)
    conn.close()
    return rate


# --- main -----------------------------------------------------------------------------


def prepare(url_for, name: str, devices: int) -> str:
    """A fresh database with ``devices`` registered terminals."""
    from sqlalchemy import text

    from db.engine import make_engine

    url = fresh_database(url_for, name)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO device (identifier) SELECT unnest(CAST(:ids AS text[]))"),
            {"ids": [device_name(i) for i in range(devices)]},
        )
    engine.dispose()
    return url


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--conns", type=int, default=32, help="connections per load process")
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--baseline", type=int, default=3_000)
    args = ap.parse_args()

    from db.engine import make_engine

    url_for, _server = server_urls()

    url = prepare(url_for, "bench_ingest", args.devices)
    load_before = os.getloadavg()[0]
    print(
        f"{args.devices} devices registered; "
        f"load average {load_before:.2f} on {os.cpu_count()} CPUs"
    )

    statuses, latencies, drained_after, health = run_http(
        url, args.devices, args.procs, args.conns, args.seconds, args.warmup
    )
    accepted = statuses.get(200, 0)
    http_rate = accepted / args.seconds
    refused = sum(v for k, v in statuses.items() if k != 200)
    print(
        f"HTTP: {args.procs} processes × {args.conns} keep-alive connections, "
        f"{args.seconds:.0f} s after {args.warmup:.0f} s warm-up: {accepted} accepted, "
        f"{refused} refused {dict(sorted(statuses.items()))}"
    )
    print(
        f"HTTP: {http_rate:,.0f} reports/s (aim ≥ 5,000); latency p50 "
        f"{pct(latencies, 0.5):.1f} ms, p99 {pct(latencies, 0.99):.1f} ms; "
        f"all committed {drained_after:.2f} s after the load stopped"
    )
    print(f"gateway: {json.dumps(health)}")

    engine = make_engine(url)
    bulk_rate, bulk_n = run_bulk(engine, args.devices, args.batch, args.batches)
    print(
        f"bulk path: {bulk_n} positions in batches of {args.batch}: "
        f"{bulk_rate:,.0f} positions/s (aim ≥ 100,000)"
    )
    base_rate = run_baseline(url, args.devices, args.baseline)
    print(f"baseline: one INSERT per report, committed: {base_rate:,.0f} reports/s")
    print(
        f"ratios: bulk {bulk_rate / base_rate:.1f}× the baseline (aim ≥ 10×), "
        f"HTTP {http_rate / base_rate:.1f}×"
    )
    engine.dispose()

    figures = {
        "http_reports_per_s": round(http_rate, 1),
        "http_reports_per_s_aim": 5000,
        "http_p50_ms": round(pct(latencies, 0.5), 2),
        "http_p99_ms": round(pct(latencies, 0.99), 2),
        "http_refused": refused,
        "http_committed_after_s": round(drained_after, 2),
        "bulk_positions_per_s": round(bulk_rate, 1),
        "bulk_positions_per_s_aim": 100000,
        "baseline_reports_per_s": round(base_rate, 1),
        "bulk_over_baseline": round(bulk_rate / base_rate, 1),
        "bulk_over_baseline_aim": 10,
        "http_over_baseline": round(http_rate / base_rate, 1),
        "devices": args.devices,
        "http_connections": args.procs * args.conns,
        # Other work on the machine: figures from a busy machine are lower.
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
