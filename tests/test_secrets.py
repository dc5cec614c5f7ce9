"""Secrets stay secret: issue 9 item 8 and the README's "Which database".

* ``db url`` prints the URL without its password;
* ``--database-url`` with a password is refused (exit 2, one line) in favour of
  ``GRID_DATABASE_URL`` or ``--database-url-file``, a file only its owner can
  read (refused when group or others may);
* no message carries a password or a hash: a wrong database password (on a
  real PostgreSQL with SCRAM authentication, ``tests.scram_server``), a wrong
  console password, a malformed URL, a driver error on a
  statement whose parameters are secret, a gateway log line.

Every command runs in a real process (``tests.cli_runner``).
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator

import psycopg2
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db.engine import make_engine
from tests import scram_server
from tests.cli_runner import cli, main_py
from tests.conftest import PASSWORD

DB_PASSWORD = "Db-Pass-7f3a9c"
WRONG = "Wrong-Guess-0b6e44"


def no_secret(output: str, *secrets: str) -> None:
    """Neither a secret nor a traceback in ``output``; the assertion names which, not its value."""
    assert "Traceback" not in output, output
    for i, secret in enumerate(secrets):
        assert secret not in output, f"secret #{i} appears in the output"


# --- a PostgreSQL that checks passwords -----------------------------------------------------


@pytest.fixture(scope="module")
def scram() -> Iterator[scram_server.ScramServer]:
    server = scram_server.start()
    try:
        conn = server.connect("postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE ROLE grid_app LOGIN PASSWORD '{DB_PASSWORD}'")
        conn.close()
        yield server
    finally:
        server.stop()


def app_url(server, password: str | None) -> str:
    """grid_app's URL on the SCRAM server, with ``password`` (None: without one)."""
    if password is None:
        return f"postgresql://grid_app@127.0.0.1:{server.port}/postgres"
    return server.url("postgres", "grid_app", password)


def verifier(server, role: str) -> str:
    """The stored SCRAM verifier of ``role`` (what a leak of 'the hash' would show)."""
    conn = server.connect("postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_the_server_really_checks_passwords(scram):
    scram.connect("postgres", "grid_app", DB_PASSWORD).close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        scram.connect("postgres", "grid_app", WRONG)
    assert verifier(scram, "grid_app").startswith("SCRAM-SHA-256$")


# --- db url ------------------------------------------------------------------------------------


def test_db_url_prints_the_url_without_its_password(scram):
    url = app_url(scram, DB_PASSWORD)
    out = main_py("db", "url", env={"GRID_DATABASE_URL": url})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"postgresql+psycopg2://grid_app:***@127.0.0.1:{scram.port}/postgres"
    no_secret(out.stdout + out.stderr, DB_PASSWORD)
    # A password given as a query parameter (libpq reads that too) is hidden as well.
    query = f"postgresql://grid_app@127.0.0.1:{scram.port}/postgres?password={DB_PASSWORD}"
    out = main_py("db", "url", env={"GRID_DATABASE_URL": query})
    assert out.returncode == 0 and "password=***" in out.stdout
    no_secret(out.stdout + out.stderr, DB_PASSWORD)


# --- no password on the command line --------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://grid_app:{DB_PASSWORD}@127.0.0.1:5432/grid",
        f"postgresql://grid_app@127.0.0.1:5432/grid?password={DB_PASSWORD}",
    ],
)
def test_a_password_on_the_command_line_is_refused(url):
    for lang, word in (("zh", "GRID_DATABASE_URL"), ("en", "GRID_DATABASE_URL")):
        out = main_py("--lang", lang, "--database-url", url, "db", "url")
        assert out.returncode == 2, out.stderr
        assert out.stdout == "" and len(out.stderr.strip().splitlines()) == 1
        assert word in out.stderr and "--database-url-file" in out.stderr
        no_secret(out.stdout + out.stderr, DB_PASSWORD)
    # After the command too (the common options are accepted there).
    out = main_py("case", "list", "--database-url", url)
    assert out.returncode == 2
    no_secret(out.stdout + out.stderr, DB_PASSWORD)


def test_a_mistyped_command_line_is_not_echoed_with_its_password():
    # The flag forgotten: argparse names the stray argument in its error line.
    out = main_py("db", "url", f"postgresql://grid_app:{DB_PASSWORD}@127.0.0.1:5432/grid")
    assert out.returncode == 2 and "unrecognized arguments" in out.stderr
    no_secret(out.stdout + out.stderr, DB_PASSWORD)


def test_a_url_without_a_password_is_still_taken_from_the_command_line(scram):
    out = main_py("--database-url", app_url(scram, None), "db", "url")
    assert out.returncode == 0 and out.stdout.strip().endswith(f":{scram.port}/postgres")


def test_the_url_file_must_be_readable_by_its_owner_only(scram, tmp_path):
    url = app_url(scram, DB_PASSWORD)
    secret_file = tmp_path / "grid-db-url"
    secret_file.write_text(url + "\n")
    for mode in (0o644, 0o640, 0o604, 0o660):
        secret_file.chmod(mode)
        out = main_py("--database-url-file", str(secret_file), "db", "url")
        assert out.returncode == 2, (oct(mode), out.stderr)
        assert "chmod 600" in out.stderr and len(out.stderr.strip().splitlines()) == 1
        no_secret(out.stdout + out.stderr, DB_PASSWORD)
    secret_file.chmod(0o600)
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    out = main_py("--database-url-file", str(secret_file), "db", "url")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"postgresql+psycopg2://grid_app:***@127.0.0.1:{scram.port}/postgres"
    no_secret(out.stdout + out.stderr, DB_PASSWORD)
    # And the file's URL is the one used: the wrong password in it fails to log in.
    secret_file.write_text(app_url(scram, WRONG) + "\n")
    out = main_py("--database-url-file", str(secret_file), "case", "list")
    assert out.returncode == 5 and "password authentication failed" in out.stderr
    no_secret(out.stdout + out.stderr, WRONG, DB_PASSWORD)


