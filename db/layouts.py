"""Window layouts saved per user, so an operator's docks follow them to any workstation."""

from __future__ import annotations

from sqlalchemy import Engine, text

from db.session import bind

MAX_STATE_BYTES = 256 * 1024


def save_layout(engine: Engine, user_id, state: bytes, name: str = "main") -> None:
    """Store ``state`` for the user; an ``Actor`` for ``user_id`` proves its session
    (the database lets a console write only its own user's layouts)."""
    if len(state) > MAX_STATE_BYTES:
        return  # a corrupt or absurd state is not worth keeping
    actor = user_id if hasattr(user_id, "id") else None
    user_id = getattr(user_id, "id", user_id)
    with engine.begin() as conn:
        bind(conn, actor, "layout")
        conn.execute(text(
            "INSERT INTO saved_layout (user_id, name, state, updated_at) VALUES (:u, :n, :s, "
            "now()) ON CONFLICT (user_id, name) DO UPDATE SET state = EXCLUDED.state, "
            "updated_at = now()"), {"u": user_id, "n": name, "s": state})


def load_layout(engine: Engine, user_id, name: str = "main") -> bytes | None:
    actor = user_id if hasattr(user_id, "id") else None
    user_id = getattr(user_id, "id", user_id)
    with engine.begin() as conn:
        bind(conn, actor, "layout")
        state = conn.execute(text(
            "SELECT state FROM saved_layout WHERE user_id = :u AND name = :n"),
            {"u": user_id, "n": name}).scalar()
    return bytes(state) if state is not None else None
