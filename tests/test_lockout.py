"""The login lockout: "5 wrong passwords lock an account for 5 minutes, counted across
workstations" (README, The console), and what happens when the five minutes are over.

Nobody waits five minutes here: the lock is a time stored in the account's row,
so the test moves that time back in its own database, as the clock would.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from db.engine import make_engine
from db.errors import Forbidden
from db.users import authenticate
from tests.conftest import PASSWORD

WRONG = "not-the-password"
WRONG_MESSAGE = "用户名或密码错误。"


def fail(engine, user: str, workstation: str) -> None:
    with pytest.raises(Forbidden) as err:
        authenticate(engine, user, WRONG, workstation)
    assert err.value.zh == WRONG_MESSAGE


def locked_message(engine, user: str) -> str:
    """The refusal of the right password while the account is locked."""
    with pytest.raises(Forbidden) as err:
        authenticate(engine, user, PASSWORD, "ws-right")
    assert "锁定" in err.value.zh and "locked" in err.value.en
    return err.value.zh


def lock_left(engine, user: str) -> timedelta | None:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT locked_until - now() FROM app_user WHERE name = :n"), {"n": user}
        ).scalar()


def move_lock_back(engine, user: str, by: timedelta) -> None:
    """As if ``by`` had passed since the account was locked."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE app_user SET locked_until = locked_until - :d WHERE name = :n"),
            {"d": by, "n": user},
        )


def test_four_wrong_passwords_do_not_lock_and_a_right_one_starts_the_count_again(engine):
    for _ in range(4):
        fail(engine, "dispatcher1", "ws-a")
    assert authenticate(engine, "dispatcher1", PASSWORD, "ws-a").name == "dispatcher1"
    # The count started again: four more wrong ones still leave the account open.
    for _ in range(4):
        fail(engine, "dispatcher1", "ws-a")
    assert authenticate(engine, "dispatcher1", PASSWORD, "ws-a").name == "dispatcher1"
    assert lock_left(engine, "dispatcher1") is None


def test_five_wrong_from_several_workstations_lock_for_five_minutes_then_it_expires(db_url):
    # Three workstations, each with its own connections to the shared database.
    stations = {name: make_engine(db_url) for name in ("ws-a", "ws-b", "ws-c")}
    try:
        a, b, c = stations.values()
        for engine, station in ((a, "ws-a"), (b, "ws-b"), (c, "ws-c"), (a, "ws-a")):
            fail(engine, "intake1", station)
        # Four so far, spread over three workstations: still open for the fifth try,
        # which is wrong too and locks the account for everyone.
        fail(engine=b, user="intake1", workstation="ws-b")
        left = lock_left(a, "intake1")
        assert timedelta(minutes=4, seconds=50) < left <= timedelta(minutes=5)
        for engine in stations.values():
            assert "请 5 分钟后再试" in locked_message(engine, "intake1")
        # Another account is not touched by it.
        assert authenticate(c, "dispatcher1", PASSWORD, "ws-c").name == "dispatcher1"

        # 4 min 50 s later: ten seconds to go, still locked ("1 more minute").
        move_lock_back(a, "intake1", timedelta(minutes=4, seconds=50))
        assert "请 1 分钟后再试" in locked_message(c, "intake1")

        # Twenty seconds after that the five minutes are over.  The count starts from
        # zero: four wrong passwords now do not lock the account again …
        move_lock_back(a, "intake1", timedelta(seconds=20))
        for _ in range(4):
            fail(a, "intake1", "ws-a")
        # … and the right one logs in.
        actor = authenticate(c, "intake1", PASSWORD, "ws-c")
        assert (actor.name, actor.role, actor.workstation) == ("intake1", "intake", "ws-c")
        assert lock_left(a, "intake1") is None
        # Five more wrong ones lock it again, for five minutes.
        for _ in range(5):
            fail(a, "intake1", "ws-a")
        assert "请 5 分钟后再试" in locked_message(b, "intake1")
    finally:
        for engine in stations.values():
            engine.dispose()


def test_a_wrong_password_during_the_lock_is_refused_as_locked(engine):
    for _ in range(5):
        fail(engine, "verifier1", "ws-a")
    with pytest.raises(Forbidden) as err:
        authenticate(engine, "verifier1", WRONG, "ws-a")
    assert "锁定" in err.value.zh  # it says locked, without testing the password
    move_lock_back(engine, "verifier1", timedelta(minutes=5, seconds=1))
    assert authenticate(engine, "verifier1", PASSWORD, "ws-a").name == "verifier1"
