"""A summary of the database a console is attached to, for status views and the CLI."""

from __future__ import annotations

from sqlalchemy import Engine, func, select, text

from console.bootstrap import redact
from db import migrate
from db.models import AppUser, Case, CaseLog, Category, Department, District, Grid


def database_status(engine: Engine) -> dict:
    """Server, schema revision and row counts: what an operator checks first."""
    with engine.connect() as conn:
        version = conn.execute(text("SHOW server_version")).scalar_one()
        by_status = dict(
            conn.execute(select(Case.status, func.count()).group_by(Case.status)).all()
        )

        def count(model) -> int:
            return conn.execute(select(func.count()).select_from(model.__table__)).scalar_one()

        status = {
            "url": redact(engine.url.render_as_string(hide_password=False)),
            "server": f"PostgreSQL {version}",
            "schema": migrate.current_revision(engine),
            "schema_head": migrate.head_revision(),
            "districts": count(District),
            "grids": count(Grid),
            "departments": count(Department),
            "categories": count(Category),
            "users": count(AppUser) - 1,  # the built-in system user is not a login
            "cases": sum(by_status.values()),
            "cases_by_status": by_status,
            "log_seq": conn.execute(select(func.coalesce(func.max(CaseLog.seq), 0))).scalar_one(),
        }
    from db.audit import last_check

    status["audit"] = last_check(engine)  # when the log's hash chain was last verified
    return status
