"""``audit verify`` over a million case-log entries: seconds, beside reading them without hashing.

The log is built the way the hall builds it: every entry appended through the
log trigger, which numbers it under the order lock and hash-chains it (so the
load time is also the cost of the chain on bulk appends).  Then:

* verify: ``db.audit.verify`` streams the entries (server-side cursor) and
  recomputes every SHA-256 in Python;
* baseline (the same read, no hashing): the same SELECT through the same cursor,
  rows fetched and dropped — what a verifier costs at the least;
* alternative (what an engineer might write instead): the chain recomputed in SQL
  by the database's own ``grid_log_text`` in one window-function pass — fast, but it
  trusts functions the owner could replace, so the console does not use it.

Usage: ``python bench/audit.py [--entries 1000000]``.  Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchdb import fresh_database, machine_load, server_urls

AIM_S_PER_MILLION = 30.0  # a verification a duty leader runs at a shift change


def build(url: str, entries: int) -> float:
    """``entries`` log rows over entries/8 cases, through the log trigger; seconds."""
    import psycopg2

    conn = psycopg2.connect(url.replace("+psycopg2", ""))
    cases = max(1, entries // 8)
    started = time.perf_counter()
    with conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM category ORDER BY id LIMIT 1")
        category = cur.fetchone()[0]
        cur.execute(
            'INSERT INTO "case" (number, source, category_id, severity, lon, lat, description, '
            "status, reported_at, stage_started_at, version, updated_at) "
            "SELECT 'B' || lpad(g::text, 9, '0'), 'patrol', %s, 'normal', 116.41, 39.92, "
            "'bench', 'closed', now(), now(), 8, now() FROM generate_series(1, %s) g",
            (category, cases),
        )
        cur.execute(
            "INSERT INTO case_log (case_id, case_number, action, from_status, to_status, "
            "case_version, actor_id, actor_name, actor_role, workstation, reason, payload, at) "
            "SELECT c.id, c.number, (ARRAY['report','accept','file','dispatch','acknowledge',"
            "'feedback','verify_pass','archive'])[v], NULL, 'closed', v, NULL, '王伟', "
            "'dispatcher', 'bench', CASE WHEN v %% 3 = 0 THEN '理由' END, "
            "jsonb_build_object('v', v, 'note', '现场已处理'), now() - (v || ' hours')::interval "
            'FROM "case" c CROSS JOIN generate_series(1, 8) v '
            "ORDER BY c.id, v LIMIT %s",
            (entries,),
        )
    conn.close()
    return time.perf_counter() - started


def read_only(url: str) -> tuple[int, float]:
    """The verifier's SELECT, streamed and dropped: the floor under any verification."""
    import psycopg2

    from db.audit import _SELECT

    conn = psycopg2.connect(url.replace("+psycopg2", ""))
    started = time.perf_counter()
    cur = conn.cursor(name="read_only")
    cur.itersize = 20_000
    cur.execute(_SELECT, {"from": 0})
    n = sum(1 for _ in cur)
    elapsed = time.perf_counter() - started
    conn.close()
    return n, elapsed


def in_sql(url: str) -> tuple[bool, float]:
    """The chain recomputed by the database itself (trusting its functions)."""
    import psycopg2

    conn = psycopg2.connect(url.replace("+psycopg2", ""))
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT bool_and(ok) FROM (SELECT hash = sha256(prev_hash || "
            "convert_to(grid_log_text(l), 'UTF8')) AND prev_hash = "
            "coalesce(lag(hash) OVER (ORDER BY seq), '\\x'::bytea) AS ok FROM case_log l) t"
        )
        ok = bool(cur.fetchone()[0])
    conn.close()
    return ok, time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    url_for, server = server_urls("grid-bench-audit-")
    url = fresh_database(url_for, "bench_audit")
    from db.audit import verify
    from db.engine import make_engine

    load_s = build(url, args.entries)
    print(f"built {args.entries:,} log entries through the chaining trigger in {load_s:.1f} s "
          f"({load_s / args.entries * 1e6:.1f} µs an entry)")
    n, read_s = read_only(url)
    print(f"read without hashing: {n:,} entries in {read_s:.2f} s")
    engine = make_engine(url)
    result = verify(engine)
    print(f"audit verify: ok={result.ok}, {result.entries:,} entries in {result.seconds:.2f} s "
          f"(aim ≤ {AIM_S_PER_MILLION:.0f} s per million)")
    try:
        _, sql_s = in_sql(url)
    except Exception as exc:  # the alternative must not hide the main figure
        sql_s = float("nan")
        print(f"in-SQL chain check failed: {exc}")
    print(f"alternative, the chain checked inside the database: {sql_s:.2f} s")
    engine.dispose()
    if server is not None:
        server.stop()
    per_million = result.seconds / max(result.entries, 1) * 1e6
    print(json.dumps({
        "bench": "audit",
        "entries": result.entries,
        "verify_s": round(result.seconds, 2),
        "verify_s_per_million": round(per_million, 2),
        "aim_s_per_million": AIM_S_PER_MILLION,
        "read_without_hashing_s": round(read_s, 2),
        "hashing_overhead_ratio": round(result.seconds / read_s, 2) if read_s else None,
        "in_sql_alternative_s": round(sql_s, 2),
        "build_s": round(load_s, 1),
        "build_us_per_entry": round(load_s / args.entries * 1e6, 1),
        "ok": result.ok,
        "meets_aim": per_million <= AIM_S_PER_MILLION,
        **machine_load(load_before),
    }, ensure_ascii=False))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
