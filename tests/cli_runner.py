"""Run ``python main.py`` as a user would, in a subprocess (test helper)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main_py(*args: str, env: dict | None = None, timeout: float = 180):
    """Run main.py with ``args``; GRID_DATABASE_URL from the caller's env is dropped."""
    full_env = {**os.environ}
    full_env.pop("GRID_DATABASE_URL", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=ROOT,
    )


def cli(db_url: str, line: str, password: str, **env):
    """``main.py <line>`` on the database ``db_url``, the line split as a shell would.

    The URL goes in ``GRID_DATABASE_URL``, as a hall would give one with a
    password: ``--database-url`` refuses a password on the command line.
    """
    return main_py(
        *shlex.split(line),
        env={
            "GRID_DATABASE_URL": db_url,
            "GRID_PASSWORD": password,
            "GRID_WORKSTATION": "cli-test",
            **env,
        },
    )
