"""Benchmark: GPS reports into the database, over HTTP and through the bulk path.

    python bench/ingest.py [--devices 10000] [--seconds 10] [--procs 2] [--conns 32]

The database holds the Dongcheng territory (so every position is placed in
its grid) and three populations of ``--devices`` registered terminals, one
per measurement, each terminal circling about 120 m around its own point in
a grid, one in four carried by a field worker whose own grid is that grid
(so crossing its border raises ``left_grid``/``returned_to_grid`` events).

1. Over HTTP: the real gateway (``python main.py gateway`` in its own
   process, default settings: its backlog limit is printed and in the JSON
   line) on loopback; load-generator processes hold keep-alive connections
   and send OsmAnd reports (query parameters, as OsmAnd and Traccar Client
   send them), each answer awaited before the next request on that
   connection.  Measured: accepted (200) reports per second over the
   window, latency percentiles, and the time the gateway needs after the
   load to have everything committed (so the rate is sustained by the
   database, not only by the queue on disk).
2. The bulk path alone: ``store_positions`` with batches of 100,000.
3. Baselines, measured in the same run:

   * batched, what a competent engineer would write instead of the bulk
     path: psycopg2 ``execute_values`` in one transaction per batch of the
     same size, doing the same work (every report checked with
     ``check_report``, grid by ``locate_grids``, positions inserted ``ON
     CONFLICT DO NOTHING``, latest position upserted unless older, worker
     events derived, NOTIFY).  Its batches alternate with the bulk path's,
     on the same reports for its own terminals, and both must end with the
     same rows (checked, printed, in the JSON line);
   * one INSERT per report, each committed, one connection (the positions
     row only: less work than the others, so it flatters this baseline).

Prints the figures and ends with one JSON line: each figure beside its aim
and the baselines.  Runs on the embedded server (a throw-away data
directory) unless GRID_DATABASE_URL names one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
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
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.benchdb import fresh_database, machine_load, server_urls  # noqa: E402

HTTP, BULK, BATCHED = "bench", "bulk", "batch"  # one population of terminals each
RADIUS_DEG = 0.0011  # about 120 m north-south; the circle is round on the ground
PERIOD_STEPS = 20  # one turn per 20 reports
WORKER_EVERY = 4  # one terminal in four is a field worker's


def device_name(population: str, i: int) -> str:
    return f"{population}-{i:05d}"


def position(base: tuple[list[float], list[float]], dev: int, step: int) -> tuple[float, float]:
    """Where terminal ``dev`` is at its ``step``-th report: circling its own point."""
    angle = 2 * math.pi * (step / PERIOD_STEPS + dev / 7.0)
    lon0, lat0 = base[0][dev], base[1][dev]
    return (
        lon0 + RADIUS_DEG / math.cos(math.radians(lat0)) * math.cos(angle),
        lat0 + RADIUS_DEG * math.sin(angle),
    )


# --- load generator ---------------------------------------------------------------


def _load(
    port: int, proc: int, procs: int, conns: int, base: tuple[list[float], list[float]],
    base_ts: int, seconds: float, warmup: float, start: mp.Event, out: mp.Queue,
) -> None:  # fmt: skip
    """One process: ``conns`` keep-alive connections, one request in flight on each."""
    sel = selectors.DefaultSelector()
    counter = 0
    devices = len(base[0])

    def next_request() -> bytes:
        nonlocal counter
        g = counter * procs + proc
        counter += 1
        dev, step = g % devices, g // devices
        lon, lat = position(base, dev, step)
        return (
            f"GET /?id={device_name(HTTP, dev)}&lat={lat:.6f}&lon={lon:.6f}"
            f"&timestamp={base_ts + step}"
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


def gateway_max_backlog() -> int:
    """The backlog limit a gateway started with default settings uses."""
    from console.gateway.server import GatewayConfig

    return next(f.default for f in dataclasses.fields(GatewayConfig) if f.name == "max_backlog")


def run_http(url: str, base, procs: int, conns: int, seconds: float, warmup: float):
    queue_dir = Path(tempfile.mkdtemp(prefix="grid-bench-queue-"))
    log_path = queue_dir.parent / f"{queue_dir.name}.log"
    env = dict(os.environ)
    env.pop("GRID_DATABASE_URL", None)
    env.pop("GRID_GATEWAY_MAX_BACKLOG", None)  # the default backlog, as a site runs it
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
                args=(port, p, procs, conns, base, base_ts, seconds, warmup, start, out),
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


# --- bulk path and baselines ----------------------------------------------------------


def reports(population: str, base, n: int, start: datetime, first_step: int = 0):
    """``n`` reports, every terminal in turn, one second apart per terminal."""
    from db.positions import PositionReport

    devices = len(base[0])
    out = []
    for k in range(n):
        dev, step = k % devices, first_step + k // devices
        lon, lat = position(base, dev, step)
        out.append(
            PositionReport(
                device_name(population, dev),
                start + timedelta(seconds=step),
                lon,
                lat,
                speed_kmh=5.0,
                course=90.0,
                altitude=45.0,
                accuracy=5.0,
                battery=77.0,
                attributes={"hdop": 1.1},
            )
        )
    return out


_STATE_SQL = """
SELECT d.identifier, d.id, d.worker_id, w.grid_id, lp.ts, lp.grid_id,
       EXISTS (SELECT 1 FROM worker_event e
               WHERE e.device_id = d.id AND e.kind = 'offline' AND e.at >= lp.received_at)
