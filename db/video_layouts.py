"""Which camera on which tile, saved per user and per wall (revision 0007).

An operator's video layout is a row of their own in ``saved_layout`` (name ``video``;
the database lets a console write only its own user's rows).  A wall display's
layout is the row of the wall's login, which a duty leader or an administrator
arranges through ``grid_video_wall_layout``; the wall reads it like any user.
The state is JSON (``console.video.layouts.WallState`` checks its shape).
"""

from __future__ import annotations

import json

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from db.errors import BadInput, NotFound
from db.layouts import MAX_STATE_BYTES, load_layout, save_layout
from db.session import bind, transaction

NAME = "video"


def _encode(state: dict) -> bytes:
    data = json.dumps(state, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_STATE_BYTES:
        raise BadInput("布局过大。", "The layout is too large.")
    return data


def save_video_layout(engine: Engine, actor, state: dict) -> None:
    """The operator's own video layout."""
    save_layout(engine, actor, _encode(state), NAME)


def load_video_layout(engine: Engine, actor) -> dict | None:
    """The user's video layout (a wall login: the one arranged for it), or None."""
    raw = load_layout(engine, actor, NAME)
    if raw is None:
        return None
    try:
        state = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None  # a damaged row: start from the default rather than fail
    return state if isinstance(state, dict) else None


def save_wall_layout(engine: Engine, actor, wall: str, state: dict) -> None:
    """Arrange the wall display ``wall`` (its login name): a leader's or an administrator's."""
    data = _encode(state)
    with transaction(engine) as conn:
        bind(conn, actor, "layout")
        try:
            with conn.begin_nested():
                conn.execute(text("SELECT grid_video_wall_layout(:w, :s)"), {"w": wall, "s": data})
        except DBAPIError as exc:
            if getattr(exc.orig, "pgcode", None) == "P0002":
                raise NotFound(f"大屏账号“{wall}”不存在。",
                               f"No wall display login '{wall}'.") from None
            raise


def wall_logins(engine: Engine) -> list[str]:
    """The wall displays' logins (enabled), whose layouts a leader may arrange."""
    with engine.connect() as conn:
        return [n for (n,) in conn.execute(text(
            "SELECT name FROM app_user WHERE role = 'wall' AND active ORDER BY name"))]
