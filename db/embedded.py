"""The embedded PostgreSQL server used when no shared server is named.

A single workstation (or a demo, or the test suite) runs a real PostgreSQL 16
from the ``pgserver`` wheel under the data directory.  The server is reused
across runs: a second console on the same machine attaches to the running
one, and the last process to exit stops it cleanly (pgserver counts the
processes holding a handle).

The data directory is created private (``0700``: it holds the server, the
gateway's queue and the audit anchor).  pgserver counts its handles in
``pgdata/.handle_pids.json``; a console killed without a chance to clean up
(SIGKILL, a power cut) leaves its process id there, and the server would then
never be stopped by the last real holder, so a start first forgets the ids of
processes that no longer exist.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
import warnings
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

from db.files import private_dir

log = logging.getLogger(__name__)

APP_DATABASE = "grid"


class EmbeddedServer:
    """A handle on the embedded server; ``url`` names the application database."""

    def __init__(self, data_dir: Path, database: str = APP_DATABASE, stop_on_exit: bool = True):
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers).
            warnings.simplefilter("ignore")
            import pgserver
            import pgserver.postgres_server as pg_module

        _patch_socket_dir(pg_module)

        self.data_dir = private_dir(Path(data_dir))
        self.pgdata = self.data_dir / "pgdata"
        log.info("starting embedded PostgreSQL in %s", self.pgdata)
        with pg_module.PostgresServer._lock:  # pgserver's own lock over its handle file
            forget_dead_handles(self.pgdata)
        self._server = pgserver.get_server(
            self.pgdata, cleanup_mode="stop" if stop_on_exit else None
        )
        if os.geteuid() == 0:
            # As root pgserver runs the server as a user of its own and opens every
            # parent of pgdata to it (o+rx); traversing is all it needs.
            os.chmod(self.data_dir, 0o711)
        self.socket_dir = _socket_dir(self._server.get_uri())
        self.database = database
        self._ensure_database(database)

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """A SQLAlchemy URL for ``database`` on this server (psycopg2 driver)."""
        return f"postgresql+psycopg2://postgres@/{database}?host={quote(str(self.socket_dir))}"

    def _ensure_database(self, name: str) -> None:
        import psycopg2

        conn = psycopg2.connect(dbname="postgres", user="postgres", host=str(self.socket_dir))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop the server now if this process holds the last handle on it."""
        self._server.cleanup()
        sock = self.socket_dir
        if sock.parent == Path(tempfile.gettempdir()) and sock.name.startswith("grid-pg-"):
            try:
                sock.rmdir()  # our mkdtemp's; still holding a socket while the server runs
            except OSError:
                pass


def forget_dead_handles(pgdata: Path) -> list[int]:
    """Drop the ids of processes that are gone from pgserver's handle file; return them."""
    path = Path(pgdata) / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(pids, list):
        return []
    alive = [pid for pid in pids if isinstance(pid, int) and _running(pid)]
    dead = [pid for pid in pids if pid not in alive]
    if dead:
        log.info("forgetting handles of processes gone: %s", dead)
        path.write_text(json.dumps(alive))
    return dead


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _patch_socket_dir(pg_module) -> None:
    """Keep the server's socket directory free of spaces, and private.

    pgserver hands the socket directory to ``postgres -k`` unquoted, so a data
    directory such as macOS's "Application Support" would split into two
    arguments and the server would not start.  When the chosen directory has
    whitespace, use a new private one under the system temp directory instead:
    ``mkdtemp`` (a fresh, unguessable name, created ``0700``), checked to be a
    real directory of this user's with that mode, so no other user of the
    machine can have put one there first and see or replace the socket.
    Attaching consoles read the directory from ``postmaster.pid``, so its name
    need not be predictable.
    """
    original = getattr(
        pg_module.find_suitable_socket_dir, "__wrapped__", pg_module.find_suitable_socket_dir
    )

    def find_socket_dir(pgdata, runtime_path):
        chosen = Path(original(pgdata, runtime_path))
        if not any(ch.isspace() for ch in str(chosen)):
            return chosen
        safe = Path(tempfile.mkdtemp(prefix="grid-pg-"))
        check_private(safe)
        return safe

    find_socket_dir.__wrapped__ = original
    pg_module.find_suitable_socket_dir = find_socket_dir


def check_private(directory: Path) -> None:
    """Refuse a directory that is not this user's own, private, real directory."""
    st = os.lstat(directory)
    if (
        not stat.S_ISDIR(st.st_mode)
        or st.st_uid != os.geteuid()
        or stat.S_IMODE(st.st_mode) != 0o700
    ):
        raise PermissionError(
            f"socket directory {directory} is not a private directory of this user"
        )


def _socket_dir(uri: str) -> Path:
    query = parse_qs(urlparse(uri).query)
    return Path(query["host"][0])
