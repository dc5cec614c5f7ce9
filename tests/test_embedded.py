"""The embedded server: started under the data directory, reused, stopped on exit."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli_runner import main_py


def run(data_dir: Path, *args: str, password: str = "embedded-pw"):
    return main_py(*args, env={"GRID_DATA_DIR": str(data_dir), "GRID_PASSWORD": password})


def test_embedded_server_is_created_reused_and_stopped(tmp_path):
    data = tmp_path / "grid data"
    first = run(data, "users", "add", "keeper", "--role", "leader", "--as-owner")
    assert first.returncode == 0, first.stderr
    pgdata = data / "pgdata"
    assert (pgdata / "PG_VERSION").exists()
    # Stopped cleanly when the last process exited.
    assert not (pgdata / "postmaster.pid").exists()
    url = run(data, "db", "url")
    assert url.returncode == 0 and url.stdout.startswith("postgresql+psycopg2://")
    assert "/grid?host=/" in url.stdout  # a Unix socket, never a TCP port
    # Reused: the user added by the first run is still there.
    listed = run(data, "users", "list", "--json", "--as-owner")
    assert listed.returncode == 0, listed.stderr
    assert "keeper" in [u["name"] for u in json.loads(listed.stdout)]
    status = json.loads(run(data, "db", "status", "--json").stdout)
    assert status["server"].startswith("PostgreSQL 16")
    assert not (pgdata / "postmaster.pid").exists()
