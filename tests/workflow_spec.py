"""The workflow as the specification writes it, copied out by hand for the tests.

Tests compare the implementation (``db.workflow``, the services, the window)
against these tables, never against ``db.workflow.ACTIONS`` itself: a test
that takes its expected answer from the table it checks cannot fail.

Sources: README.md, section "Command line" (the action list and the
"| role | may |" table) and docs/DOMAIN.md §2 (the lifecycle diagram, with
escalation and extension as overlays on open cases).  Where the diagram is
a sketch, the reading taken here is written next to the row.
"""

from __future__ import annotations

# README: "Actions: report, accept, reject, merge, file, dispatch, acknowledge,
# return, feedback, verify_pass, verify_fail, close, archive, escalate,
# request_extension, approve_extension, reassign".
SPEC_ACTIONS: tuple[str, ...] = (
    "report",
    "accept",
    "reject",
    "merge",
    "file",
    "dispatch",
    "acknowledge",
    "return",
    "feedback",
    "verify_pass",
    "verify_fail",
    "close",
    "archive",
    "escalate",
    "request_extension",
    "approve_extension",
    "reassign",
)

# README "| role | may |", row by row.
ROLE_MAY: dict[str, frozenset[str]] = {
    "intake": frozenset({"report", "accept", "reject", "merge", "file", "archive"}),
    "dispatcher": frozenset({"dispatch", "reassign"}),
    "department": frozenset({"acknowledge", "return", "feedback", "request_extension"}),
    "verifier": frozenset({"verify_pass", "verify_fail"}),
    "leader": frozenset({"report", "escalate", "approve_extension", "close", "archive"}),
    "admin": frozenset(),
    "wall": frozenset(),
}

# DOMAIN.md §2, the lifecycle: which action applies in which status ("x").
# Readings of the sketch: reject (不予立案, "not filed") and merge apply until
# the case is filed; acknowledge applies in in_progress too, because in joint
# handling each co-department acknowledges a case its lead already took; a
# department returns a wrongly routed case whether or not it acknowledged it;
# a leader's close by decision applies to filed cases not yet closed;
# extension and reassignment apply while a department holds the case
# (dispatched, in progress); escalation applies to every open case.
_COLUMNS = "acc rej mer fil dis ack ret fee vpa vfa clo arc esc rqx apx rea"
_GRID = {
    #                       acc rej mer fil dis ack ret fee vpa vfa clo arc esc rqx apx rea
    "reported":              "x   x   x   .   .   .   .   .   .   .   .   .   x   .   .   .",
    "accepted":              ".   x   x   x   .   .   .   .   .   .   .   .   x   .   .   .",
    "filed":                 ".   .   .   .   x   .   .   .   .   .   x   .   x   .   .   .",
    "dispatched":            ".   .   .   .   .   x   x   .   .   .   x   .   x   x   x   x",
    "in_progress":           ".   .   .   .   .   x   x   x   .   .   x   .   x   x   x   x",
    "awaiting_verification": ".   .   .   .   .   .   .   .   x   x   x   .   x   .   .   .",
    "closed":                ".   .   .   .   .   .   .   .   .   .   .   x   .   .   .   .",
    "archived":              ".   .   .   .   .   .   .   .   .   .   .   .   .   .   .   .",
    "rejected":              ".   .   .   .   .   .   .   .   .   .   .   .   .   .   .   .",
    "merged":                ".   .   .   .   .   .   .   .   .   .   .   .   .   .   .   .",
}
_ABBREVIATION = {
    "acc": "accept",
    "rej": "reject",
    "mer": "merge",
    "fil": "file",
    "dis": "dispatch",
    "ack": "acknowledge",
    "ret": "return",
    "fee": "feedback",
    "vpa": "verify_pass",
    "vfa": "verify_fail",
    "clo": "close",
    "arc": "archive",
    "esc": "escalate",
    "rqx": "request_extension",
    "apx": "approve_extension",
    "rea": "reassign",
}


def _read_grid() -> dict[str, frozenset[str]]:
    names = [_ABBREVIATION[c] for c in _COLUMNS.split()]
    table = {}
    for status, row in _GRID.items():
        marks = row.split()
        assert len(marks) == len(names), status  # a typo in the grid, not a finding
        table[status] = frozenset(n for n, m in zip(names, marks, strict=True) if m == "x")
    return table


# status -> the actions that apply to a case in that status (report creates a case).
STATUS_ACTIONS: dict[str, frozenset[str]] = _read_grid()

# DOMAIN.md §2: where each action leads (an overlay leaves the status alone;
# feedback from a case's only department leads to verification).
LEADS_TO: dict[str, str | None] = {
    "report": "reported",
    "accept": "accepted",
    "reject": "rejected",
    "merge": "merged",
    "file": "filed",
    "dispatch": "dispatched",
    "acknowledge": "in_progress",
    "return": "filed",
    "feedback": "awaiting_verification",
    "verify_pass": "closed",
    "verify_fail": "dispatched",
    "close": "closed",
    "archive": "archived",
    "escalate": None,
    "request_extension": None,
    "approve_extension": None,
    "reassign": "dispatched",
}


def enabled_for(role: str, status: str | None) -> frozenset[str]:
    """What a user of ``role`` may start with a case in ``status`` selected (None: none)."""
    on_case = ROLE_MAY[role] & STATUS_ACTIONS[status] if status else frozenset()
    return on_case | (ROLE_MAY[role] & {"report"})
