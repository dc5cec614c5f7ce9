"""Reference data every database needs: departments, categories, time limits.

Loaded from ``resources/reference.json`` when the tables are empty, so a new
shared database is usable at once; administrators edit it afterwards.
"""

from __future__ import annotations

import json
from importlib import resources

from sqlalchemy import Engine, func, insert, select

from db.models import AppUser, Category, Department, TimeLimit
from db.session import transaction
from db.users import SYSTEM_USER


def reference_data() -> dict:
    return json.loads(resources.files("resources").joinpath("reference.json").read_text("utf-8"))


def ensure_reference(engine: Engine) -> bool:
    """Load departments, categories and limits if absent; return True if loaded."""
    data = reference_data()
    with transaction(engine) as conn:
        _ensure_system_user(conn)
        if conn.execute(select(func.count()).select_from(Category.__table__)).scalar_one():
            return False
        conn.execute(insert(Department.__table__), data["departments"])
        dept = dict(conn.execute(select(Department.code, Department.id)).all())
        ids: dict[str, int] = {}
        for item in data["categories"]:
            ids[item["code"]] = conn.execute(
                insert(Category.__table__)
                .values(
                    code=item["code"],
                    kind=item["kind"],
                    name=item["name"],
                    name_en=item.get("name_en", ""),
                    parent_id=ids.get(item["parent"]) if item.get("parent") else None,
                    default_department_id=dept.get(item.get("department")),
                )
                .returning(Category.id)
            ).scalar_one()
        limits = [
            {"category_id": ids[item["code"]], "severity": severity, **hours}
            for item in data["categories"]
            for severity, hours in item.get("limits", {}).items()
        ]
        conn.execute(insert(TimeLimit.__table__), limits)
    return True


def _ensure_system_user(conn) -> None:
    u = AppUser.__table__
    if conn.execute(select(u.c.id).where(u.c.name == SYSTEM_USER)).first() is None:
        conn.execute(
            insert(u).values(
                name=SYSTEM_USER, display_name="系统", role="system", password_hash=None
            )
        )
