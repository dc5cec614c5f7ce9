"""Typed failures with a message an operator understands, in Chinese and English.

Every service failure is one of these, so the window can show the message
as it is and the CLI can map the class to an exit code; nothing else (no
driver exception, no stack trace) reaches a person.
"""

from __future__ import annotations


class GridError(Exception):
    """Base of every operator-facing failure; ``exit_code`` is the CLI's."""

    exit_code = 1

    def __init__(self, zh: str, en: str | None = None):
        super().__init__(zh if en is None else f"{zh} / {en}")
        self.zh = zh
        self.en = en or zh

    def message(self, lang: str = "zh") -> str:
        return self.zh if lang == "zh" else self.en


class BadInput(GridError):
    """The request itself is wrong: unknown code, out of range, too long, wrong state."""

    exit_code = 2


class NotFound(BadInput):
    """The case, user, category or department named does not exist."""


class Conflict(GridError):
    """Someone else changed the case since the caller last saw it."""

    exit_code = 3


class Forbidden(GridError):
    """The caller's role (or department) may not do this, or login failed."""

    exit_code = 4


class Unavailable(GridError):
    """The database cannot be reached; nothing was changed."""

    exit_code = 5


class SchemaError(GridError):
    """The database schema is not one this console can work with."""

    exit_code = 6
