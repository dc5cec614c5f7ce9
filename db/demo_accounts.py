"""The demo's logins, in one place: who they are and the password of each.

Every demo login has a password of its own, ``demo-<login>`` (the README lists
them and the login dialog of the demo shows them); each is stored with a salt of
its own.  The demo database is marked as such (``grid_meta.demo``) when it is
seeded, and only a database so marked lets tools log in with these passwords:
the simulator behind the demo window, and review screenshots.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

DEMO_MARK = "demo"


def demo_password(login: str) -> str:
    """The demo password of ``login`` (``intake`` → ``demo-intake``)."""
    return f"demo-{login}"


def mark_demo(conn) -> None:
    """Record in the database that it is the demo (run by the seed, as the owner)."""
    conn.execute(
        text(
            "INSERT INTO grid_meta (key, value) VALUES (:k, 'true') "
            "ON CONFLICT (key) DO UPDATE SET value = 'true', updated_at = now()"
        ),
        {"k": DEMO_MARK},
    )


def is_demo(engine: Engine) -> bool:
    """True when the database was seeded as the demo."""
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT value = 'true' FROM grid_meta WHERE key = :k"), {"k": DEMO_MARK}
            ).scalar()
        )


def adopt_legacy_demo(engine: Engine) -> bool:
    """An embedded demo seeded before revision 0005: mark it, give its logins new hashes.

    Its argon2 hashes cannot be checked by the database, and its passwords are the
    demo's published ones, so the owner (this machine's own server) rehashes them as
    ``demo-<login>``.  Recognised by the demo's own patrol-terminal login; a database
    without it is left alone.  True when it adopted one.
    """
    from db.passwords import hash_password

    with engine.begin() as conn:
        if conn.execute(text("SELECT 1 FROM grid_meta WHERE key = :k"), {"k": DEMO_MARK}).first():
            return False
        if not conn.execute(text("SELECT 1 FROM app_user WHERE name = 'terminal'")).first():
            return False
        legacy = conn.execute(
            text(
                "SELECT id, name FROM app_user WHERE role <> 'system' "
                "AND (password_hash IS NULL OR password_hash NOT LIKE 'sha256i$%')"
            )
        ).all()
        for uid, name in legacy:
            conn.execute(
                text("UPDATE app_user SET password_hash = :h WHERE id = :i"),
                {"h": hash_password(demo_password(name)), "i": uid},
            )
        mark_demo(conn)
    return True
