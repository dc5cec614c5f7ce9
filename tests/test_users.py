"""Users: argon2 hashes, login, lockout shared across workstations."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from db.errors import BadInput, Forbidden
from db.users import MAX_FAILURES, add_user, authenticate
from tests.conftest import PASSWORD


def test_password_is_stored_as_argon2_hash(engine):
    add_user(engine, "newbie", "intake", "correct horse", "新人")
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT password_hash FROM app_user WHERE name='newbie'")
        ).scalar_one()
    assert stored.startswith("$argon2") and "correct horse" not in stored
    actor = authenticate(engine, "newbie", "correct horse", "ws-1")
    assert (actor.role, actor.display_name, actor.workstation) == ("intake", "新人", "ws-1")


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
