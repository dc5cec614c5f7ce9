"""Stopping cleanly and starting clean (issue 10): signals, handle files, private
directories, and a simulator that rides out a database blip.

Real processes throughout: ``python main.py open`` on an embedded demo of its
own, stopped with SIGTERM and SIGHUP (a workstation shutting down, its terminal
closed) and killed with SIGKILL; the embedded server started as an unprivileged
user, as on a workstation; the simulator against a database that stops
accepting connections for a while.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psutil
import psycopg2
import pytest

from console.simulator import Simulator
from db.demo_seed import seed_demo
from db.engine import make_engine
from tests.cli_runner import ROOT, main_py
from tests.conftest import wait_for

# --- the simulator --------------------------------------------------------------------------


@pytest.fixture
def district(pg_server, template_db):
    name = f"t_blip_{uuid.uuid4().hex[:8]}"
    url = pg_server.create(name, template_db)
    engine = make_engine(url)
    seed_demo(engine, days=1, cases_per_day=40)
    yield name, engine
    engine.dispose()
    pg_server.drop(name)


def test_the_simulator_rides_out_a_database_blip(district, pg_server):
    """Issue: the simulator's thread died on the first database blip and never came back."""
    name, engine = district
    sim = Simulator(engine, speed=600.0, seed=4, operators=True, cases_per_day=3000,
                    tick_s=0.05).start()
    admin = pg_server.admin()
    cur = admin.cursor()
    try:
        assert wait_for(lambda: sim.stats.positions > 0 and sim.stats.reports > 0, 60, 0.1)
        # The database goes away: no new connections, the open ones cut.
        cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        thread = sim._thread
        assert wait_for(lambda: any(e.startswith("simulator paused") for e in sim.stats.errors)
                        or not thread.is_alive(), 60, 0.1)
        assert thread.is_alive(), sim.stats.errors[-3:]
        cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        positions, work = sim.stats.positions, sim.stats.reports + sim.stats.actions
        # It goes on by itself: positions and case work again.
        assert wait_for(lambda: sim.stats.positions > positions
                        and sim.stats.reports + sim.stats.actions > work, 90, 0.1)
    finally:
        cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()
        sim.stop()


# --- signals and the handle file -------------------------------------------------------------


def handle_pids(data_dir: Path) -> list[int]:
    path = data_dir / "pgdata" / ".handle_pids.json"
    return json.loads(path.read_text()) if path.exists() else []


