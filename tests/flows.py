"""Drive cases through the real services to a wanted status (test helper)."""

from __future__ import annotations

from sqlalchemy import Engine

from db.case_actions import ActionResult, perform
from db.users import Actor

REPORT = {
    "category": "S0102",  # 暴露垃圾, default department 环卫 (huanwei)
    "lon": 116.4100,
    "lat": 39.9200,
    "description": "东四北大街路边有暴露垃圾",
    "address": "东四北大街 100 号",
    "source": "patrol",
}

STEPS: dict[str, list[str]] = {
    "reported": [],
    "accepted": ["accept"],
    "filed": ["accept", "file"],
    "dispatched": ["accept", "file", "dispatch"],
    "in_progress": ["accept", "file", "dispatch", "acknowledge"],
    "awaiting_verification": ["accept", "file", "dispatch", "acknowledge", "feedback"],
    "closed": ["accept", "file", "dispatch", "acknowledge", "feedback", "verify_pass"],
    "archived": ["accept", "file", "dispatch", "acknowledge", "feedback", "verify_pass", "archive"],
    "rejected": ["reject"],
    "merged": ["merge"],
}

ACTOR_OF = {
    "accept": "intake1",
    "file": "intake1",
    "reject": "intake1",
    "merge": "intake1",
    "archive": "intake1",
    "dispatch": "dispatcher1",
    "reassign": "dispatcher1",
    "acknowledge": "dept_huanwei",
    "feedback": "dept_huanwei",
    "return": "dept_huanwei",
    "request_extension": "dept_huanwei",
    "verify_pass": "verifier1",
    "verify_fail": "verifier1",
    "close": "leader1",
    "escalate": "leader1",
    "approve_extension": "leader1",
}

PARAMS = {
    "dispatch": {"department": "huanwei"},
    "reassign": {"department": "huanwei", "reason": "改由环卫二队处理"},
    "feedback": {"evidence": "已清理完毕"},
    "reject": {"reason": "重复上报，不予立案"},
    "return": {"reason": "不属于本单位职责"},
    "verify_fail": {"reason": "现场仍有垃圾"},
    "close": {"reason": "领导决定结案"},
    "request_extension": {"hours": 24, "reason": "需要调配车辆"},
    "escalate": {"level": 1},
}


def report(engine: Engine, actors: dict[str, Actor], **overrides) -> ActionResult:
    return perform(engine, actors["intake1"], "report", **{**REPORT, **overrides})


def step(
    engine: Engine, actors: dict[str, Actor], result: ActionResult, action: str, **params
) -> ActionResult:
    """Take ``action`` on the case with the usual actor and parameters."""
    merged = {**PARAMS.get(action, {}), **params}
    return perform(
        engine, actors[ACTOR_OF[action]], action, result.number, result.version, **merged
    )


def case_in(engine: Engine, actors: dict[str, Actor], status: str, **overrides) -> ActionResult:
    """A new case brought to ``status`` by the ordinary path."""
    result = report(engine, actors, **overrides)
    for action in STEPS[status]:
        params = {}
        if action == "merge":
            params["into"] = report(engine, actors).number
        result = step(engine, actors, result, action, **params)
    assert result.status == status
    return result
