"""Who has which case on screen: "王伟 正在查看" for everyone else.

A console upserts one row per user and workstation when the operator opens
a case and refreshes it on a heartbeat; a trigger NOTIFYs on 'grid_presence'.
Rows not refreshed within ``STALE_S`` are ignored, so a console that died
stops showing up on its own.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

from db.session import bind, connection
from db.users import Actor

STALE_S = 45


def set_presence(engine: Engine, actor: Actor, case_id: int | None) -> None:
    """Record that ``actor`` now looks at ``case_id`` (None: at no case)."""
    if actor.id is None:
        return
    with engine.begin() as conn:
        bind(conn, actor, "presence")
        conn.execute(text(
            "INSERT INTO presence (user_id, workstation, case_id, seen_at) "
            "VALUES (:u, :w, :c, now()) ON CONFLICT (user_id, workstation) "
            "DO UPDATE SET case_id = EXCLUDED.case_id, seen_at = now()"),
            {"u": actor.id, "w": actor.workstation or "", "c": case_id})


def heartbeat(engine: Engine, actor: Actor) -> None:
    """Keep this workstation's row fresh without announcing a change."""
    if actor.id is None:
        return
    with engine.begin() as conn:
        bind(conn, actor, "presence")
        conn.execute(text("UPDATE presence SET seen_at = now() WHERE user_id = :u AND "
                          "workstation = :w"), {"u": actor.id, "w": actor.workstation or ""})


def clear_presence(engine: Engine, actor: Actor) -> None:
    if actor.id is None:
        return
    with engine.begin() as conn:
        bind(conn, actor, "presence")
        conn.execute(text("DELETE FROM presence WHERE user_id = :u AND workstation = :w"),
                     {"u": actor.id, "w": actor.workstation or ""})


def viewers(engine: Engine | Connection, case_id: int, exclude: Actor | None = None) -> list[str]:
    """Display names of the others who have ``case_id`` open right now."""
    with connection(engine) as conn:
        rows = conn.execute(text(
            "SELECT DISTINCT u.display_name FROM presence p JOIN app_user u ON u.id = p.user_id "
            "WHERE p.case_id = :c AND p.seen_at > now() - make_interval(secs => :s) "
            "AND NOT (p.user_id = :u AND p.workstation = :w) ORDER BY 1"),
            {"c": case_id, "s": STALE_S, "u": exclude.id if exclude else -1,
             "w": exclude.workstation if exclude else ""}).scalars().all()
    return list(rows)
