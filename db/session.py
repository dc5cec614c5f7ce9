"""Transactions that turn driver failures into operator-facing errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from db.errors import GridError, Unavailable

UNAVAILABLE = Unavailable(
    "数据库暂时不可用，操作未执行，请稍后重试。",
    "The database is unavailable; nothing was changed. Try again shortly.",
)


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction: commit on success, roll back on any error.

    A lost or refused connection becomes ``Unavailable`` (nothing was
    committed, so the operator may simply retry).
    """
    try:
        with engine.begin() as conn:
            yield conn
    except GridError:
        raise
    except OperationalError as exc:
        raise Unavailable(UNAVAILABLE.zh, UNAVAILABLE.en) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise Unavailable(UNAVAILABLE.zh, UNAVAILABLE.en) from exc
        raise
