"""What was answered 200 is stored: across a database restart and a killed gateway."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from console.gateway.queue import WriteAheadQueue, read_segment
from db import migrate
from db.engine import make_engine
from db.positions import _WRITE_LOCK, PositionReport
from tests.conftest import wait_for
from tests.gateway_support import Client, add_devices, count_positions

ROOT = Path(__file__).resolve().parents[1]
DEVICES = [f"dur{i}" for i in range(8)]


class Sender(threading.Thread):
    """One terminal sending distinct reports as fast as it is answered; counts the 200s."""

    def __init__(self, port: int, device: str, start_ts: int):
        super().__init__(daemon=True)
        self.client = Client(port, timeout=30)
        self.device = device
        self.ts = start_ts
        self.ok: list[int] = []
        self.statuses: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.ts += 1
            try:
                status, _ = self.client.request(
                    "GET", f"/?id={self.device}&lat=39.9&lon=116.4&timestamp={self.ts}"
                )
            except OSError:
                status = 0
                time.sleep(0.05)
            self.statuses.append(status)
            if status == 200:
                self.ok.append(self.ts)
            elif status == 503:
                time.sleep(0.02)
        self.client.close()


def start_senders(port: int, n: int = 4) -> list[Sender]:
    base = int(time.time()) - 23 * 3600  # one report a second of fix time: stays in the past
    senders = [Sender(port, DEVICES[i], base) for i in range(n)]
    for s in senders:
        s.start()
    return senders


def stop_senders(senders: list[Sender]) -> None:
    for s in senders:
        s.stop.set()
    for s in senders:
        s.join(30)


def health(port: int) -> dict:
    import json

    client = Client(port)
    try:
        return json.loads(client.request("GET", "/health")[1])
    finally:
        client.close()


def test_database_restart_mid_stream(tmp_path):
    """The gateway as deployed (its own process, writer process) while the database is
    killed outright and started again."""
    from db.embedded import EmbeddedServer

    pg_dir = tmp_path / "pg"
    server = EmbeddedServer(pg_dir, database="grid")
    engine = make_engine(server.url)
    migrate.upgrade(engine)
    add_devices(engine, DEVICES)
    proc, port = spawn_gateway(server.url, tmp_path / "queue", tmp_path / "gateway.log")
    try:
        senders = start_senders(port)
        assert wait_for(lambda: sum(len(s.ok) for s in senders) > 200, 20)
        kill_postgres(pg_dir)  # SIGKILL, no shutdown: it recovers from its WAL on restart
        assert wait_for(lambda: any(503 in s.statuses[-5:] for s in senders), 20)
        assert not health(port)["db_available"]
        time.sleep(0.5)  # a stretch of refusals while it is down
        down_503 = sum(s.statuses.count(503) for s in senders)
        server = EmbeddedServer(pg_dir, database="grid")
        assert make_url(server.url).query == engine.url.query  # same socket: same URL
        engine.dispose()  # this test's own pooled connections died with the server
        ok_at_restart = sum(len(s.ok) for s in senders)
        assert wait_for(lambda: sum(len(s.ok) for s in senders) > ok_at_restart + 200, 30)
        stop_senders(senders)
        assert wait_for(lambda: health(port)["backlog"] == 0, 30)
        answered_200 = sum(len(s.ok) for s in senders)
        assert health(port)["db_available"]
        assert down_503 > 0
        assert all(set(s.statuses) <= {200, 503, 0} for s in senders)
        assert count_positions(engine) == answered_200
        print("FIGURES " + json.dumps({
            "scenario": "PostgreSQL killed (SIGKILL) during load", "answered_200": answered_200,
            "stored_rows": count_positions(engine), "refused_503_while_down": down_503}))
        with engine.connect() as conn:
            for s in senders:
                stored = set(
                    conn.execute(
                        text(
                            "SELECT extract(epoch FROM p.ts)::bigint FROM positions p "
                            "JOIN device d ON d.id = p.device_id WHERE d.identifier = :d"
                        ),
                        {"d": s.device},
                    ).scalars()
                )
                assert stored == set(s.ok)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        engine.dispose()
        server.stop()


def kill_postgres(pg_dir: Path) -> None:
    """SIGKILL the postmaster and every backend at once, as a crash or the OOM killer would."""
    import psutil

    pid = int((pg_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    master = psutil.Process(pid)
    victims = [master, *master.children(recursive=True)]
    for proc in victims:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=10)
    # pgserver keeps one handle per data directory in this process: the dead one would
    # be handed back instead of a server started anew (a new process starts one itself).
    from pgserver.postgres_server import PostgresServer

    for key in [k for k in PostgresServer._instances if Path(k).resolve()
                == (pg_dir / "pgdata").resolve()]:
        PostgresServer._instances.pop(key)


def spawn_gateway(db_url: str, queue_dir: Path, log_path: Path) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("GRID_DATABASE_URL", None)
    log_file = open(log_path, "ab")  # closed below: the child keeps its own descriptor
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "--database-url",
            db_url,
            "gateway",
            "--port",
            "0",
            "--queue-dir",
            str(queue_dir),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    log_file.close()
    port = 0

    def listening() -> bool:
        nonlocal port
        found = re.findall(r"listening on http://127\.0\.0\.1:(\d+)", log_path.read_text())
        if found and proc.poll() is None:
            port = int(found[-1])
        return bool(port) or proc.poll() is not None

    wait_for(listening, 60, step=0.05)
    if not port:
        proc.kill()
        pytest.fail(f"gateway did not start:\n{log_path.read_text()[-3000:]}")
    return proc, port


def test_sigkill_loses_no_report_answered_200(db_url, engine, tmp_path):
    import psycopg2

    add_devices(engine, DEVICES)
    queue_dir = tmp_path / "queue"
    log_path = tmp_path / "gateway.log"
    proc, port = spawn_gateway(db_url, queue_dir, log_path)
    blocker = None
    try:
        senders = start_senders(port)
        assert wait_for(lambda: sum(len(s.ok) for s in senders) > 300, 30)
        # Hold the writers' lock: from now on 200s are in the queue file only.
        blocker = psycopg2.connect(db_url.replace("+psycopg2", ""))
        blocker.autocommit = True
        blocker.cursor().execute("SELECT pg_advisory_lock(%s)", (_WRITE_LOCK,))
        before = sum(len(s.ok) for s in senders)
        assert wait_for(lambda: sum(len(s.ok) for s in senders) > before + 300, 30)
        # Mid-stream, the whole gateway at once: its writer process too.
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "the gateway runs its database writer in a child process"
        for p in [proc, *children]:
            os.kill(p.pid, signal.SIGKILL)
        proc.wait(10)
        psutil.wait_procs(children, timeout=10)
        stop_senders(senders)
        answered = {(s.device, ts) for s in senders for ts in s.ok}
        assert all(set(s.statuses) <= {200, 503, 0} for s in senders)
        in_db_before = count_positions(engine)
        assert in_db_before < len(answered)  # the queue really held some
        blocker.close()
        blocker = None
        proc, port = spawn_gateway(db_url, queue_dir, log_path)

        def stored() -> set:
            with engine.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT d.identifier, extract(epoch FROM p.ts)::bigint FROM positions p "
                        "JOIN device d ON d.id = p.device_id"
                    )
                ).all()
            return {(r[0], r[1]) for r in rows}

        def all_stored() -> bool:
            return answered <= stored()

        assert wait_for(all_stored, 30, step=0.2)
        # Stored once each: a report fsync'd but killed before its answer may be there too.
        assert count_positions(engine) <= len(answered) + len(senders)
        print("FIGURES " + json.dumps({
            "scenario": "gateway SIGKILLed mid-stream", "answered_200": len(answered),
            "stored_rows": count_positions(engine), "in_queue_only_at_kill":
            len(answered) - in_db_before, "answered_not_stored": len(answered - stored())}))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert list(queue_dir.glob("seg-*.wal")) == []  # everything committed: queue emptied
    finally:
        if blocker is not None:
            blocker.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_torn_tail_of_a_segment_is_ignored(tmp_path):
    ts = datetime.now(UTC).replace(microsecond=0)
    wal = WriteAheadQueue(tmp_path)
    wal.replay()
    reports = [PositionReport("a", ts + timedelta(seconds=k), 116.4, 39.9) for k in range(3)]
    wal.append(reports[:2])
    wal.append(reports[2:])
    wal.close()
    [segment] = list(tmp_path.glob("seg-*.wal"))
    with open(segment, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x01\x02")  # a record header whose body never made it
    assert read_segment(segment) == reports
    again = WriteAheadQueue(tmp_path)
    assert again.replay() == reports
    again.mark_committed(again.last_seq)
    again.housekeeping(idle=True)
    assert list(tmp_path.glob("seg-*.wal")) == []


def test_gateway_without_a_database_exits_5_with_a_clear_message(tmp_path):
    from tests.cli_runner import main_py

    result = main_py(
        "--database-url",
        "postgresql://grid@127.0.0.1:1/grid",
        "gateway",
        "--port",
        "0",
        "--queue-dir",
        str(tmp_path / "queue"),
        timeout=60,
    )
    assert result.returncode == 5
    assert "无法连接数据库" in result.stderr and "Traceback" not in result.stderr
