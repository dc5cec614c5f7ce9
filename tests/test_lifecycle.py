"""Paths through the loop: deadlines, escalation, extension, joint handling, rework."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from db.case_actions import perform
from db.case_queries import case_detail
from db.deadlines import cases_near_deadline, escalate_overdue
from db.errors import BadInput, Conflict
from tests.conftest import table_counts
from tests.flows import case_in, report, step


def _case(engine, number):
    with engine.connect() as conn:
        return conn.execute(text('SELECT * FROM "case" WHERE number = :n'), {"n": number}).one()


def _shift(engine, number, hours_ago_started, hours_ago_due):
    """Move a case's current stage into the past (the clock cannot be waited for)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                'UPDATE "case" SET stage_started_at = now() - make_interval(secs => :s * 3600), '
                "stage_due_at = now() - make_interval(secs => :d * 3600) WHERE number = :n"
            ),
            {"s": hours_ago_started, "d": hours_ago_due, "n": number},
        )


def test_stage_deadlines_follow_category_and_severity(engine, actors):
    normal = case_in(engine, actors, "filed")
    urgent = case_in(engine, actors, "filed", severity="urgent")
    n, u = _case(engine, normal.number), _case(engine, urgent.number)
    # S0102 暴露垃圾: dispatch within 2 h normally, 0.5 h when urgent.
    assert n.stage_due_at - n.stage_started_at == timedelta(hours=2)
    assert u.stage_due_at - u.stage_started_at == timedelta(hours=0.5)
    assert n.close_due_at - n.filed_at == timedelta(hours=120)
    dispatched = step(engine, actors, normal, "dispatch")
    d = _case(engine, dispatched.number)
    assert d.stage_due_at - d.stage_started_at == timedelta(hours=12)  # handle limit


def test_near_deadline_and_overdue_query(engine, actors):
    fresh = case_in(engine, actors, "filed")
    near = case_in(engine, actors, "filed")
    late = case_in(engine, actors, "filed")
    _shift(engine, near.number, 1.7, -0.3)  # 85 % of 2 h used
    _shift(engine, late.number, 3, 1)  # overdue by an hour
    found = {s.number: s for s in cases_near_deadline(engine)}
    assert fresh.number not in found
    assert not found[near.number].overdue and 0.8 <= found[near.number].fraction < 1
    assert found[late.number].overdue


def test_overdue_cases_escalate_automatically(engine, actors):
    late = case_in(engine, actors, "dispatched")
    very_late = case_in(engine, actors, "dispatched")
    on_time = case_in(engine, actors, "dispatched")
    _shift(engine, late.number, 13, 1)  # 12 h limit, 1 h over: 督办
    _shift(engine, very_late.number, 26, 14)  # over by more than the limit: 挂牌督办
    done = escalate_overdue(engine)
    assert sorted(done) == sorted([late.number, very_late.number])
    assert _case(engine, late.number).escalation == 1
    assert _case(engine, very_late.number).escalation == 2
    assert _case(engine, on_time.number).escalation == 0
    entry = case_detail(engine, late.number)["log"][-1]
    assert entry["action"] == "auto_escalate" and entry["actor_name"] == "系统"
    assert _case(engine, late.number).version == late.version + 1
    # Running again changes nothing.
    before = table_counts(engine)
    assert escalate_overdue(engine) == []
    assert table_counts(engine) == before
    # An operator still holding the version from before the escalation conflicts,
    # and is told the system acted first; nothing changes.
    with pytest.raises(Conflict) as err:
        perform(engine, actors["dept_huanwei"], "acknowledge", late.number, late.version)
    assert "已被 系统 于" in err.value.zh and "自动督办" in err.value.zh
    assert "escalated automatically by 系统" in err.value.en
    assert table_counts(engine) == before
    assert _case(engine, late.number).version == late.version + 1


def test_manual_escalation_levels(engine, actors):
    case = case_in(engine, actors, "filed")
    case = step(engine, actors, case, "escalate", level=1)
    assert _case(engine, case.number).escalation == 1
    with pytest.raises(BadInput, match="已是督办"):
        step(engine, actors, case, "escalate", level=1)
    case = step(engine, actors, case, "escalate", level=2)
    assert _case(engine, case.number).escalation == 2
    assert case.status == "filed"  # an overlay, not a state


