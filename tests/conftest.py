"""Test fixtures on a real PostgreSQL: the embedded server, or GRID_DATABASE_URL.

A template database is migrated and loaded once per run (reference data and
one user per role); each test gets its own copy (``CREATE DATABASE …
TEMPLATE``), so tests are independent and can run in any order.
"""

from __future__ import annotations

import gc
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import psycopg2
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from db import migrate
from db.engine import make_engine, normalize_url
from db.reference import ensure_reference
from db.users import Actor, add_user, get_actor
from widgets.app import pin_none

pin_none()  # PySide6 6.12 on Python 3.11 leaks references to None (see widgets.app)

# The cyclic garbage collector may run on any thread that allocates; if it frees
# Qt objects from a worker thread while the GUI thread deletes others, the two can
# wait on each other (seen in test_console_window). Collect on the main thread only,
# between tests; reference counting still frees everything without cycles at once.
gc.disable()


@pytest.fixture(scope="module", autouse=True)
def _collect_everything_after_each_module():
    """What the module's fixtures held (engines, seeded databases) goes with the module."""
    yield
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _collect_on_the_main_thread():
    """Collect what the test left, then freeze the survivors.

    A full collection walks every object alive (the imported modules, the application,
    the module's fixtures): a quarter of a second after a window test, one eighth of
    such a test's time. Frozen survivors are not walked again; what a test leaves is
    collected after it, and the survivors themselves once their module ends.
    """
    yield
    gc.collect()
    gc.freeze()

TEMPLATE = "grid_test_template"
PASSWORD = "test-pass-1"

# One user per role (plus a second department) with the display names that
# appear in messages; the department users belong to the departments named.
USERS = [
    ("intake1", "intake", "李娜", None),
    ("dispatcher1", "dispatcher", "王伟", None),
    ("dispatcher2", "dispatcher", "赵敏", None),
    ("dept_huanwei", "department", "环卫所", "huanwei"),
    ("dept_shizheng", "department", "市政所", "shizheng"),
    ("verifier1", "verifier", "陈核查", None),
    ("leader1", "leader", "刘值班", None),
    ("admin1", "admin", "管理员", None),
    ("wall1", "wall", "大屏", None),
]


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class Server:
    """Admin access to the test PostgreSQL server: create and drop databases."""

    def __init__(self, url_for: Callable[[str], str], embedded=None):
        self.url_for = url_for
        self.embedded = embedded

    def admin(self):
        conn = psycopg2.connect(self.url_for("postgres").replace("+psycopg2", ""))
        conn.autocommit = True
        return conn

    def create(self, name: str, template: str | None = None) -> str:
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                tpl = f' TEMPLATE "{template}"' if template else ""
                cur.execute(f'CREATE DATABASE "{name}"{tpl}')
        finally:
            conn.close()
        return self.url_for(name)

    def drop(self, name: str) -> None:
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory) -> Iterator[Server]:
    shared = os.environ.get("GRID_DATABASE_URL")
    if shared:
        base = make_url(normalize_url(shared))

        def url_for(name: str) -> str:
            return base.set(database=name).render_as_string(hide_password=False)

        yield Server(url_for)
        return
    from db.embedded import EmbeddedServer

    server = EmbeddedServer(Path(tmp_path_factory.mktemp("pg")), database="postgres")
    yield Server(server.url_for, server)
    server.stop()


@pytest.fixture(scope="session")
def template_db(pg_server: Server) -> str:
    url = pg_server.create(TEMPLATE)
    engine = make_engine(url)
    migrate.upgrade(engine)
    ensure_reference(engine)
    for name, role, display, dept in USERS:
        add_user(engine, name, role, PASSWORD, display, dept)
    engine.dispose()
    return TEMPLATE


@pytest.fixture
def db_url(pg_server: Server, template_db: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = pg_server.create(name, template_db)
    yield url
    pg_server.drop(name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url, pool_size=10)
    yield eng
    eng.dispose()


@pytest.fixture
def actors(engine: Engine) -> dict[str, Actor]:
    """Actors by user name, each with a workstation of its own."""
    return {name: get_actor(engine, name, f"ws-{name}") for name, *_ in USERS}


def table_counts(engine: Engine) -> dict[str, int]:
    """Row counts of the tables an action may touch: 'changes nothing' checks."""
    tables = ["case", "case_log", "case_assignment", "attachment", "case_counter", "app_user"]
    with engine.connect() as conn:
        counts = {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in tables}
        counts["versions"] = conn.execute(
            text('SELECT coalesce(sum(version), 0) FROM "case"')
        ).scalar_one()
    return counts


def pytest_configure(config) -> None:
    """Byte-compile the project once, before the workers start.

    Many tests run ``python main.py`` as a user would.  Where the environment says
    PYTHONDONTWRITEBYTECODE (as some CI images do), no process ever writes the
    project's .pyc files, and every one of those subprocesses compiles the whole
    import chain again (about a quarter of a second each).  Compiling up front
    lets them read bytecode; it is idempotent and quick when nothing changed.
    """
    if hasattr(config, "workerinput"):  # an xdist worker: the controller did it
        return
    import compileall

    root = Path(__file__).resolve().parents[1]
    for name in ("console", "db", "maps", "widgets"):
        compileall.compile_dir(root / name, quiet=1, workers=1)
    compileall.compile_file(root / "main.py", quiet=1)


def pytest_sessionfinish(session, exitstatus) -> None:
    session.config._grid_exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """Make the run's exit code the tests' verdict.

    A PySide6 + pyqtgraph process can crash in the garbage collector at
    interpreter exit; by now every fixture (and the embedded server) has
    been torn down and the summary printed, so leave without that lottery.
    """
    import sys

    status = getattr(config, "_grid_exit_status", None)
    if status is not None and "PySide6" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
