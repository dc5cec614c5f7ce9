"""Every role × action pair, and every action from every status, on the real database.

The expected answers are the specification's tables, written out by hand in
``tests.workflow_spec`` (README's role table, DOMAIN.md's lifecycle), never
``db.workflow.ACTIONS``: a check against the table under test cannot fail.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from db.case_actions import perform
from db.errors import BadInput, Forbidden
from db.workflow import ACTION_NAMES, Role, Status, available_actions, role_may
from tests.conftest import table_counts
from tests.flows import ACTOR_OF, PARAMS, STEPS, case_in, report, step
from tests.workflow_spec import LEADS_TO, ROLE_MAY, SPEC_ACTIONS, STATUS_ACTIONS

ROLE_USER = {
    "intake": "intake1",
    "dispatcher": "dispatcher1",
    "department": "dept_huanwei",
    "verifier": "verifier1",
    "leader": "leader1",
    "admin": "admin1",
    "wall": "wall1",
}

# Where each action is tried by every role (one status the lifecycle allows).
TRY_FROM = {
    "accept": "reported",
    "reject": "reported",
    "merge": "accepted",
    "file": "accepted",
    "dispatch": "filed",
    "acknowledge": "dispatched",
    "return": "in_progress",
    "feedback": "in_progress",
    "verify_pass": "awaiting_verification",
    "verify_fail": "awaiting_verification",
    "close": "in_progress",
    "archive": "closed",
    "escalate": "dispatched",
    "request_extension": "in_progress",
    "approve_extension": "in_progress",
    "reassign": "in_progress",
}


def _prepared(engine, actors, action, status):
    """A case in ``status`` on which ``action`` can be taken (and who takes it)."""
    if action == "acknowledge" and status == "in_progress":
        # Joint handling: the lead acknowledged, the co-department still has to.
        filed = case_in(engine, actors, "filed")
        case = perform(
            engine, actors["dispatcher1"], "dispatch", filed.number, filed.version,
            department="huanwei", co_departments=["shizheng"],
        )
        case = step(engine, actors, case, "acknowledge")
        assert case.status == "in_progress"
        return case, "dept_shizheng"
    case = case_in(engine, actors, status)
    if action == "approve_extension":
        case = step(engine, actors, case, "request_extension")
    return case, ACTOR_OF[action]


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


def test_the_actions_and_roles_are_the_readmes():
    assert sorted(ACTION_NAMES) == sorted(SPEC_ACTIONS)
    assert sorted(Role) == sorted(ROLE_MAY)
    assert sorted(Status) == sorted(STATUS_ACTIONS)


def test_role_may_follows_the_readme_table():
    for role, may in ROLE_MAY.items():
        for action in SPEC_ACTIONS:
            assert role_may(role, action) == (action in may), (role, action)


def test_available_actions_follow_roles_and_lifecycle():
    for role, may in ROLE_MAY.items():
        for status, applies in STATUS_ACTIONS.items():
            expected = (may & applies) - {"report"}
            assert set(available_actions(role, status)) == expected, (role, status)


@pytest.mark.parametrize("action", sorted(TRY_FROM))
def test_each_role_may_do_exactly_its_actions(engine, actors, action):
    status = TRY_FROM[action]
    assert action in STATUS_ACTIONS[status]
    expected_status = LEADS_TO[action] or status
    case, _ = _prepared(engine, actors, action, status)
    params = _params(engine, actors, action)
    allowed = [role for role in ROLE_USER if action in ROLE_MAY[role]]
    assert allowed, f"no role may {action}"
    # Forbidden roles first, all on one case: each fails and changes nothing.
    for role, user in ROLE_USER.items():
        if role in allowed:
            continue
        before = table_counts(engine)
        with pytest.raises(Forbidden) as err:
            perform(engine, actors[user], action, case.number, case.version, **params)
        assert "无权" in err.value.zh and "may not" in err.value.en
        assert table_counts(engine) == before
        assert _version(engine, case.number) == case.version
    # Each allowed role succeeds on a case of its own.
    for role in allowed:
        fresh, _ = _prepared(engine, actors, action, status)
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
        if "report" in ROLE_MAY[role]:
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


def test_every_action_taken_from_every_status_the_lifecycle_allows(engine, actors):
    for status, applies in STATUS_ACTIONS.items():
        for action in sorted(applies):
            case, user = _prepared(engine, actors, action, status)
            result = perform(
                engine, actors[user], action, case.number, case.version,
                **_params(engine, actors, action),
            )
            assert result.status == (LEADS_TO[action] or status), (action, status)
            assert result.version == case.version + 1


def test_every_action_refused_from_every_wrong_status(engine, actors):
    cases = {status: case_in(engine, actors, status) for status in STEPS}
    assert sorted(cases) == sorted(STATUS_ACTIONS)
    for action in SPEC_ACTIONS:
        if action == "report":
            continue
        user = actors[ACTOR_OF[action]]
        for status, case in cases.items():
            if action in STATUS_ACTIONS[status]:
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


def test_department_cannot_touch_another_departments_case(engine, actors):
    case = case_in(engine, actors, "dispatched")  # dispatched to huanwei
    before = table_counts(engine)
    with pytest.raises(Forbidden) as err:
        perform(engine, actors["dept_shizheng"], "acknowledge", case.number, case.version)
    assert "未派给贵单位" in err.value.zh
    assert table_counts(engine) == before
