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


def stop_embedded() -> None:
    """Let go of every embedded server this process holds; the last holder stops it.

    Called on a clean exit (``atexit`` does it too, but not after a signal that
    the process did not catch, which is why consoles catch SIGTERM and SIGHUP).
    """
    with _lock:
        servers = list(_embedded.values())
        _embedded.clear()
    for server in servers:
        try:
            server.stop()
        except Exception as exc:  # stopping must never turn an exit into a traceback
            import logging

            logging.getLogger(__name__).warning("embedded server not stopped: %s", exc)


def resolve_url(database_url: str | None, data_dir: Path) -> str:
    """The URL in use: the shared server when one is named, else the embedded one."""
    if database_url:
        return normalize_url(database_url)
    return embedded_server(data_dir).url


def role_url(url: str, role: str) -> str:
    """The embedded server's URL for another role (local socket: no password)."""
    from sqlalchemy.engine import make_url

    return make_url(normalize_url(url)).set(username=role, password=None).render_as_string(
        hide_password=False
    )


LOCK_TIMEOUT_MS = 5_000
IDLE_IN_TRANSACTION_MS = 60_000
# Client side (libpq) and server side (the backend's socket): a peer that vanished
# without closing (a cable pulled, a laptop lid shut) is noticed in about 25 s.
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
             "keepalives_count": 3}


def session_options(lock_timeout_ms: int = LOCK_TIMEOUT_MS,
                    idle_in_transaction_ms: int = IDLE_IN_TRANSACTION_MS) -> str:
    """The ``options`` every connection starts with (``-c name=value`` settings)."""
    settings = {
        "lock_timeout": lock_timeout_ms,
        "idle_in_transaction_session_timeout": idle_in_transaction_ms,
        "tcp_keepalives_idle": KEEPALIVE["keepalives_idle"],
        "tcp_keepalives_interval": KEEPALIVE["keepalives_interval"],
        "tcp_keepalives_count": KEEPALIVE["keepalives_count"],
    }
    return " ".join(f"-c {name}={value}" for name, value in settings.items())


def make_engine(
    url: str,
    pool_size: int = 5,
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
    idle_in_transaction_ms: int = IDLE_IN_TRANSACTION_MS,
) -> Engine:
    """An engine with settings suited to short, locking transactions.

    No ping before each checkout (a round trip per action): a connection that
    died with a server restart fails its first statement, the pool discards
    it, and ``db.session.with_retry`` runs the action again on a fresh one.
    The short connect timeout makes "database unavailable" appear quickly
    rather than after minutes.  ``hide_parameters``: a driver error's text
    (which tracebacks, logs and messages quote) never lists the statement's
    values, since those include passwords at login and hashes and keys when
    they are set.

    No lock is waited for forever: a case row another session holds for more
    than ``lock_timeout_ms`` is "busy" (``db.session.Busy``), not a console
    frozen behind a colleague's stuck transaction.  A session left idle inside
    a transaction for a minute is ended by the server, and keepalives (both
    ends) notice a workstation that dropped off the network, so the locks of
    a dead workstation are freed instead of held until TCP gives up (hours).
    ``lock_timeout_ms=0`` waits as long as it takes (the gateway's writers,
    bounded by their statement timeout instead).
    """
    url = normalize_url(url)
    connect_args = {
        "connect_timeout": 5,
        "application_name": "grid-console",
        "options": session_options(lock_timeout_ms, idle_in_transaction_ms),
        **KEEPALIVE,
    }
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args=connect_args,
        hide_parameters=True,
    )
    atexit.register(engine.dispose)
    return engine
