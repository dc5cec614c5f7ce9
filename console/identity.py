"""Logging in for tools that act as a user: the simulator and review screenshots.

No tool skips a login.  On the demo database (marked so by its seed) the demo's
own passwords are known and used; anywhere else the user's password must be given
(``GRID_PASSWORD``), and the database checks it like any other login.
"""

from __future__ import annotations

import os

from sqlalchemy import Engine

from db.demo_accounts import demo_password, is_demo
from db.errors import Forbidden
from db.users import Actor, authenticate


def tool_login(engine: Engine, name: str, workstation: str) -> Actor:
    """``name`` logged in: with its demo password on the demo, else with GRID_PASSWORD."""
    if is_demo(engine):
        return authenticate(engine, name, demo_password(name), workstation)
    password = os.environ.get("GRID_PASSWORD")
    if not password:
        raise Forbidden(
            f"这不是演示数据库：请通过 GRID_PASSWORD 提供用户 {name} 的密码。",
            f"This is not the demo database: give {name}'s password in GRID_PASSWORD.",
        )
    return authenticate(engine, name, password, workstation)
