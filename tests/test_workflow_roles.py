"""Every role × action pair, and every action from every status, on the real database."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from console.workflow import ACTIONS, OPEN_STATUSES, Status, available_actions
from db.case_actions import perform
from db.errors import BadInput, Forbidden
from tests.conftest import table_counts
from tests.flows import ACTOR_OF, PARAMS, STEPS, case_in, report, step

ROLE_USER = {
    "intake": "intake1",
    "dispatcher": "dispatcher1",
    "department": "dept_huanwei",
    "verifier": "verifier1",
    "leader": "leader1",
    "admin": "admin1",
    "wall": "wall1",
}

# Where each action is tried from, and what it leads to.
SETUP = {
    "accept": ("reported", "accepted"),
    "reject": ("reported", "rejected"),
    "merge": ("accepted", "merged"),
    "file": ("accepted", "filed"),
    "dispatch": ("filed", "dispatched"),
    "acknowledge": ("dispatched", "in_progress"),
    "return": ("in_progress", "filed"),
    "feedback": ("in_progress", "awaiting_verification"),
    "verify_pass": ("awaiting_verification", "closed"),
    "verify_fail": ("awaiting_verification", "dispatched"),
    "close": ("in_progress", "closed"),
    "archive": ("closed", "archived"),
    "escalate": ("dispatched", "dispatched"),
    "request_extension": ("in_progress", "in_progress"),
    "approve_extension": ("in_progress", "in_progress"),
    "reassign": ("in_progress", "dispatched"),
}


def _prepared(engine, actors, action):
    status, _ = SETUP[action]
    case = case_in(engine, actors, status)
    if action == "approve_extension":
        case = step(engine, actors, case, "request_extension")
    return case


def _params(engine, actors, action):
    params = dict(PARAMS.get(action, {}))
    if action == "merge":
        params["into"] = report(engine, actors).number
    return params


def _version(engine, number):
    with engine.connect() as conn:
        return conn.execute(
            text('SELECT version FROM "case" WHERE number = :n'), {"n": number}
        ).scalar_one()


@pytest.mark.parametrize("action", sorted(SETUP))
def test_each_role_may_do_exactly_its_actions(engine, actors, action):
    rule = ACTIONS[action]
    expected_status = SETUP[action][1]
    case = _prepared(engine, actors, action)
    params = _params(engine, actors, action)
    # Forbidden roles first, all on one case: each fails and changes nothing.
    for role, user in ROLE_USER.items():
        if role in rule.roles:
            continue
        before = table_counts(engine)
        with pytest.raises(Forbidden) as err:
            perform(engine, actors[user], action, case.number, case.version, **params)
        assert "无权" in err.value.zh and "may not" in err.value.en
        assert table_counts(engine) == before
        assert _version(engine, case.number) == case.version
    # Each allowed role succeeds on a case of its own.
    allowed = [role for role in ROLE_USER if role in rule.roles]
    assert allowed, f"no role may {action}"
    for role in allowed:
        fresh = _prepared(engine, actors, action)
        params = _params(engine, actors, action)
        before = table_counts(engine)
        result = perform(
            engine, actors[ROLE_USER[role]], action, fresh.number, fresh.version, **params
        )
        assert result.status == expected_status
        assert result.version == fresh.version + 1
        after = table_counts(engine)
        assert after["case_log"] == before["case_log"] + 1


def test_report_roles(engine, actors):
    for role, user in ROLE_USER.items():
        before = table_counts(engine)
        if role in ACTIONS["report"].roles:
            result = perform(
                engine,
                actors[user],
                "report",
                **{"category": "S0102", "lon": 116.41, "lat": 39.92, "description": "垃圾"},
            )
            assert result.status == "reported" and result.version == 1
        else:
            with pytest.raises(Forbidden):
                perform(
                    engine,
                    actors[user],
                    "report",
                    category="S0102",
                    lon=116.41,
                    lat=39.92,
                    description="垃圾",
                )
            assert table_counts(engine) == before


def test_every_action_refused_from_every_wrong_status(engine, actors):
    cases = {status: case_in(engine, actors, status) for status in STEPS}
    for action, rule in ACTIONS.items():
        if action == "report":
            continue
        user = actors[ACTOR_OF[action]]
        for status, case in cases.items():
            if status in rule.from_statuses:
                continue
            before = table_counts(engine)
            with pytest.raises(BadInput) as err:
                perform(
                    engine,
                    user,
                    action,
                    case.number,
                    case.version,
                    **_params(engine, actors, action),
                )
            assert case.number in err.value.zh
            # _params may report a merge target: compare everything else.
            after = table_counts(engine)
            if action == "merge":
                before = {
                    k: v
                    for k, v in before.items()
                    if k not in ("case", "case_log", "case_counter", "versions")
                }
                after = {k: after[k] for k in before}
            assert after == before, (action, status)


def test_available_actions_match_the_rules():
    assert available_actions("intake", "reported") == ["accept", "reject", "merge"]
    assert available_actions("dispatcher", "filed") == ["dispatch"]
    assert available_actions("department", "in_progress") == [
        "acknowledge",
        "return",
        "feedback",
        "request_extension",
    ]
    assert available_actions("verifier", "awaiting_verification") == ["verify_pass", "verify_fail"]
    assert "escalate" in available_actions("leader", "reported")
    for status in Status:
        assert available_actions("wall", status) == []
        assert available_actions("admin", status) == []
        if status not in OPEN_STATUSES:
            assert "escalate" not in available_actions("leader", status)


def test_department_cannot_touch_another_departments_case(engine, actors):
    case = case_in(engine, actors, "dispatched")  # dispatched to huanwei
    before = table_counts(engine)
    with pytest.raises(Forbidden) as err:
        perform(engine, actors["dept_shizheng"], "acknowledge", case.number, case.version)
    assert "未派给贵单位" in err.value.zh
    assert table_counts(engine) == before