def test_extension_request_and_approval_moves_deadlines(engine, actors):
    case = case_in(engine, actors, "in_progress")
    before = _case(engine, case.number)
    case = step(engine, actors, case, "request_extension", hours=24)
    with pytest.raises(BadInput, match="待审批"):
        step(engine, actors, case, "request_extension", hours=5)
    case = step(engine, actors, case, "approve_extension")
    after = _case(engine, case.number)
    assert after.stage_due_at - before.stage_due_at == timedelta(hours=24)
    assert after.close_due_at - before.close_due_at == timedelta(hours=24)
    assert after.extended_h == 24 and after.extension_pending_h is None
    # A refused request leaves the deadlines alone.
    case = step(engine, actors, case, "request_extension", hours=8)
    case = step(engine, actors, case, "approve_extension", approved=False)
    assert _case(engine, case.number).stage_due_at == after.stage_due_at
    with pytest.raises(BadInput, match="没有待审批"):
        step(engine, actors, case, "approve_extension")


def test_joint_handling_waits_for_every_department(engine, actors):
    case = case_in(engine, actors, "filed")
    case = perform(
        engine,
        actors["dispatcher1"],
        "dispatch",
        case.number,
        case.version,
        department="huanwei",
        co_departments=["shizheng"],
    )
    case = perform(engine, actors["dept_huanwei"], "acknowledge", case.number, case.version)
    case = perform(engine, actors["dept_shizheng"], "acknowledge", case.number, case.version)
    case = perform(
        engine, actors["dept_huanwei"], "feedback", case.number, case.version, evidence="垃圾已清运"
    )
    assert case.status == "in_progress"  # still waiting for 市政
    case = perform(
        engine,
        actors["dept_shizheng"],
        "feedback",
        case.number,
        case.version,
        evidence="路面已修复",
    )
    assert case.status == "awaiting_verification"
    detail = case_detail(engine, case.number)
    assert [(a["code"], a["is_lead"]) for a in detail["assignments"]] == [
        ("huanwei", True),
        ("shizheng", False),
    ]
    assert all(a["fed_back_at"] for a in detail["assignments"])


def test_rework_and_return_paths(engine, actors):
    case = case_in(engine, actors, "awaiting_verification")
    case = step(engine, actors, case, "verify_fail")
    assert case.status == "dispatched"
    row = _case(engine, case.number)
    assert row.rework_count == 1 and row.feedback_at is None
    case = step(engine, actors, case, "acknowledge")
    case = step(engine, actors, case, "return")
    assert case.status == "filed"
    row = _case(engine, case.number)
    assert row.return_count == 1 and row.department_id is None
    case = step(engine, actors, case, "dispatch")  # re-dispatch after the return
    assert case.status == "dispatched"
    reasons = [e["reason"] for e in case_detail(engine, case.number)["log"]]
    assert "现场仍有垃圾" in reasons and "不属于本单位职责" in reasons


def test_onsite_handling_goes_straight_to_verification(engine, actors):
    case = report(engine, actors, onsite=True)
    assert case.status == "awaiting_verification"
    row = _case(engine, case.number)
    assert row.onsite and row.filed_at is not None
    case = step(engine, actors, case, "verify_pass")
    assert case.status == "closed"


def test_merge_points_to_the_surviving_case(engine, actors):
    original = report(engine, actors)
    duplicate = report(engine, actors)
    merged = perform(
        engine,
        actors["intake1"],
        "merge",
        duplicate.number,
        duplicate.version,
        into=original.number,
    )
    assert merged.status == "merged"
    assert _case(engine, duplicate.number).merged_into_id == _case(engine, original.number).id
    with pytest.raises(BadInput, match="自己"):
        other = report(engine, actors)
        perform(engine, actors["intake1"], "merge", other.number, other.version, into=other.number)


def test_case_numbers_are_unique_and_readable(engine, actors):
    numbers = [report(engine, actors).number for _ in range(5)]
    assert len(set(numbers)) == 5
    for number in numbers:
        day, seq = number.split("-")
        assert len(day) == 8 and day.isdigit() and len(seq) == 5 and seq.isdigit()
    assert [int(n.split("-")[1]) for n in numbers] == sorted(int(n.split("-")[1]) for n in numbers)


def test_console_escalator_runs_on_its_timer(qtbot, engine, actors):
    from console.escalator import Escalator
    from widgets.app import make_app

    make_app()
    late = case_in(engine, actors, "filed")
    _shift(engine, late.number, 3, 1)
    escalator = Escalator(engine, interval_s=0.2)
    with qtbot.waitSignal(escalator.escalated, timeout=5000) as blocker:
        escalator.start()
    assert blocker.args[0] == [late.number]
    escalator.timer.stop()
    assert _case(engine, late.number).escalation == 1
