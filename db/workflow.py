"""The case lifecycle: statuses, actions, who may do what, and from where.

This module is pure data and pure functions, so the same rules drive the
database services (which enforce them inside a transaction), the window
(which enables only the buttons these rules allow) and the CLI.  Keeping a
single table here is what makes "each role sees exactly its actions" true
everywhere at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """Console roles (docs/DOMAIN.md §1); the names are the same in CLI, import and log."""

    INTAKE = "intake"
    DISPATCHER = "dispatcher"
    DEPARTMENT = "department"
    VERIFIER = "verifier"
    LEADER = "leader"
    ADMIN = "admin"
    WALL = "wall"


ROLE_LABELS: dict[str, tuple[str, str]] = {
    "intake": ("受理员", "intake operator"),
    "dispatcher": ("派遣员", "dispatcher"),
    "department": ("处置单位", "handling department"),
    "verifier": ("核查员", "verifier"),
    "leader": ("值班长", "duty leader"),
    "admin": ("管理员", "administrator"),
    "wall": ("大屏", "wall display"),
}


class Status(StrEnum):
    """Case statuses of the closed loop (docs/DOMAIN.md §2)."""

    REPORTED = "reported"
    ACCEPTED = "accepted"
    FILED = "filed"
    DISPATCHED = "dispatched"
    IN_PROGRESS = "in_progress"
    AWAITING_VERIFICATION = "awaiting_verification"
    CLOSED = "closed"
    ARCHIVED = "archived"
    REJECTED = "rejected"
    MERGED = "merged"


STATUS_LABELS: dict[str, tuple[str, str]] = {
    "reported": ("上报", "reported"),
    "accepted": ("受理", "accepted"),
    "filed": ("立案", "filed"),
    "dispatched": ("派遣", "dispatched"),
    "in_progress": ("处置中", "in progress"),
    "awaiting_verification": ("待核查", "awaiting verification"),
    "closed": ("结案", "closed"),
    "archived": ("归档", "archived"),
    "rejected": ("不予立案", "rejected"),
    "merged": ("已合并", "merged"),
}

# The open statuses in the order of the loop (queues and pickers list them so).
OPEN_STATUS_ORDER: tuple[str, ...] = (
    Status.REPORTED,
    Status.ACCEPTED,
    Status.FILED,
    Status.DISPATCHED,
    Status.IN_PROGRESS,
    Status.AWAITING_VERIFICATION,
)
OPEN_STATUSES: frozenset[str] = frozenset(OPEN_STATUS_ORDER)
TERMINAL_STATUSES: frozenset[str] = frozenset(
    {Status.CLOSED, Status.ARCHIVED, Status.REJECTED, Status.MERGED}
)

# Each open status belongs to one stage whose time limit runs while the case
# sits in it; the stage names are the columns of the time-limit table.
STAGE_OF_STATUS: dict[str, str] = {
    Status.REPORTED: "accept",
    Status.ACCEPTED: "file",
    Status.FILED: "dispatch",
    Status.DISPATCHED: "handle",
    Status.IN_PROGRESS: "handle",
    Status.AWAITING_VERIFICATION: "verify",
}
STAGES: tuple[str, ...] = ("accept", "file", "dispatch", "handle", "verify")

SEVERITIES: tuple[str, ...] = ("normal", "urgent", "emergency")
SEVERITY_LABELS: dict[str, tuple[str, str]] = {
    "normal": ("一般", "normal"),
    "urgent": ("紧急", "urgent"),
    "emergency": ("特急", "emergency"),
}

SOURCES: tuple[str, ...] = ("patrol", "hotline", "public", "camera", "leader", "other")
SOURCE_LABELS: dict[str, tuple[str, str]] = {
    "patrol": ("网格员巡查", "patrol terminal"),
    "hotline": ("12345热线", "hotline 12345"),
    "public": ("群众举报", "public report"),
    "camera": ("视频告警", "camera alarm"),
    "leader": ("领导交办", "leader's assignment"),
    "other": ("其他", "other"),
}
# The one source a case names its reporting grid worker with (case.reporter_worker_id,
# what the evaluation ranks workers by): the worker's own terminal, or the hall
# reporting on the worker's behalf.
REPORTING_WORKER_SOURCE = "patrol"

ESCALATION_LABELS: dict[int, tuple[str, str]] = {
    0: ("", ""),
    1: ("督办", "supervised"),
    2: ("挂牌督办", "red-card supervision"),
}


@dataclass(frozen=True)
class ActionRule:
    """Which roles may take an action, from which statuses, and where it leads.

    ``to_status`` is ``None`` for overlays (escalation, extension, reassign to
    the same stage) that do not move the case along the loop, and for actions
    whose target depends on the case (joint acknowledgement and feedback).
    """

    name: str
    roles: frozenset[str]
    from_statuses: frozenset[str]
    to_status: str | None
    needs_reason: bool = False
    label_zh: str = ""
    label_en: str = ""


def _rule(
    name: str,
    roles: set[str],
    froms: set[str] | frozenset[str],
    to: str | None,
    zh: str,
    en: str,
    reason: bool = False,
) -> ActionRule:
    return ActionRule(name, frozenset(roles), frozenset(froms), to, reason, zh, en)


_S = Status
ACTIONS: dict[str, ActionRule] = {
    r.name: r
    for r in (
        _rule("report", {"intake", "leader"}, set(), _S.REPORTED, "上报", "report"),
        _rule("accept", {"intake"}, {_S.REPORTED}, _S.ACCEPTED, "受理", "accept"),
        _rule(
            "reject",
            {"intake"},
            {_S.REPORTED, _S.ACCEPTED},
            _S.REJECTED,
            "不予立案",
            "reject",
            reason=True,
        ),
        _rule(
            "merge",
            {"intake"},
            {_S.REPORTED, _S.ACCEPTED},
            _S.MERGED,
            "合并重复",
            "merge duplicate",
        ),
        _rule("file", {"intake"}, {_S.ACCEPTED}, _S.FILED, "立案", "file"),
        _rule("dispatch", {"dispatcher"}, {_S.FILED}, _S.DISPATCHED, "派遣", "dispatch"),
        _rule(
            "acknowledge",
            {"department"},
            {_S.DISPATCHED, _S.IN_PROGRESS},
            _S.IN_PROGRESS,
            "签收",
            "acknowledge",
        ),
        _rule(
            "return",
            {"department"},
            {_S.DISPATCHED, _S.IN_PROGRESS},
            _S.FILED,
            "退单",
            "return",
            reason=True,
        ),
        _rule(
            "feedback",
            {"department"},
            {_S.IN_PROGRESS},
            None,
            "反馈",
            "feed back",
        ),
        _rule(
            "verify_pass",
            {"verifier"},
            {_S.AWAITING_VERIFICATION},
            _S.CLOSED,
            "核查通过",
            "verification passed",
        ),
        _rule(
            "verify_fail",
            {"verifier"},
            {_S.AWAITING_VERIFICATION},
            _S.DISPATCHED,
            "核查不通过（返工）",
            "verification failed (rework)",
            reason=True,
        ),
        _rule(
            "close",
            {"leader"},
            {_S.FILED, _S.DISPATCHED, _S.IN_PROGRESS, _S.AWAITING_VERIFICATION},
            _S.CLOSED,
            "强制结案",
            "close by decision",
            reason=True,
        ),
        _rule("archive", {"intake", "leader"}, {_S.CLOSED}, _S.ARCHIVED, "归档", "archive"),
        _rule("escalate", {"leader"}, OPEN_STATUSES, None, "督办", "escalate"),
        _rule(
            "request_extension",
            {"department"},
            {_S.DISPATCHED, _S.IN_PROGRESS},
            None,
            "申请延期",
            "request extension",
            reason=True,
        ),
        _rule(
            "approve_extension",
            {"leader"},
            {_S.DISPATCHED, _S.IN_PROGRESS},
            None,
            "审批延期",
            "decide extension",
        ),
        _rule(
            "reassign",
            {"dispatcher"},
            {_S.DISPATCHED, _S.IN_PROGRESS},
            _S.DISPATCHED,
            "改派",
            "reassign",
            reason=True,
        ),
    )
}

ACTION_NAMES: tuple[str, ...] = tuple(ACTIONS)


def role_may(role: str, action: str) -> bool:
    """True when ``role`` may take ``action`` on some case at all."""
    rule = ACTIONS.get(action)
    return rule is not None and role in rule.roles


def action_applies(action: str, status: str) -> bool:
    """True when ``action`` is a legal step from ``status`` (ignoring roles)."""
    rule = ACTIONS[action]
    return status in rule.from_statuses


def available_actions(role: str, status: str) -> list[str]:
    """The actions a user of ``role`` may take on a case in ``status``.

    Case-specific conditions (is it this department's case, is an extension
    pending) are checked by the service; this is what the window enables.
    """
    return [
        name
        for name, rule in ACTIONS.items()
        if name != "report" and role in rule.roles and status in rule.from_statuses
    ]


def stage_of(status: str) -> str | None:
    """The time-limit stage that runs while a case is in ``status``."""
    return STAGE_OF_STATUS.get(status)


def label(table: dict, key, lang: str = "zh") -> str:
    """Look a value up in one of the bilingual label tables above."""
    pair = table.get(key)
    if pair is None:
        return str(key)
    return pair[0] if lang == "zh" else pair[1]


def action_label(action: str, lang: str = "zh") -> str:
    """The operator-facing name of an action."""
    rule = ACTIONS.get(action)
    if rule is None:
        return {"auto_escalate": ("自动督办", "automatic escalation"),
                "attach_snapshot": ("附加视频截图", "attach a camera snapshot")}.get(
            action, (action, action)
        )[0 if lang == "zh" else 1]
    return rule.label_zh if lang == "zh" else rule.label_en


# How a finished action reads in a conflict message: "already dispatched by 王伟".
PAST_EN: dict[str, str] = {
    "report": "reported",
    "accept": "accepted",
    "reject": "rejected",
    "merge": "merged",
    "file": "filed",
    "dispatch": "dispatched",
    "acknowledge": "acknowledged",
    "return": "returned",
    "feedback": "fed back",
    "verify_pass": "verified",
    "verify_fail": "sent back for rework",
    "close": "closed",
    "archive": "archived",
    "escalate": "escalated",
    "auto_escalate": "escalated automatically",
    "attach_snapshot": "given a camera snapshot",
    "request_extension": "asked for an extension on",
    "approve_extension": "decided the extension of",
    "reassign": "reassigned",
}