FROM device d
LEFT JOIN worker w ON w.id = d.worker_id
LEFT JOIN latest_position lp ON lp.device_id = d.id
WHERE d.identifier = ANY(%s)
"""
_POSITION_COLUMNS = (
    "device_id, ts, lon, lat, speed_kmh, course, altitude, accuracy, battery, attributes, "
    "received_at, grid_id"
)
_LATEST_COLUMNS = (
    "device_id, ts, lon, lat, speed_kmh, course, altitude, accuracy, battery, grid_id, received_at"
)
PAGE_SIZE = 1000  # rows per INSERT statement (execute_values' default of 100 is slower)


def store_batched(engine, batch: list) -> tuple[int, int]:
    """The batched baseline: one transaction, execute_values; (positions stored, events).

    Written as an engineer would without COPY or numpy: a dict per report,
    the project's own check and locator, plain INSERTs of many rows.
    """
    from psycopg2.extras import Json, execute_values

    from db.locate import locate_grids
    from db.positions import check_report, ensure_partitions

    now = datetime.now(UTC)
    ensure_partitions(engine, {r.ts.astimezone(UTC).date() for r in batch})
    with engine.begin() as conn:
        cur = conn.connection.cursor()
        cur.execute("SELECT clock_timestamp()")
        received_at = cur.fetchone()[0]
        cur.execute(_STATE_SQL, (list({r.device for r in batch}),))
        state = {row[0]: row[1:] for row in cur.fetchall()}
        attrs = [check_report(r, now).decode() for r in batch]
        grids = locate_grids(conn, [(r.lon, r.lat) for r in batch])
        rows, seen, newer = [], set(), {}
        for r, a, g in zip(batch, attrs, grids, strict=True):
            st = state.get(r.device)
            if st is None or (r.device, r.ts) in seen:
                continue  # unknown terminal, or a repeat inside the batch
            seen.add((r.device, r.ts))
            rows.append((st[0], r.ts, r.lon, r.lat, r.speed_kmh, r.course, r.altitude,
                         r.accuracy, r.battery, a, received_at, g))  # fmt: skip
            if st[3] is None or r.ts > st[3]:
                newer.setdefault(r.device, []).append((r, g))
        execute_values(
            cur,
            f"INSERT INTO positions ({_POSITION_COLUMNS}) VALUES %s ON CONFLICT DO NOTHING",
            rows,
            template="(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)",
            page_size=PAGE_SIZE,
        )
        latest, events = [], []
        for device, items in newer.items():
            items.sort(key=lambda item: item[0].ts)
            device_id, worker_id, own_grid, last_ts, last_grid, offline = state[device]
            r, g = items[-1]
            latest.append((device_id, r.ts, r.lon, r.lat, r.speed_kmh, r.course, r.altitude,
                           r.accuracy, r.battery, g, received_at))  # fmt: skip
            if offline:
                first, g0 = items[0]
                detail = {"last_fix": last_ts.isoformat() if last_ts else None}
                events.append((device_id, worker_id, "online", first.ts, g0, first.lon,
                               first.lat, Json(detail)))  # fmt: skip
            if worker_id is None or own_grid is None:
                continue
            inside = None if last_ts is None else last_grid == own_grid
            prev = last_grid
            for r, g in items:
                now_inside = g == own_grid
                if now_inside != inside and (inside is not None or not now_inside):
                    kind = "returned_to_grid" if now_inside else "left_grid"
                    detail = {"own_grid": own_grid, "from_grid": prev}
                    events.append((device_id, worker_id, kind, r.ts, g, r.lon, r.lat,
                                   Json(detail)))  # fmt: skip
                inside, prev = now_inside, g
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _LATEST_COLUMNS.split(", ")[1:])
        execute_values(
            cur,
            f"INSERT INTO latest_position ({_LATEST_COLUMNS}) VALUES %s "
            f"ON CONFLICT (device_id) DO UPDATE SET {updates} "
            "WHERE latest_position.ts < EXCLUDED.ts",
            latest,
            page_size=PAGE_SIZE,
        )
        execute_values(
            cur,
            "INSERT INTO worker_event (device_id, worker_id, kind, at, grid_id, lon, lat, detail) "
            "VALUES %s",
            events,
            page_size=PAGE_SIZE,
        )
        cur.execute("SELECT pg_notify('grid_positions', %s)", (received_at.isoformat(),))
    return len(rows), len(events)


def run_bulk_and_batched(engine, base, batch: int, batches: int) -> dict:
    """The bulk path and the batched baseline, batch by batch in turn, on the same reports."""
    from db.positions import store_positions

    start = datetime.now(UTC) - timedelta(hours=2)
    devices = len(base[0])
    # Warm both (and give every terminal a latest position), alike.
    store_positions(engine, reports(BULK, base, devices, start))
    store_batched(engine, reports(BATCHED, base, devices, start))
    first = 1
    per_batch = batch // devices
    times = {BULK: 0.0, BATCHED: 0.0}
    counts = {BULK: [0, 0], BATCHED: [0, 0]}
    for i in range(batches):
        step = first + i * per_batch
        for population, store in ((BULK, None), (BATCHED, store_batched)):
            data = reports(population, base, batch, start, first_step=step)
            t0 = time.perf_counter()
            if store is None:
                result = store_positions(engine, data)
                stored, events = result.stored, result.events
            else:
                stored, events = store(engine, data)
            times[population] += time.perf_counter() - t0
            counts[population][0] += stored
            counts[population][1] += events
    return {
        "bulk_rate": counts[BULK][0] / times[BULK],
        "batched_rate": counts[BATCHED][0] / times[BATCHED],
        "stored": counts[BULK][0],
        "bulk_events": counts[BULK][1],
        "batched_events": counts[BATCHED][1],
        "same": outcome(engine, BULK) == outcome(engine, BATCHED),
    }


def outcome(engine, population: str) -> tuple:
    """What a population's terminals left in the database, comparable between populations."""
    from sqlalchemy import text

    with engine.connect() as conn:
        return tuple(
            tuple(row)
            for row in conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM positions p JOIN device d ON d.id = p.device_id "
                    "        WHERE d.identifier LIKE :p),"
                    "       (SELECT count(p.grid_id) FROM positions p "
                    "        JOIN device d ON d.id = p.device_id WHERE d.identifier LIKE :p),"
                    "       (SELECT array_agg(k.kind || ':' || k.n ORDER BY k.kind) FROM "
                    "          (SELECT e.kind, count(*) AS n FROM worker_event e "
                    "           JOIN device d ON d.id = e.device_id WHERE d.identifier LIKE :p "
                    "           GROUP BY e.kind) k),"
                    "       (SELECT md5(string_agg(substr(d.identifier, length(:p)) || lp.ts "
                    "                   || coalesce(lp.grid_id, 0), ',' ORDER BY d.identifier)) "
                    "        FROM latest_position lp JOIN device d ON d.id = lp.device_id "
                    "        WHERE d.identifier LIKE :p)"
                ),
                {"p": f"{population}-%"},
            )
        )


