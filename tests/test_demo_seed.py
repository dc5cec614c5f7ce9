"""The demo seed: a believable district whose history obeys the same rules as live work."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from console.workflow import ACTIONS, OPEN_STATUSES
from db.case_actions import perform
from db.demo_seed import DEMO_USERS, demo_password, seed_demo
from db.engine import make_engine
from db.errors import BadInput
from db.users import authenticate


@pytest.fixture(scope="module")
def seeded_db(pg_server, template_db):
    """One seeded database for the module: seeding is the slow part."""
    name = "t_demo_seed"
    url = pg_server.create(name, template_db)
    eng = make_engine(url)
    summary = seed_demo(eng, days=4, cases_per_day=150)
    yield eng, summary
    eng.dispose()
    pg_server.drop(name)


@pytest.fixture
def engine(seeded_db):
    return seeded_db[0]


@pytest.fixture
def seeded(seeded_db):
    return seeded_db[1]


def q(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def test_seed_builds_people_things_and_logins(engine, seeded):
    assert seeded.grids > 500 and seeded.cameras == 60
    assert seeded.devices == seeded.grids  # one terminal per full-time worker
    roster = dict(q(engine, "SELECT roster_role, count(*) FROM worker GROUP BY 1"))
    assert roster == {
        "instructor": seeded.grids,
        "grid_leader": seeded.grids,
        "full_time": seeded.grids,
        "part_time": 10 * seeded.grids,
    }
    assert q(engine, "SELECT count(*) FROM grid WHERE worker_id IS NULL OR leader_id IS NULL") == [
        (0,)
    ]
    for name, role, *_ in DEMO_USERS:
        actor = authenticate(engine, name, demo_password(role))
        assert actor.role == role
    departments = q(
        engine,
        "SELECT count(*) FROM department d WHERE NOT EXISTS (SELECT 1 FROM "
        "app_user u WHERE u.department_id = d.id)",
    )
    assert departments == [(0,)]  # every department can log in to handle its cases


def test_history_follows_the_lifecycle_rules(engine, seeded):
    assert seeded.cases > 400 and seeded.log_entries > 3 * seeded.cases
    # One log entry per version; sequence order is time order.
    assert q(
        engine,
        'SELECT count(*) FROM "case" c WHERE c.version <> (SELECT count(*) FROM '
        "case_log l WHERE l.case_id = c.id)",
    ) == [(0,)]
    assert q(
        engine,
        "SELECT count(*) FROM (SELECT at, lag(at) OVER (ORDER BY seq) AS prev "
        "FROM case_log) s WHERE at < prev",
    ) == [(0,)]
    # Every step is one the workflow allows, from the status the case was in.
    steps = q(
        engine,
        "SELECT action, from_status, to_status, actor_role FROM case_log GROUP BY 1, 2, 3, 4",
    )
    for action, from_status, to_status, role in steps:
        if action == "auto_escalate":
            assert role == "system" and from_status == to_status
            continue
        rule = ACTIONS[action]
        assert role in rule.roles, (action, role)
        if action == "report":
            assert from_status is None
        else:
            assert from_status in rule.from_statuses, (action, from_status)
        if rule.to_status is not None and action not in ("report",):
            assert to_status == rule.to_status, (action, to_status)
    # The last entry of each case names its current status.
    assert q(
        engine,
        'SELECT count(*) FROM "case" c JOIN LATERAL (SELECT to_status FROM '
        "case_log l WHERE l.case_id = c.id ORDER BY seq DESC LIMIT 1) last "
        "ON true WHERE last.to_status <> c.status",
    ) == [(0,)]


def test_history_has_every_kind_of_case(engine, seeded):
    row = q(
        engine,
        "SELECT count(*) FILTER (WHERE escalation > 0), "
        "count(*) FILTER (WHERE rework_count > 0), "
        "count(*) FILTER (WHERE return_count > 0), count(*) FILTER (WHERE onsite), "
        "count(*) FILTER (WHERE status = 'rejected'), "
        "count(*) FILTER (WHERE status = 'archived'), "
        "count(*) FILTER (WHERE status IN ('reported','accepted','filed',"
        "'dispatched','in_progress','awaiting_verification')) "
        'FROM "case"',
    )[0]
    assert all(n > 0 for n in row), row
    now = datetime.now(UTC)
    open_rows = q(
        engine,
        'SELECT status, stage_started_at, stage_due_at FROM "case" WHERE status = ANY(:s)',
        s=list(OPEN_STATUSES),
    )
    assert all(due is not None and started <= now for _, started, due in open_rows)


def test_seeded_cases_take_live_actions(engine, seeded):
    number, version = q(
        engine,
        "SELECT number, version FROM \"case\" WHERE status = 'filed' "
        "OR status = 'reported' ORDER BY id DESC LIMIT 1",
    )[0]
    status = q(engine, 'SELECT status FROM "case" WHERE number = :n', n=number)[0][0]
    if status == "reported":
        actor = authenticate(engine, "intake", demo_password("intake"))
        result = perform(engine, actor, "accept", number, version)
        assert result.version == version + 1
    else:
        actor = authenticate(engine, "dispatcher", demo_password("dispatcher"))
        result = perform(engine, actor, "dispatch", number, version)
        assert result.status == "dispatched"
    day = number.split("-")[0]
    assert q(engine, "SELECT n FROM case_counter WHERE day = :d", d=day)[0][0] >= int(
        number.split("-")[1]
    )


def test_seed_refuses_a_database_in_use(engine, seeded):
    with pytest.raises(BadInput, match="空库"):
        seed_demo(engine, days=1, cases_per_day=10)