# --- wrong passwords ------------------------------------------------------------------------


def test_a_wrong_database_password_is_a_message_without_password_or_hash(scram):
    stored = verifier(scram, "grid_app")
    for lang in ("zh", "en"):
        out = main_py(
            "--lang", lang, "case", "list",
            env={"GRID_DATABASE_URL": app_url(scram, WRONG)},
        )  # fmt: skip
        assert out.returncode == 5, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        assert "password authentication failed" in out.stderr and "***" in out.stderr
        no_secret(out.stdout + out.stderr, WRONG, DB_PASSWORD, stored, stored.split("$", 1)[1])


def test_a_wrong_console_password_is_a_message_without_password_or_hash(db_url, engine):
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT password_hash FROM app_user WHERE name = 'dispatcher1'")
        ).scalar_one()
    assert stored and len(stored) > 20
    lines = [
        "case act - report --user dispatcher1 --category S0102 --lon 116.41 --lat 39.92 "
        "--description x",
        "device key some-van --create --admin dispatcher1",
    ]
    for line in lines:
        out = cli(db_url, line, WRONG, GRID_ADMIN_PASSWORD=WRONG)
        assert out.returncode == 4, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        no_secret(out.stdout + out.stderr, WRONG, PASSWORD, stored, *stored.split("$")[-2:])


def test_a_malformed_url_with_a_password_is_one_line_without_it():
    for url in (
        f"postgresql://grid_app:{DB_PASSWORD}@db.example:notaport/grid",
        f"postgresql//grid_app:{DB_PASSWORD}@db.example/grid",
    ):
        out = main_py("case", "list", env={"GRID_DATABASE_URL": url})
        assert out.returncode == 2, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "GRID_DATABASE_URL" in out.stderr
        no_secret(out.stdout + out.stderr, DB_PASSWORD)


def test_a_driver_error_does_not_quote_secret_parameters(db_url):
    """The text a traceback or a log line would show of a failed statement."""
    engine = make_engine(db_url)
    try:
        with pytest.raises(DBAPIError) as err, engine.connect() as conn:
            conn.execute(text("SELECT 1 / 0 WHERE :secret <> ''"), {"secret": DB_PASSWORD})
    finally:
        engine.dispose()
    assert "division by zero" in str(err.value)
    assert DB_PASSWORD not in str(err.value) and DB_PASSWORD not in repr(err.value)


def test_gateway_log_lines_carry_no_key_or_password(tmp_path):
    """The gateway's log handler scrubs what it writes, tracebacks included."""
    from console.credentials import install_log_scrubber, remember

    stream_path = tmp_path / "log"
    handler = logging.FileHandler(stream_path)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("grid-secrets-test")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        install_log_scrubber(logger)
        remember("enrol-key-abcdefghijklmnop")
        logger.warning("enrolment with enrol-key-abcdefghijklmnop refused")
        try:
            raise RuntimeError(f"connect to postgresql://grid:{DB_PASSWORD}@db/grid failed")
        except RuntimeError:
            logger.exception("database unavailable")
        handler.flush()
    finally:
        logger.removeHandler(handler)
        handler.close()
    written = stream_path.read_text()
    assert "refused" in written and "Traceback" in written and "grid:***@db" in written
    assert "enrol-key-abcdefghijklmnop" not in written and DB_PASSWORD not in written


def test_the_enrolment_key_is_refused_on_the_command_line(db_url, tmp_path):
    key = "enrol-key-on-the-command-line-xyz"
    out = cli(db_url, f"gateway --port 0 --queue-dir {tmp_path / 'q'} --enrol-key {key}", "")
    assert out.returncode == 2 and "GRID_ENROL_KEY" in out.stderr
    no_secret(out.stdout + out.stderr, key)
    loose = tmp_path / "enrol"
    loose.write_text(key + "\n")
    loose.chmod(0o644)
    out = cli(db_url, f"gateway --port 0 --queue-dir {tmp_path / 'q'} --enrol-key-file {loose}", "")
    assert out.returncode == 2 and "chmod 600" in out.stderr
    no_secret(out.stdout + out.stderr, key)


def test_another_console_cannot_read_a_login_password_from_pg_stat_activity(db_url):
    import threading

    from db.engine import role_url

    console = make_engine(role_url(db_url, "grid_console"))
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        with console.connect() as conn:
            while not stop.is_set() and not seen:
                seen.extend(
                    conn.execute(
                        text(
                            "SELECT query FROM pg_stat_activity "
                            "WHERE pid <> pg_backend_pid() AND query LIKE '%grid_login%'"
                        )
                    ).scalars()
                )
                conn.commit()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with console.connect() as conn:
            for _ in range(50):  # each login hashes for tens of milliseconds
                if seen:
                    break
                conn.execute(
                    text("SELECT * FROM grid_login(:n, :p, :w)"),
                    {"n": "dispatcher1", "p": PASSWORD, "w": "ws-watched"},
                ).all()
                conn.commit()
    finally:
        stop.set()
        watcher.join()
        console.dispose()
    assert not any(PASSWORD in q for q in seen), "a login's password was readable"
