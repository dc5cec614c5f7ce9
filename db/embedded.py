"""The embedded PostgreSQL server used when no shared server is named.

A single workstation (or a demo, or the test suite) runs a real PostgreSQL 16
from the ``pgserver`` wheel under the data directory.  The server is reused
across runs: a second console on the same machine attaches to the running
one, and the last process to exit stops it cleanly (pgserver counts the
processes holding a handle).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import warnings
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

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

        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pgdata = self.data_dir / "pgdata"
        log.info("starting embedded PostgreSQL in %s", self.pgdata)
        self._server = pgserver.get_server(
            self.pgdata, cleanup_mode="stop" if stop_on_exit else None
        )
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


def _patch_socket_dir(pg_module) -> None:
    """Keep the server's socket directory free of spaces.

    pgserver hands the socket directory to ``postgres -k`` unquoted, so a data
    directory such as macOS's "Application Support" would split into two
    arguments and the server would not start.  When the chosen directory has
    whitespace, use a private one under the system temp directory instead.
    """
    original = getattr(
        pg_module.find_suitable_socket_dir, "__wrapped__", pg_module.find_suitable_socket_dir
    )

    def find_socket_dir(pgdata, runtime_path):
        chosen = Path(original(pgdata, runtime_path))
        if not any(ch.isspace() for ch in str(chosen)):
            return chosen
        digest = hashlib.sha1(str(pgdata).encode()).hexdigest()[:12]
        safe = Path(tempfile.gettempdir()) / f"grid-pg-{digest}"
        safe.mkdir(mode=0o700, exist_ok=True)
        return safe

    find_socket_dir.__wrapped__ = original
    pg_module.find_suitable_socket_dir = find_socket_dir


def _socket_dir(uri: str) -> Path:
    query = parse_qs(urlparse(uri).query)
    return Path(query["host"][0])
