"""The demo seed: a believable district whose history obeys the same rules as live work.

A good district (the seeds' numbers in docs/DOMAIN.md) closes 95–99 % of its
cases and most of them on time; the seeded history must look like that, with
a handful of overdue, escalated cases in the queue rather than a wall of red,
and ``demo seed --overdue-share S`` must give the share of late handling asked
for.  Deadlines here are worked out from the case log and the configured time
limits (the ``time_limit`` table, loaded from resources/reference.json), by
DOMAIN's rule: a stage's deadline is set when the stage begins (handling from
the dispatch; acknowledging does not restart it) and moved by approved
extensions.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from db.case_actions import perform
from db.demo_seed import DEMO_USERS, demo_password, seed_demo
from db.engine import make_engine
from db.errors import BadInput
from db.users import authenticate
from db.workflow import ACTIONS, OPEN_STATUSES
from tests.cli_runner import main_py

# Written out from docs/DOMAIN.md §1-2 (not taken from db.workflow): the open statuses.
OPEN = ["reported", "accepted", "filed", "dispatched", "in_progress", "awaiting_verification"]
def busy_afternoon() -> datetime:
    """The latest 15:00 in the hall's zone that has passed.

    ``days`` counts calendar days with today's part (the seed's days end at "now"), so
    a seed run just after the hall's midnight has a day's cases fewer than one run in
    the afternoon; the tests seed as of a fixed time of day and count the same
    whenever they run (CI starts at any hour).
    """
    from db.clock import hall_timezone

    local = datetime.now(UTC).astimezone(hall_timezone())
    at = local.replace(hour=15, minute=0, second=0, microsecond=0)
    if at > local:
        at -= timedelta(days=1)
    return at.astimezone(UTC)


# The seeds' "now", fixed for the module: counts "overdue at seed time" must not drift
# while the tests run (a deadline may pass between the seeding and the query).
SEED_NOW = busy_afternoon()


@pytest.fixture(scope="module")
def seeded_db(pg_server, template_db):
    """One seeded database for the module: seeding is the slow part."""
    name = "t_demo_seed"
    url = pg_server.create(name, template_db)
    eng = make_engine(url)
    summary = seed_demo(eng, days=4, cases_per_day=150, now=SEED_NOW)
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
    # The next step of the newest case waiting for the hall, by the demo login whose
    # role takes it (README's role table); a good district leaves few waiting.
    next_step = {"reported": ("intake", "accept"), "accepted": ("intake", "file"),
                 "filed": ("dispatcher", "dispatch")}
    number, version, status = q(
        engine,
        'SELECT number, version, status FROM "case" WHERE status = ANY(:s) '
        "ORDER BY id DESC LIMIT 1",
        s=list(next_step),
    )[0]
    role, action = next_step[status]
    actor = authenticate(engine, role, demo_password(role))
    result = perform(engine, actor, action, number, version)
    assert result.version == version + 1 and result.status == ACTIONS[action].to_status
    day = number.split("-")[0]
    assert q(engine, "SELECT n FROM case_counter WHERE day = :d", d=day)[0][0] >= int(
        number.split("-")[1]
    )


def test_seed_refuses_a_database_in_use(engine, seeded):
    with pytest.raises(BadInput, match="空库"):
        seed_demo(engine, days=1, cases_per_day=10)


# --- a good district's history, and the share of late handling ------------------------


def case_logs(engine) -> dict[int, dict]:
    """Every case with its time limits and its log entries in order."""
    rows = q(
        engine,
        'SELECT c.id, c.status, c.escalation, tl.handle_h, tl.close_h, l.action, l.at, '
        'l.payload FROM "case" c JOIN time_limit tl ON tl.category_id = c.category_id '
        "AND tl.severity = c.severity JOIN case_log l ON l.case_id = c.id ORDER BY c.id, l.seq",
    )
    cases: dict[int, dict] = {}
    for r in rows:
        case = cases.setdefault(
            r.id, {"id": r.id, "status": r.status, "escalation": r.escalation,
                   "handle_h": r.handle_h, "close_h": r.close_h, "log": []})
        case["log"].append((r.action, r.at, r.payload or {}))
    return cases


def approved_hours(log, start: datetime, end: datetime | None) -> float:
    return sum(float(p["hours"]) for a, at, p in log
               if a == "approve_extension" and p.get("approved") and start <= at
               and (end is None or at <= end))


def first_handling_rounds(engine) -> list[dict]:
    """Each dispatched case's first handling round, from its log and its time limit.

    The round starts at the last dispatch before the first feedback (a case
    returned as wrongly routed starts again when dispatched again) and ends at
    that feedback; its deadline is the start plus the category's handling
    limit plus the hours of extensions approved in the round.  A case returned
    and not yet dispatched again is not being handled and is left out.
    """
    rounds = []
    for case in case_logs(engine).values():
        log = case["log"]
        if not any(a == "dispatch" for a, _, _ in log):
            continue
        feedback = next((at for a, at, _ in log if a == "feedback"), None)
        within = [(a, at, p) for a, at, p in log if feedback is None or at <= feedback]
        start = max(at for a, at, _ in within if a == "dispatch")
        if any(a == "return" and at >= start for a, at, _ in within):
            continue
        deadline = start + timedelta(hours=case["handle_h"] + approved_hours(log, start, feedback))
        rounds.append({**case, "start": start, "deadline": deadline, "fed_back": feedback,
                       "escalated_at": [at for a, at, _ in log if a == "auto_escalate"]})
    return rounds


def overran(r: dict, now: datetime) -> bool:
    return r["fed_back"] > r["deadline"] if r["fed_back"] else now > r["deadline"]


def overdue_open(engine, now: datetime) -> set[int]:
    """The queue's red rows at ``now``: open cases past their stage deadline."""
    return {i for (i,) in q(engine, 'SELECT id FROM "case" WHERE status = ANY(:s) '
                            "AND stage_due_at < :now", s=OPEN, now=now)}


