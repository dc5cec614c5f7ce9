"""Engines and the choice between a shared server and the embedded one."""

from __future__ import annotations

import atexit
import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine

from db.embedded import EmbeddedServer

_embedded: dict[Path, EmbeddedServer] = {}
_lock = threading.Lock()


def normalize_url(url: str) -> str:
    """Pin the psycopg2 driver: SQLAlchemy 2.1 maps bare ``postgresql://`` to psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def embedded_server(data_dir: Path) -> EmbeddedServer:
    """Start (or attach to) the embedded server under ``data_dir``, once per process."""
    key = Path(data_dir).resolve()
    with _lock:
        server = _embedded.get(key)
        if server is None:
            server = EmbeddedServer(key)
            _embedded[key] = server
        return server


def resolve_url(database_url: str | None, data_dir: Path) -> str:
    """The URL in use: the shared server when one is named, else the embedded one."""
    if database_url:
        return normalize_url(database_url)
    return embedded_server(data_dir).url


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine with settings suited to short, locking transactions.

    No ping before each checkout (a round trip per action): a connection that
    died with a server restart fails its first statement, the pool discards
    it, and ``db.session.with_retry`` runs the action again on a fresh one.
    The short connect timeout makes "database unavailable" appear quickly
    rather than after minutes.
    """
    url = normalize_url(url)
    connect_args = {"connect_timeout": 5, "application_name": "grid-console"}
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args=connect_args,
    )
    atexit.register(engine.dispose)
    return engine
