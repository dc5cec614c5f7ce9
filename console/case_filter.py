"""What an operator narrows the case queue to, as one immutable value.

The filter is plain data with a pure ``accepts`` so the same rule drives the
queue's proxy model, round-trips through a saved filter (``to_criteria`` /
``from_criteria``, stored as JSON per user) and can be checked in tests
against an independent SQL query.  Saved criteria come from other versions of
the console and from other people's hands, so ``from_criteria`` keeps what it
understands and drops the rest rather than failing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from db.workflow import OPEN_STATUSES, SOURCES


@dataclass(frozen=True)
class CaseFilter:
    """Criteria of the queue; an empty value or ``None`` means "any".

    ``grid_prefix`` matches the start of the grid code (operators type the
    community part of a CJ/T 213 code to see all its grids); ``text`` matches
    number, description, address and category name, ignoring case.
    """

    statuses: frozenset[str] = frozenset()
    category_class: str | None = None
    street_code: str | None = None
    grid_prefix: str = ""
    department_code: str | None = None
    overdue_only: bool = False
    escalated_only: bool = False
    source: str | None = None
    text: str = ""
    # The cases behind a number of the evaluation panel (a drill-down): only these, of any
    # status.  Transient: never saved with a filter.
    case_ids: frozenset[int] = frozenset()
    _needle: str = field(default="", init=False, repr=False, compare=False)
    _grid: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "statuses", frozenset(self.statuses or ()))
        object.__setattr__(self, "case_ids", frozenset(int(i) for i in self.case_ids or ()))
        for name in ("category_class", "street_code", "department_code", "source"):
            if not getattr(self, name):
                object.__setattr__(self, name, None)
        object.__setattr__(self, "grid_prefix", (self.grid_prefix or "").strip())
        object.__setattr__(self, "text", (self.text or "").strip())
        object.__setattr__(self, "_needle", self.text.casefold())
        object.__setattr__(self, "_grid", self.grid_prefix.casefold())

    @property
    def is_empty(self) -> bool:
        return self == CaseFilter()

    def accepts(self, row, now_ts: float, check_overdue: bool = True) -> bool:
        """True when ``row`` (a ``CaseRow``) passes every criterion at time ``now_ts``.

        ``check_overdue=False`` answers "would it pass once overdue": the proxy
        keeps such rows waiting for their deadline instead of re-testing all
        rows every second.
        """
        if self.case_ids and row.id not in self.case_ids:
            return False
        if self.statuses and row.status not in self.statuses:
            return False
        if self.category_class is not None and row.category_class != self.category_class:
            return False
        if self.street_code is not None and row.street_code != self.street_code:
            return False
        if self._grid and not (row.grid_code or "").casefold().startswith(self._grid):
            return False
        if self.department_code is not None and row.department_code != self.department_code:
            return False
        if self.source is not None and row.source != self.source:
            return False
        if self.escalated_only and not row.escalation:
            return False
        if (
            check_overdue
            and self.overdue_only
            and not (row.due_ts is not None and row.due_ts < now_ts)
        ):
            return False
        if self._needle:
            n = self._needle
            if not (
                n in row.number.casefold()
                or n in row.description.casefold()
                or n in row.address.casefold()
                or n in row.category_name.casefold()
                or n in row.category_name_en.casefold()
            ):
                return False
        return True

    def to_criteria(self) -> dict:
        """JSON-ready criteria for ``db.saved_filters`` (only what is set)."""
        out: dict = {}
        if self.statuses:
            out["statuses"] = sorted(self.statuses)
        for name in ("category_class", "street_code", "department_code", "source"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.grid_prefix:
            out["grid_prefix"] = self.grid_prefix
        if self.text:
            out["text"] = self.text
        if self.overdue_only:
            out["overdue_only"] = True
        if self.escalated_only:
            out["escalated_only"] = True
        return out

    @classmethod
    def from_criteria(cls, criteria: dict | None) -> CaseFilter:
        """A filter from saved criteria; unknown keys and wrong types are ignored."""
        if not isinstance(criteria, dict):
            return cls()

        def text(name: str, limit: int = 100) -> str | None:
            value = criteria.get(name)
            return value[:limit] if isinstance(value, str) and value else None

        statuses = criteria.get("statuses")
        if not isinstance(statuses, Iterable) or isinstance(statuses, str | bytes):
            statuses = ()
        source = text("source")
        return cls(
            statuses=frozenset(s for s in statuses if s in OPEN_STATUSES),
            category_class=text("category_class"),
            street_code=text("street_code"),
            grid_prefix=text("grid_prefix") or "",
            department_code=text("department_code"),
            overdue_only=criteria.get("overdue_only") is True,
            escalated_only=criteria.get("escalated_only") is True,
            source=source if source in SOURCES else None,
            text=text("text", 200) or "",
        )
