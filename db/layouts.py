"""Window layouts saved per user, so an operator's docks follow them to any workstation."""

from __future__ import annotations

from sqlalchemy import Engine, text

MAX_STATE_BYTES = 256 * 1024


def save_layout(engine: Engine, user_id: int, state: bytes, name: str = "main") -> None:
    if len(state) > MAX_STATE_BYTES:
        return  # a corrupt or absurd state is not worth keeping
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO saved_layout (user_id, name, state, updated_at) VALUES (:u, :n, :s, "
            "now()) ON CONFLICT (user_id, name) DO UPDATE SET state = EXCLUDED.state, "
            "updated_at = now()"), {"u": user_id, "n": name, "s": state})


def load_layout(engine: Engine, user_id: int, name: str = "main") -> bytes | None:
    with engine.connect() as conn:
        state = conn.execute(text(
            "SELECT state FROM saved_layout WHERE user_id = :u AND name = :n"),
            {"u": user_id, "n": name}).scalar()
    return bytes(state) if state is not None else None