def test_history_is_a_good_districts(engine, seeded):
    """DOMAIN's metrics over the seeded period: closure 95–99 % or better, most on time,
    and a handful of overdue cases in the queue, never a wall of red."""
    due = closed = on_time = 0
    for case in case_logs(engine).values():
        log = case["log"]
        filed = next((at for a, at, p in log if a == "file"
                      or (a == "report" and p.get("onsite"))), None)
        if filed is None:
            continue  # rejected or merged before filing: never due
        close_at = next((at for a, at, _ in log if a in ("verify_pass", "close")), None)
        deadline = filed + timedelta(hours=case["close_h"] + approved_hours(log, filed, None))
        if close_at is None and deadline >= SEED_NOW:
            continue  # not due yet
        due += 1
        if close_at is not None:
            closed += 1
            on_time += close_at <= deadline
    assert due > 300
    assert closed / due >= 0.95, (closed, due)  # 结案率 of a good district
    assert on_time / due >= 0.90, (on_time, due)  # 按期结案率: most on time
    open_ids = {i for (i,) in q(engine, 'SELECT id FROM "case" WHERE status = ANY(:s)',
                                s=OPEN)}
    red = overdue_open(engine, SEED_NOW)
    assert len(red) <= 0.05 * len(open_ids), (len(red), len(open_ids))
    assert seeded.overdue_cases == len(red)


def test_no_overdue_share_means_every_step_on_time(pg_server, template_db):
    name = "t_demo_ontime"
    url = pg_server.create(name, template_db)
    eng = make_engine(url)
    try:
        now = busy_afternoon()
        summary = seed_demo(eng, days=3, cases_per_day=200, now=now, overdue_share=0.0)
        rounds = first_handling_rounds(eng)
        assert len([r for r in rounds if r["deadline"] < now]) > 100
        assert [r["id"] for r in rounds if overran(r, now)] == []
        assert overdue_open(eng, now) == set() and summary.overdue_cases == 0
        assert q(eng, "SELECT count(*) FROM case_log WHERE action = 'auto_escalate'") == [(0,)]
        assert q(eng, 'SELECT count(*) FROM "case" WHERE escalation > 0') == [(0,)]
    finally:
        eng.dispose()
        pg_server.drop(name)


def test_demo_seed_overdue_share_is_the_share_asked_for(pg_server, template_db):
    """``demo seed --overdue-share S``: S of the handling rounds whose deadline has
    passed overran it; each was escalated when it passed; the queue's overdue cases
    are exactly the overrunning rounds still running, nothing else."""
    share = 0.2
    name = "t_demo_share"
    url = pg_server.create(name, template_db)
    eng = make_engine(url)
    try:
        before = datetime.now(UTC)  # the seed's "now" is later: every deadline before passed
        # A test database is a shared server to the CLI: the owner (the URL's superuser)
        # seeds its empty database with --force.
        # The command seeds up to the real now: --days 4 holds three whole days whatever
        # the hour (``days`` counts today's part).
        run = main_py("demo", "seed", "--force", "--days", "4", "--per-day", "300",
                      "--overdue-share", str(share), "--json", env={"GRID_DATABASE_URL": url})
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["overdue_cases"] > 0
        decided = [r for r in first_handling_rounds(eng) if r["deadline"] < before]
        late = [r for r in decided if overran(r, before)]
        n = len(decided)
        assert n >= 250
        # Each round is late or not independently of when it falls: a binomial count.
        tolerance = 4 * math.sqrt(share * (1 - share) / n)
        assert abs(len(late) / n - share) <= tolerance, (len(late), n, tolerance)
        for r in late:  # DOMAIN: overdue cases are escalated automatically
            assert any(at >= r["deadline"] for at in r["escalated_at"]), r["id"]
        running = {r["id"] for r in late if r["fed_back"] is None}
        assert running and overdue_open(eng, before) == running
    finally:
        eng.dispose()
        pg_server.drop(name)


def test_demo_seed_refuses_a_share_outside_0_to_1(db_url):
    for bad in ("1.5", "-0.1", "nan"):
        run = main_py("demo", "seed", "--force", "--overdue-share", bad, "--days", "1",
                      "--per-day", "10", env={"GRID_DATABASE_URL": db_url})
        assert run.returncode == 2, (bad, run.stderr)
        assert "超时比例" in run.stderr and "Traceback" not in run.stderr
    eng = make_engine(db_url)
    try:
        assert q(eng, "SELECT count(*) FROM worker") == [(0,)]  # nothing changed
    finally:
        eng.dispose()
