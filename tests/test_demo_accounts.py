"""The demo's logins: each its own password and salt; an old demo is adopted on upgrade."""

from __future__ import annotations

from sqlalchemy import text

from db.demo_accounts import adopt_legacy_demo, is_demo
from db.users import authenticate


def test_a_demo_seeded_before_the_database_checked_passwords_is_adopted(engine):
    with engine.begin() as conn:  # as an old seed left it: argon2 hashes, no mark
        for name, role in (("terminal", "intake"), ("leader", "leader")):
            conn.execute(text(
                "INSERT INTO app_user (name, display_name, role, password_hash) "
                "VALUES (:n, :n, :r, '$argon2id$v=19$m=65536,t=3,p=4$old$old')"),
                {"n": name, "r": role})
    assert not is_demo(engine)
    assert adopt_legacy_demo(engine) is True
    assert is_demo(engine)
    # The published demo passwords work, each login with a salt of its own.
    assert authenticate(engine, "leader", "demo-leader").role == "leader"
    assert authenticate(engine, "terminal", "demo-terminal").name == "terminal"
    with engine.connect() as conn:
        salts = conn.execute(text(
            "SELECT split_part(password_hash, '$', 3) FROM app_user "
            "WHERE name IN ('leader', 'terminal')")).scalars().all()
    assert len(set(salts)) == 2
    assert adopt_legacy_demo(engine) is False  # once


def test_a_database_that_never_was_the_demo_is_left_alone(engine):
    assert adopt_legacy_demo(engine) is False
    assert not is_demo(engine)