def run_baseline(url: str, base, n: int) -> float:
    """One INSERT per report, committed: what a gateway without batching does."""
    import psycopg2

    from db.feed import dsn_of

    conn = psycopg2.connect(dsn_of(url))
    cur = conn.cursor()
    cur.execute("SELECT identifier, id FROM device")
    ids = dict(cur.fetchall())
    conn.commit()
    data = reports(HTTP, base, n, datetime.now(UTC) - timedelta(hours=9))
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


def prepare(url_for, name: str, devices: int) -> tuple[str, tuple[list[float], list[float]]]:
    """A fresh database with Dongcheng, and three populations of ``devices`` terminals.

    Returns the URL and each terminal's own point (the same for every
    population): random points that fall in a grid, so the positions around
    them are located and a worker's own grid is the grid of that point.
    """
    import numpy as np
    from sqlalchemy import text

    from db.engine import make_engine
    from db.locate import territory
    from db.territory import import_district

    url = fresh_database(url_for, name)
    engine = make_engine(url)
    import_district(engine, resources.files("resources").joinpath("districts/110101.geojson"))
    with engine.connect() as conn:
        index = territory(conn)
    x0, y0, x1, y1 = index.districts[0].bounds
    rng = np.random.default_rng(5)
    lons, lats, grids = [], [], []
    while len(lons) < devices:
        cand_lon, cand_lat = rng.uniform(x0, x1, devices), rng.uniform(y0, y1, devices)
        for lon, lat, g in zip(cand_lon, cand_lat, index.grid_ids(cand_lon, cand_lat), strict=True):
            if g is not None and len(lons) < devices:
                lons.append(float(lon))
                lats.append(float(lat))
                grids.append(g)
    with engine.begin() as conn:
        for population in (HTTP, BULK, BATCHED):
            names = [device_name(population, i) for i in range(devices)]
            conn.execute(
                text("INSERT INTO device (identifier) SELECT unnest(CAST(:ids AS text[]))"),
                {"ids": names},
            )
            carried = range(0, devices, WORKER_EVERY)
            conn.execute(
                text(
                    "INSERT INTO worker (code, name, grid_id) "
                    "SELECT unnest(CAST(:codes AS text[])), unnest(CAST(:names AS text[])), "
                    "unnest(CAST(:grids AS integer[]))"
                ),
                {
                    "codes": [f"W-{names[i]}" for i in carried],
                    "names": [f"压测网格员 {names[i]}" for i in carried],
                    "grids": [grids[i] for i in carried],
                },
            )
            conn.execute(
                text(
                    "UPDATE device d SET worker_id = w.id FROM worker w "
                    "WHERE w.code = 'W-' || d.identifier AND d.identifier LIKE :p"
                ),
                {"p": f"{population}-%"},
            )
    engine.dispose()
    return url, (lons, lats)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=10_000, help="terminals per population")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--conns", type=int, default=32, help="connections per load process")
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--baseline", type=int, default=3_000)
    args = ap.parse_args()
    if args.batch % args.devices:
        raise SystemExit("--batch must be a multiple of --devices (whole rounds of reports)")

    from db.engine import make_engine

    url_for, _server = server_urls()

    url, base = prepare(url_for, "bench_ingest", args.devices)
    max_backlog = gateway_max_backlog()
    load_before = os.getloadavg()[0]
    print(
        f"Dongcheng imported; 3 × {args.devices} terminals registered, one in {WORKER_EVERY} "
        f"a worker's; load average {load_before:.2f} on {os.cpu_count()} CPUs"
    )

    statuses, latencies, drained_after, health = run_http(
        url, base, args.procs, args.conns, args.seconds, args.warmup
    )
    accepted = statuses.get(200, 0)
    http_rate = accepted / args.seconds
    refused = sum(v for k, v in statuses.items() if k != 200)
    print(
        f"HTTP: gateway with default settings (backlog limit {max_backlog:,}); {args.procs} "
        f"processes × {args.conns} keep-alive connections, {args.seconds:.0f} s after "
        f"{args.warmup:.0f} s warm-up: {accepted} accepted, {refused} refused "
        f"{dict(sorted(statuses.items()))}"
    )
    print(
        f"HTTP: {http_rate:,.0f} reports/s (aim ≥ 5,000); latency p50 "
        f"{pct(latencies, 0.5):.1f} ms, p99 {pct(latencies, 0.99):.1f} ms; "
        f"all committed {drained_after:.2f} s after the load stopped"
    )
    print(f"gateway: {json.dumps(health)}")

    engine = make_engine(url)
    b = run_bulk_and_batched(engine, base, args.batch, args.batches)
    bulk_rate, batched_rate = b["bulk_rate"], b["batched_rate"]
    print(
        f"bulk path: {b['stored']} positions in batches of {args.batch}: "
        f"{bulk_rate:,.0f} positions/s (aim ≥ 100,000); {b['bulk_events']} worker events"
    )
    print(
        f"baseline, batched (execute_values, one transaction per batch, the same work), "
        f"in turn with the bulk path: {batched_rate:,.0f} positions/s, {b['batched_events']} "
        f"worker events; same rows as the bulk path: {'yes' if b['same'] else 'NO'}"
    )
    base_rate = run_baseline(url, base, args.baseline)
    print(f"baseline, one INSERT per report, committed: {base_rate:,.0f} reports/s")
    print(
        f"ratios: bulk {bulk_rate / batched_rate:.1f}× the batched baseline (no aim set), "
        f"{bulk_rate / base_rate:.1f}× one INSERT per report (aim ≥ 10×); "
        f"HTTP {http_rate / batched_rate:.2f}× the batched baseline, "
        f"{http_rate / base_rate:.1f}× one INSERT per report"
    )
    engine.dispose()

    figures = {
        "http_reports_per_s": round(http_rate, 1),
        "http_reports_per_s_aim": 5000,
        "http_p50_ms": round(pct(latencies, 0.5), 2),
        "http_p99_ms": round(pct(latencies, 0.99), 2),
        "http_refused": refused,
        "http_committed_after_s": round(drained_after, 2),
        "gateway_max_backlog": max_backlog,
        "bulk_positions_per_s": round(bulk_rate, 1),
        "bulk_positions_per_s_aim": 100000,
        "batched_baseline_positions_per_s": round(batched_rate, 1),
        "bulk_over_batched_baseline": round(bulk_rate / batched_rate, 2),
        "batched_baseline_same_rows": b["same"],
        "bulk_events": b["bulk_events"],
        "baseline_reports_per_s": round(base_rate, 1),
        "bulk_over_baseline": round(bulk_rate / base_rate, 1),
        "bulk_over_baseline_aim": 10,
        "http_over_batched_baseline": round(http_rate / batched_rate, 2),
        "http_over_baseline": round(http_rate / base_rate, 1),
        "devices": args.devices,
        "batch": args.batch,
        "http_connections": args.procs * args.conns,
        **machine_load(load_before),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
