"""Transactions that turn driver failures into operator-facing errors.

Which failure it was matters to the operator and to what happens next, so
the driver's error is told apart by its SQLSTATE, not by its class (psycopg2
raises ``OperationalError`` for all of these):

* the connection is gone (no SQLSTATE, class 08, the server shutting down,
  or our own idle-in-transaction timeout): ``ConnectionLost`` before commit
  (nothing written, ``with_retry`` tries once more on a fresh connection),
  ``Unavailable`` "outcome unknown" during commit;
* ``55P03`` lock_timeout: another session holds the case (``Busy``, a
  conflict: "the case is busy, try again"), nothing written;
* ``40P01`` deadlock (and ``40001`` serialisation failure): the database
  rolled this one back to let the other go; ``with_retry`` runs it once more,
  and a second one is ``Deadlocked`` (a conflict);
* ``57014`` statement timeout: ``TimedOut`` (unavailable, exit 5), with its
  own words rather than "the database is gone";
* ``42501``: the database's refusal (``Forbidden``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg2
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from db.errors import BadInput, Conflict, Forbidden, GridError, Unavailable

T = TypeVar("T")
UNAVAILABLE = (
    "数据库暂时不可用，操作未执行，请稍后重试。",
    "The database is unavailable; nothing was changed. Try again shortly.",
)
UNKNOWN_OUTCOME = (
    "提交时与数据库的连接中断，操作可能已生效，请刷新案件查看。",
    "The connection broke while committing; the action may have taken effect. "
    "Reload the case to check.",
)


BUSY = ("案件正被他人处理，请稍后重试。", "The case is busy, try again.")
DEADLOCK = (
    "与其他操作互相等待（死锁），本操作未执行，请重试。",
    "This action and another waited on each other (a deadlock); nothing was changed. "
    "Try again.",
)
TIMED_OUT = (
    "数据库处理超时，操作未执行，请稍后重试。",
    "The database took too long; nothing was changed. Try again shortly.",
)


class ConnectionLost(Unavailable):
    """The connection broke before commit: nothing was written, a retry is safe."""


class Busy(Conflict):
    """lock_timeout: another session holds the row; nothing was written (exit 3)."""


class Deadlocked(Conflict):
    """The database broke a deadlock by rolling this transaction back; a retry is safe."""


class TimedOut(Unavailable):
    """A statement ran past statement_timeout and was cancelled; nothing was written."""


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error (SQLAlchemy's or psycopg2's), if it has one."""
    return getattr(getattr(exc, "orig", exc), "pgcode", None)


_LOST_CODES = {"57P01", "57P02", "57P03", "25P03"}  # shutdown, crash, starting, idle timeout


def _lost(exc: BaseException) -> bool:
    """Whether the connection itself is gone (as opposed to a statement refused)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    code = sqlstate(exc)
    if code is None:
        orig = getattr(exc, "orig", exc)
        return isinstance(exc, OperationalError) or isinstance(
            orig, psycopg2.OperationalError | psycopg2.InterfaceError
        )
    return code.startswith("08") or code in _LOST_CODES


def classify(exc: BaseException) -> GridError | None:
    """The operator-facing error for a driver error that is not a lost connection.

    None when it is a lost connection (the caller decides: before or during
    commit) or something else entirely (a bug: the caller lets it rise).
    """
    code = sqlstate(exc)
    if code == "42501":
        return _refusal(exc)
    if code == "55P03":
        return Busy(*BUSY)
    if code in ("40P01", "40001"):
        return Deadlocked(*DEADLOCK)
    if code == "57014":
        return TimedOut(*TIMED_OUT)
    return None


def grid_error(exc: BaseException) -> GridError | None:
    """Any driver error as the ``GridError`` an operator reads, or None for a bug.

    What the CLI's top level uses, so no command prints a driver's traceback
    for a lost database or a refusal.
    """
    if isinstance(exc, GridError):
        return exc
    mapped = classify(exc)
    if mapped is not None:
        return mapped
    if _lost(exc):
        return ConnectionLost(*UNAVAILABLE)
    code = sqlstate(exc) or ""
    if code == "23505":  # a unique key taken between a check and the insert
        return BadInput("该记录已存在（可能刚被他人添加），未作更改。",
                        "That already exists (someone may have just added it); nothing changed.")
    if code.startswith("23") or code.startswith("22"):  # a constraint or a value refused
        detail = (str(getattr(exc, "orig", exc)).strip().splitlines() or [""])[0][:200]
        return BadInput(f"数据库拒绝了这些数据，未作更改：{detail}",
                        f"The database refused the data; nothing changed: {detail}")
    return None


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction: commit on success, roll back on any error.

    A connection lost before commit becomes ``ConnectionLost`` (nothing was
    written); lost during commit, ``Unavailable`` with a message that says the
    outcome is unknown, so the operator reloads before acting again.
    """
    committing = False
    try:
        with engine.begin() as conn:
            yield conn
            committing = True
    except GridError:
        raise
    except DBAPIError as exc:
        if committing and _lost(exc):
            raise Unavailable(*UNKNOWN_OUTCOME) from exc
        mapped = classify(exc)
        if mapped is not None:
            raise mapped from None
        if not _lost(exc):
            raise
        raise ConnectionLost(*UNAVAILABLE) from exc


def _refusal(exc: BaseException) -> GridError | None:
    """The database's own refusal (a role without the privilege, a check of 0005)."""
    if sqlstate(exc) != "42501":
        return None
    detail = (str(getattr(exc, "orig", exc)).strip().splitlines() or [""])[0]
    detail = detail.removeprefix("refused by the database: ")
    return Forbidden(f"数据库拒绝了此操作：{detail}", f"The database refused this: {detail}")


def with_retry(work: Callable[[], T], attempts: int = 2) -> T:
    """Run ``work`` again when its connection was lost before commit, or it deadlocked.

    After a server restart every pooled connection is dead; the pool drops
    them on the first failure, so one retry gets a fresh connection.  This
    replaces a ping before every transaction, which cost a round trip each.
    A deadlock victim was rolled back whole, so running it again is safe and
    usually succeeds (the other transaction has gone by); a second deadlock
    is reported.
    """
    for attempt in range(attempts):
        try:
            return work()
        except (ConnectionLost, Deadlocked):
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@contextmanager
def connection(source: Engine | Connection) -> Iterator[Connection]:
    """A connection for a read: the one given, or one from the engine for the block.

    Lets a read that gathers several others (the case detail: the case, its
    photos, duplicates, nearest workers and cameras, who is viewing) run them
    all on one connection instead of checking one out for each.
    """
    if isinstance(source, Connection):
        yield source
    else:
        with source.connect() as conn:
            yield conn


def bind(conn: Connection, actor, action: str) -> None:
    """Prove who acts and declare what, for the rest of this transaction.

    The database's triggers read both settings (revision 0005): the session token
    names the user (a token is only had by logging in), the action names the rule
    the changes are checked against.  ``SET LOCAL``-scoped, so a pooled connection
    forgets them at commit.  An actor without a token (owner tools, tests on the
    owner's connection) sets nothing: the owner's writes are not checked.
    """
    token = getattr(actor, "token", None)
    if token is None:
        return
    conn.exec_driver_sql(
        "SELECT set_config('grid.session', %(t)s, true), set_config('grid.action', %(a)s, true)",
        {"t": token, "a": action},
    )
