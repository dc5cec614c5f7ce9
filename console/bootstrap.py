"""Open the database a console works on: choose it, migrate it, check it."""

from __future__ import annotations

import logging

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from console.config import Settings
from db import migrate
from db.engine import make_engine, resolve_url, role_url
from db.errors import Unavailable
from db.reference import ensure_reference

log = logging.getLogger(__name__)


ROLES = {"console": "grid_console", "wall": "grid_wall", "gateway": "grid_gateway"}


def open_database(
    settings: Settings,
    upgrade: bool = True,
    pool_size: int = 5,
    seed_if_empty: bool = False,
    role: str = "console",
) -> Engine:
    """An engine on the configured database, as ``role``: console, wall, gateway or owner.

    On the embedded server this process is the owner (the server is its own): the
    schema is migrated and, with ``seed_if_empty``, an unused database gets the demo
    district; then the engine connects as the role asked for, so the demo runs
    through the same checks as a hall's shared server.  On a shared server the URL's
    credentials are used as given and nothing is migrated behind the administrators'
    backs: a console refuses a schema other than its own (``db upgrade``, with the
    owner's credentials, is the one command that migrates one).

    Raises ``Unavailable`` when the server cannot be reached and ``SchemaError``
    when the schema is not this console's.
    """
    try:
        url = resolve_url(settings.database_url, settings.data_dir)
    except Exception as exc:  # pgserver failures come in many types
        raise Unavailable(
            f"无法启动内置数据库：{exc}", f"Could not start the embedded database: {exc}"
        ) from exc
    engine = _reach(url, pool_size)
    embedded = settings.database_url is None
    if embedded or role == "owner":
        if upgrade:
            migrate.upgrade(engine)
            ensure_reference(engine)
        else:
            migrate.check_schema(engine)
    else:
        migrate.require_current(engine)
    if seed_if_empty and embedded:
        from db.demo_seed import is_empty, seed_demo

        if is_empty(engine):
            log.info("first start on an empty embedded database: seeding the demo district")
            seed_demo(engine)
    if embedded and upgrade:
        from db.demo_accounts import adopt_legacy_demo

        adopt_legacy_demo(engine)
    if embedded and role != "owner":
        engine.dispose()
        engine = _reach(role_url(url, ROLES[role]), pool_size)
    return engine


def _reach(url: str, pool_size: int) -> Engine:
    engine = make_engine(url, pool_size=pool_size)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise Unavailable(
            f"无法连接数据库 {redact(url)}：{first_line(exc)}",
            f"Cannot reach the database {redact(url)}: {first_line(exc)}",
        ) from exc
    return engine


def redact(url: str) -> str:
    """The URL with any password hidden, for messages and the status window.

    ``console.credentials.redact_url``: the query's ``password=`` too, and a URL
    too malformed to parse is masked rather than raising with it in the message.
    """
    from console.credentials import redact_url

    return redact_url(url)


def first_line(exc: BaseException) -> str:
    """The driver's first line (libpq's reason), scrubbed of anything secret."""
    from console.credentials import scrub

    orig = getattr(exc, "orig", exc)
    return scrub((str(orig).strip().splitlines() or [type(orig).__name__])[0])
