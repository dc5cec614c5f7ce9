"""Open the database a console works on: choose it, migrate it, check it."""

from __future__ import annotations

import logging

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from console.config import Settings
from db import migrate
from db.engine import make_engine, resolve_url
from db.errors import Unavailable
from db.reference import ensure_reference

log = logging.getLogger(__name__)


def open_database(
    settings: Settings, upgrade: bool = True, pool_size: int = 5, seed_if_empty: bool = False
) -> Engine:
    """An engine on the configured database, migrated to this console's schema.

    With ``seed_if_empty``, an embedded database that has never been used gets
    the demo district (a first start should show a working hall, not an empty
    screen); a shared server is never seeded behind its administrators' backs.

    Raises ``Unavailable`` when the server cannot be reached and
    ``SchemaError`` when the schema is newer than this console.
    """
    try:
        url = resolve_url(settings.database_url, settings.data_dir)
    except Exception as exc:  # pgserver failures come in many types
        raise Unavailable(
            f"无法启动内置数据库：{exc}", f"Could not start the embedded database: {exc}"
        ) from exc
    engine = make_engine(url, pool_size=pool_size)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise Unavailable(
            f"无法连接数据库 {redact(url)}：{first_line(exc)}",
            f"Cannot reach the database {redact(url)}: {first_line(exc)}",
        ) from exc
    if upgrade:
        migrate.upgrade(engine)
        ensure_reference(engine)
    else:
        migrate.check_schema(engine)
    if seed_if_empty and settings.database_url is None:
        from db.demo_seed import is_empty, seed_demo

        if is_empty(engine):
            log.info("first start on an empty embedded database: seeding the demo district")
            seed_demo(engine)
    return engine


def redact(url: str) -> str:
    """The URL with any password hidden, for messages and the status window."""
    from urllib.parse import unquote

    from sqlalchemy.engine import make_url

    return unquote(make_url(url).render_as_string(hide_password=True))


def first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", exc)
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]
