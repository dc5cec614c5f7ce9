"""The embedded server: started under the data directory, reused, stopped on exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(data_dir: Path, *args: str, password: str = "embedded-pw"):
    env = {**os.environ, "GRID_DATA_DIR": str(data_dir), "GRID_PASSWORD": password}
    env.pop("GRID_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        cwd=ROOT,
    )


def test_embedded_server_is_created_reused_and_stopped(tmp_path):
    data = tmp_path / "grid data"
    first = run(data, "users", "add", "keeper", "--role", "leader")
    assert first.returncode == 0, first.stderr
    pgdata = data / "pgdata"
    assert (pgdata / "PG_VERSION").exists()
    # Stopped cleanly when the last process exited.
    assert not (pgdata / "postmaster.pid").exists()
    url = run(data, "db", "url")
    assert url.returncode == 0 and url.stdout.startswith("postgresql+psycopg2://")
    assert "/grid?host=/" in url.stdout  # a Unix socket, never a TCP port
    # Reused: the user added by the first run is still there.
    listed = run(data, "users", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "keeper" in [u["name"] for u in json.loads(listed.stdout)]
    status = json.loads(run(data, "db", "status", "--json").stdout)
    assert status["server"].startswith("PostgreSQL 16")
    assert not (pgdata / "postmaster.pid").exists()
