"""A PostgreSQL server with password authentication (SCRAM) on loopback, for trust tests.

The embedded server trusts local connections; a hall's shared server does not.  This
starts a second server from pgserver's own binaries (``initdb``, ``pg_ctl``) with
``scram-sha-256`` for every connection, so the tests connect with each role's
password exactly as a workstation would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2

SUPER_PASSWORD = "super-secret-1"
ROLE_PASSWORDS = {
    "grid_console": "console-secret-1",
    "grid_wall": "wall-secret-1",
    "grid_gateway": "gateway-secret-1",
}


def _bin(name: str) -> str:
    import pgserver

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ScramServer:
    root: Path
    port: int
    user: str | None  # the system user the server runs as (not root)

    def url(self, database: str, role: str = "postgres", password: str | None = None) -> str:
        pw = password if password is not None else (
            SUPER_PASSWORD if role == "postgres" else ROLE_PASSWORDS[role]
        )
        return f"postgresql+psycopg2://{role}:{pw}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str, role: str = "postgres", password: str | None = None):
        return psycopg2.connect(self.url(database, role, password).replace("+psycopg2", ""))

    def stop(self) -> None:
        subprocess.run(
            [_bin("pg_ctl"), "-D", str(self.root / "pgdata"), "-m", "fast", "-w", "stop"],
            user=self.user, capture_output=True, timeout=60, check=False,
        )


def start() -> ScramServer:
    root = Path(tempfile.mkdtemp(prefix="grid-scram-"))
    root.chmod(0o755)
    user = None
    if os.geteuid() == 0:  # PostgreSQL will not run as root; pgserver's own user will do
        from pgserver.utils import ensure_user_exists

        user = "pgserver"
        ensure_user_exists(user)
        import pwd

        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    pwfile = root / "pw"
    pwfile.write_text(SUPER_PASSWORD)
    if user:
        import pwd

        entry = pwd.getpwnam(user)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    pwfile.chmod(0o600)
    subprocess.run(
        [_bin("initdb"), "-D", str(root / "pgdata"), "-U", "postgres", "--encoding=utf8",
         "--auth=scram-sha-256", f"--pwfile={pwfile}"],
        user=user, capture_output=True, timeout=120, check=True,
    )
    pwfile.unlink()
    port = _free_port()
    subprocess.run(
        [_bin("pg_ctl"), "-D", str(root / "pgdata"), "-w", "-l", str(root / "log"),
         "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"],
        user=user, capture_output=True, timeout=60, check=True,
    )
    server = ScramServer(root, port, user)
    deadline = time.monotonic() + 30
    while True:
        try:
            server.connect("postgres").close()
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return server


def prepare(server: ScramServer, database: str) -> None:
    """A migrated database with reference data; each role given its password."""
    from db import migrate
    from db.engine import make_engine
    from db.reference import ensure_reference

    conn = server.connect("postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{database}"')
    conn.close()
    engine = make_engine(server.url(database))
    migrate.upgrade(engine)
    ensure_reference(engine)
    engine.dispose()
    conn = server.connect(database)
    conn.autocommit = True
    with conn.cursor() as cur:
        for role, password in ROLE_PASSWORDS.items():
            cur.execute(f"ALTER ROLE {role} PASSWORD %s", (password,))
    conn.close()