def server_pid(data_dir: Path) -> int | None:
    """The embedded server's postmaster, if it runs."""
    path = data_dir / "pgdata" / "postmaster.pid"
    try:
        pid = int(path.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if psutil.pid_exists(pid) else None


def socket_of(data_dir: Path) -> str:
    return (data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()[4]


def console_connected(data_dir: Path) -> bool:
    """The console has opened its database (its pooled connection sits idle)."""
    if server_pid(data_dir) is None:
        return False
    try:
        conn = psycopg2.connect(dbname="grid", user="postgres", host=socket_of(data_dir))
    except psycopg2.Error:
        return False
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                    "'grid-console' AND state = 'idle'")
        return cur.fetchone()[0] > 0
    finally:
        conn.close()


def open_console(data_dir: Path, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("GRID_DATABASE_URL", None)
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "--data-dir", str(data_dir), "open",
             "--no-simulate"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_file,
        )
    ready = wait_for(lambda: proc.poll() is not None or (
        proc.pid in handle_pids(data_dir) and console_connected(data_dir)), 180, 0.2)
    if not ready or proc.poll() is not None:
        proc.kill()
        pytest.fail(f"the console did not open:\n{log_path.read_text()[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """An embedded demo of its own (small), its server stopped."""
    data = tmp_path_factory.mktemp("console") / "data"
    out = main_py("--data-dir", str(data), "demo", "seed", "--days", "1", "--per-day", "20",
                  timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert server_pid(data) is None  # the seeding process was its last holder
    return data


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_the_console_and_its_embedded_server(demo_dir, tmp_path, sig):
    """Issue: SIGTERM or SIGHUP left the embedded PostgreSQL running and a dead process id
    in its handle file."""
    proc = open_console(demo_dir, tmp_path / "console.log")
    try:
        postmaster = server_pid(demo_dir)
        assert postmaster is not None
        proc.send_signal(sig)
        code = proc.wait(90)
        log_text = (tmp_path / "console.log").read_text()
        assert code == 0, log_text[-3000:]
        assert "Traceback" not in log_text
        assert wait_for(lambda: not psutil.pid_exists(postmaster), 30)  # the server stopped
        assert proc.pid not in handle_pids(demo_dir)
        assert handle_pids(demo_dir) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_later_start_forgets_the_handles_of_killed_consoles(demo_dir, tmp_path):
    """A console SIGKILLed leaves its id in the handle file (nothing can run on SIGKILL); the
    next console drops it, so when that one leaves, the server stops."""
    killed = open_console(demo_dir, tmp_path / "killed.log")
    killed.kill()
    killed.wait(10)
    assert killed.pid in handle_pids(demo_dir)  # stale: the process is gone
    postmaster = server_pid(demo_dir)
    assert postmaster is not None  # and the server it held runs on
    proc = open_console(demo_dir, tmp_path / "next.log")
    try:
        assert handle_pids(demo_dir) == [proc.pid]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
        assert wait_for(lambda: not psutil.pid_exists(postmaster), 30)
        assert handle_pids(demo_dir) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# --- private directories, as an ordinary user ------------------------------------------------

NOBODY = 65534
_PROBE = r"""
import json, os, stat, sys
from pathlib import Path
from db.embedded import EmbeddedServer

data = Path(sys.argv[1]) / "Application Support" / "grid"
server = EmbeddedServer(data, database="postgres")
mode = lambda p: stat.S_IMODE(os.lstat(p).st_mode)
out = {
    "uid": os.getuid(),
    "data": mode(data), "parent": mode(data.parent),
    "socket": str(server.socket_dir),
    "socket_uid": os.lstat(server.socket_dir).st_uid,
    "socket_mode": mode(server.socket_dir),
    "socket_is_dir": stat.S_ISDIR(os.lstat(server.socket_dir).st_mode),
}
server.stop()
print(json.dumps(out))
"""


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def test_the_data_and_socket_directories_are_private(tmp_path):
    """Issue: data directories were created 0755, and the socket directory for a data
    directory with spaces had a predictable name another user could create first."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run the embedded server as another, ordinary user")
    base = Path(tempfile.mkdtemp(prefix="grid-nobody-"))
    try:
        os.chown(base, NOBODY, NOBODY)
        pgdata = (base / "Application Support" / "grid" / "pgdata").resolve()
        # Where the old code put the socket, made first by someone else, open to all.
        digest = hashlib.sha1(str(pgdata).encode()).hexdigest()[:12]
        squatted = Path(tempfile.gettempdir()) / f"grid-pg-{digest}"
        squatted.mkdir(exist_ok=True)
        os.chmod(squatted, 0o777)
        env = {"PATH": os.environ["PATH"], "HOME": str(base), "LANG": "C.UTF-8"}
        try:
            out = subprocess.run([sys.executable, "-c", _PROBE, str(base)], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=300,
                                 preexec_fn=_as_nobody)
        except PermissionError:  # e.g. the interpreter lives under a 0700 /root
            pytest.skip(f"{sys.executable} cannot be run by an ordinary user on this machine")
        assert out.returncode == 0, out.stderr[-3000:]
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        assert seen["uid"] == NOBODY
        assert seen["data"] == 0o700 and seen["parent"] == 0o700
        assert seen["socket"] != str(squatted)
        assert not any(ch.isspace() for ch in seen["socket"])
        assert seen["socket_is_dir"] and seen["socket_uid"] == NOBODY
        assert seen["socket_mode"] == 0o700
        shutil.rmtree(seen["socket"], ignore_errors=True)  # mkdtemp's: left empty by the server
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(squatted, ignore_errors=True)
