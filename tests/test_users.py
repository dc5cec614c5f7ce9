"""Users: salted hashes the database checks, login, lockout shared across workstations."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from db.errors import BadInput, Forbidden
from db.users import MAX_FAILURES, add_user, authenticate
from tests.conftest import PASSWORD


def _documented_digest(password: str, salt: bytes, rounds: int) -> bytes:
    """The hash as db/passwords.py documents it, written out again here."""
    h = hashlib.sha256(salt + password.encode()).digest()
    for _ in range(rounds):
        h = hashlib.sha256(h + salt + password.encode()).digest()
    return h


def test_password_is_stored_salted_per_user_and_checked_by_the_database(engine):
    add_user(engine, "newbie", "intake", "correct horse", "新人")
    add_user(engine, "newbie2", "intake", "correct horse", "新人二")
    with engine.connect() as conn:
        stored = dict(conn.execute(
            text("SELECT name, password_hash FROM app_user WHERE name LIKE 'newbie%'")
        ).all())
    assert "correct horse" not in stored["newbie"]
    scheme, rounds, salt, digest = stored["newbie"].split("$")
    assert scheme == "sha256i" and int(rounds) >= 100_000 and len(bytes.fromhex(salt)) == 16
    assert _documented_digest("correct horse", bytes.fromhex(salt), int(rounds)).hex() == digest
    # The same password, another user: another salt, another hash.
    assert stored["newbie2"].split("$")[2] != salt
    assert stored["newbie2"].split("$")[3] != digest
    actor = authenticate(engine, "newbie", "correct horse", "ws-1")
    assert (actor.role, actor.display_name, actor.workstation) == ("intake", "新人", "ws-1")
    assert actor.token and len(actor.token) >= 60 and actor.token not in repr(actor)


def test_wrong_password_and_unknown_user_read_the_same(engine):
    with pytest.raises(Forbidden) as a:
        authenticate(engine, "intake1", "nope")
    with pytest.raises(Forbidden) as b:
        authenticate(engine, "nobody", "nope")
    assert a.value.zh == b.value.zh == "用户名或密码错误。"


def test_lockout_after_five_failures_even_with_the_right_password(engine):
    for _ in range(MAX_FAILURES):
        with pytest.raises(Forbidden, match="用户名或密码错误"):
            authenticate(engine, "dispatcher1", "wrong", "ws-a")
    with pytest.raises(Forbidden, match="锁定"):
        authenticate(engine, "dispatcher1", PASSWORD, "ws-b")
    # When the lock has run out, the right password works again.
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE app_user SET locked_until = now() - interval '1 second' "
                "WHERE name = 'dispatcher1'"
            )
        )
    assert authenticate(engine, "dispatcher1", PASSWORD).role == "dispatcher"


def test_success_resets_the_failure_count(engine):
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(Forbidden):
            authenticate(engine, "intake1", "wrong")
    authenticate(engine, "intake1", PASSWORD)
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(Forbidden):
            authenticate(engine, "intake1", "wrong")
    assert authenticate(engine, "intake1", PASSWORD).name == "intake1"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("bad name", "intake", "secret12"), "空格"),
        (("ok", "superuser", "secret12"), "未知角色"),
        (("ok", "intake", "123"), "至少"),
        (("ok", "department", "secret12"), "所属单位"),
        (("intake1", "intake", "secret12"), "已存在"),
    ],
)
def test_bad_users_are_refused(engine, args, match):
    with pytest.raises(BadInput, match=match):
        add_user(engine, *args)


def test_system_user_cannot_log_in(engine):
    with pytest.raises(Forbidden):
        authenticate(engine, "system", "")
