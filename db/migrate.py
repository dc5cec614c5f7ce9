"""Schema migrations: applied on start and by ``python main.py db upgrade``.

A console refuses to run on a schema newer than it knows, because an old
console writing to a new schema is how silent data loss happens in a hall
that upgrades one workstation at a time.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from db.errors import SchemaError

MIGRATIONS = Path(__file__).with_name("migrations")
# One lock id for "someone is migrating": two consoles starting at once on an
# empty shared database must not both create the tables.
_MIGRATION_LOCK = 0x6772_6964  # "grid"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def head_revision() -> str:
    """The newest revision this build of the console knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return {rev.revision for rev in script.walk_revisions()}


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_schema(engine: Engine) -> str | None:
    """Raise SchemaError when the database was migrated by a newer console."""
    rev = current_revision(engine)
    if rev is not None and rev not in known_revisions():
        raise SchemaError(
            f"数据库结构版本 {rev} 比本程序新（本程序最高 {head_revision()}），"
            "请升级调度台后再使用。",
            f"The database schema ({rev}) is newer than this console knows "
            f"(up to {head_revision()}); upgrade the console before using it.",
        )
    return rev


# From this revision on, the schema belongs to the role ``grid_owner``: later
# migrations run as it (``SET ROLE``), so what they create is owned by it too.
OWNER_REVISION = "0005"


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Migrate the database to ``revision`` under an advisory lock; return the new one.

    The engine must carry the owner's or an administrator's credentials: up to
    ``OWNER_REVISION`` the migrations run as that login (0005 creates the roles and
    hands everything to ``grid_owner``), after it as ``grid_owner``.
    """
    check_schema(engine)
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        current = MigrationContext.configure(conn).get_current_revision()
        if current is None or current < OWNER_REVISION:
            command.upgrade(cfg, OWNER_REVISION if revision == "head" else revision)
        if revision == "head" or revision > OWNER_REVISION:
            conn.execute(text("SET LOCAL ROLE grid_owner"))
            command.upgrade(cfg, revision)
            conn.execute(text("RESET ROLE"))
    return current_revision(engine) or ""


def require_current(engine: Engine) -> str | None:
    """For consoles on a shared server, which never migrate: the schema must be ours.

    Raises ``SchemaError`` when it is newer (upgrade the console) or older (upgrade the
    database with ``db upgrade`` and the owner's credentials).
    """
    rev = check_schema(engine)
    head = head_revision()
    if rev != head:
        raise SchemaError(
            f"数据库结构版本为 {rev or '空'}，本程序需要 {head}；"
            "请管理员以数据库属主身份运行 python main.py db upgrade。",
            f"The database schema is at {rev or 'nothing'}; this console needs {head}. "
            "An administrator runs `python main.py db upgrade` with the owner's credentials.",
        )
    return rev
