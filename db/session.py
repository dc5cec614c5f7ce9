"""Transactions that turn driver failures into operator-facing errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from db.errors import GridError, Unavailable

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


class ConnectionLost(Unavailable):
    """The connection broke before commit: nothing was written, a retry is safe."""


def _lost(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


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
        if not _lost(exc):
            raise
        if committing:
            raise Unavailable(*UNKNOWN_OUTCOME) from exc
        raise ConnectionLost(*UNAVAILABLE) from exc


def with_retry(work: Callable[[], T], attempts: int = 2) -> T:
    """Run ``work`` again when its connection was lost before commit.

    After a server restart every pooled connection is dead; the pool drops
    them on the first failure, so one retry gets a fresh connection.  This
    replaces a ping before every transaction, which cost a round trip each.
    """
    for attempt in range(attempts):
        try:
            return work()
        except ConnectionLost:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
