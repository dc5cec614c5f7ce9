"""The database every benchmark runs on: a shared server or a throw-away embedded one.

One place for "which server" and "a fresh, migrated database with reference
data", so the benchmarks measure their own subject and set up alike.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def server_urls(prefix: str = "grid-bench-") -> tuple[Callable[[str], str], object | None]:
    """(database name → URL, embedded server or None).

    GRID_DATABASE_URL names a shared server (its user needs CREATEDB);
    otherwise an embedded server starts in a temporary directory.  The caller
    may stop the embedded server; it also stops when the process exits normally.
    """
    from db.engine import normalize_url

    shared = os.environ.get("GRID_DATABASE_URL")
    if shared:
        from sqlalchemy.engine import make_url

        base = make_url(normalize_url(shared))
        return (lambda name: base.set(database=name).render_as_string(hide_password=False)), None
    from db.embedded import EmbeddedServer

    server = EmbeddedServer(Path(tempfile.mkdtemp(prefix=prefix)), "postgres")
    return server.url_for, server


def fresh_database(url_for: Callable[[str], str], name: str, reference: bool = True) -> str:
    """Drop and create ``name``, migrate it, load reference data; return its URL."""
    import psycopg2

    admin = psycopg2.connect(url_for("postgres").replace("+psycopg2", ""))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    from db import migrate
    from db.engine import make_engine
    from db.reference import ensure_reference

    url = url_for(name)
    engine = make_engine(url)
    migrate.upgrade(engine)
    if reference:
        ensure_reference(engine)
    engine.dispose()
    return url


def machine_load(before: float) -> dict:
    """The machine's load beside a run's figures (``before``: ``os.getloadavg()[0]`` at the
    start): on a shared machine, figures from a busy moment are lower, and this says so."""
    return {
        "load_average_before": round(before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
