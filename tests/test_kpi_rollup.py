"""The daily rollup (revision 0010) gives exactly the rows of the direct query over the
facts, and stays right as new actions land (docs/DOMAIN.md §2 "Evaluation").

On the hand-made history of tests/kpi_support.py (C1–C12: deadline extensions, a rework,
a return, a reassignment, joint handling, cases across the hall's midnight, one filed
exactly at midnight, open cases) plus cases made here for the edges the rollup splits
on (a return, a first dispatch and a failed verification each just after midnight; open
cases today with their close deadline passed or still ahead today; a fact out of the usual
order), every grouping of every period below is computed twice, by ``path="rollup"`` and
``path="direct"``, and compared: the same groups, the same counts and rates ("no data",
None, where a denominator is empty), the same medians to the bit; the mean to 1e-12
(the rollup sums exact microseconds, the direct query averages float8 hours).  The hand-
worked figures themselves are tests/test_kpi_metrics.py's, which run on the rollup.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import text

from db import kpi_rollup
from db.case_actions import perform
from db.clock import hall_timezone
from db.history_import import import_history
from db.metrics import GROUPINGS, Period, _report_rows, bucket_edges, refresh, trend_rows
from db.users import authenticate
from tests import flows
from tests.conftest import PASSWORD
from tests.kpi_support import (
    DISPATCHER,
    HW,
    INTAKE,
    LEADER,
    SZ,
    VERIFIER,
    YL,
    A,
    B,
    case,
    console_engine,
    ev,
    history_lines,
    setup_hall,
)

# Cases on the edges the rollup splits on (all in March 2025, hall time).
EDGE_CASES = [
    # dispatched at 23:30, returned by yuanlin at 00:30 the next day: misrouted for a
    # period that ends at midnight only if the return came before it
    case("R1", B, [
        ev("report", "03-05 22:00", INTAKE, "intake"),
        ev("accept", "03-05 22:10", INTAKE, "intake"),
        ev("file", "03-05 22:20", INTAKE, "intake"),
        ev("dispatch", "03-05 23:30", DISPATCHER, "dispatcher", department="yuanlin"),
        ev("acknowledge", "03-05 23:40", YL, "department"),
        ev("return", "03-06 00:30", YL, "department", reason="不属于本单位职责"),
        ev("dispatch", "03-06 00:50", DISPATCHER, "dispatcher", department="huanwei"),
        ev("acknowledge", "03-06 01:00", HW, "department"),
        ev("feedback", "03-06 09:00", HW, "department"),
        ev("verify_pass", "03-06 10:00", VERIFIER, "verifier"),
    ], due={"file": "03-05 23:00", "dispatch": "03-06 00:00", "handle": "03-06 20:00",
            "close": "03-07 22:20"}),
    # dispatched at 23:30, returned at 00:30 and closed by the leader without another
    # dispatch: misrouted only once the return came
    case("R2", B, [
        ev("report", "03-08 22:00", INTAKE, "intake"),
        ev("accept", "03-08 22:10", INTAKE, "intake"),
        ev("file", "03-08 22:20", INTAKE, "intake"),
        ev("dispatch", "03-08 23:30", DISPATCHER, "dispatcher", department="yuanlin"),
        ev("acknowledge", "03-08 23:40", YL, "department"),
        ev("return", "03-09 00:30", YL, "department", reason="不属于本单位职责"),
        ev("close", "03-09 10:00", LEADER, "leader", reason="已由社区处理"),
    ], due={"file": "03-08 23:00", "dispatch": "03-09 00:00", "close": "03-10 22:20"}),
    # filed at 23:50, first dispatched at 00:10: at the end of 03-05 it has no department;
    # its verification fails at 23:50 and the rework ends the next morning, late
    case("D1", A, [
        ev("report", "03-05 23:00", INTAKE, "intake"),
        ev("accept", "03-05 23:20", INTAKE, "intake"),
        ev("file", "03-05 23:50", INTAKE, "intake"),
        ev("dispatch", "03-06 00:10", DISPATCHER, "dispatcher", department="shizheng"),
        ev("acknowledge", "03-06 00:30", SZ, "department"),
        ev("feedback", "03-06 20:00", SZ, "department"),
        ev("verify_fail", "03-06 23:50", VERIFIER, "verifier", reason="现场复查仍未整改到位"),
        ev("acknowledge", "03-07 00:20", SZ, "department"),
        ev("feedback", "03-07 08:00", SZ, "department"),
        ev("verify_pass", "03-07 09:00", VERIFIER, "verifier"),
    ], due={"file": "03-06 00:00", "dispatch": "03-06 01:00", "handle": "03-06 23:00",
            "close": "03-07 00:00"}),
    # no deadlines in the file (the urgent limits: close 48 h after filing, 03-09 00:30),
    # closed late on 03-09 at 23:59:59, the second before midnight
    case("M1", A, [
        ev("report", "03-07 00:00", INTAKE, "intake", worker="W2"),
        ev("accept", "03-07 00:10", INTAKE, "intake"),
        ev("file", "03-07 00:30", INTAKE, "intake"),
        ev("dispatch", "03-07 01:00", DISPATCHER, "dispatcher", department="huanwei"),
        ev("acknowledge", "03-07 02:00", HW, "department"),
        ev("feedback", "03-09 20:00", HW, "department"),
        ev("verify_pass", "03-09 23:59:59", VERIFIER, "verifier"),
    ], severity="urgent"),
]

FIRST_DAY = date(2025, 2, 27)
DAY_PERIODS = [Period(FIRST_DAY + timedelta(days=i), FIRST_DAY + timedelta(days=i + 1))
               for i in range(16)]  # 02-27 … 03-14, one day each
PERIODS = [
    *DAY_PERIODS,
    Period(date(2025, 3, 3), date(2025, 3, 10)),  # a week (C6's extension after it)
    Period(date(2025, 3, 5), date(2025, 3, 12)),
    Period(date(2025, 3, 4), date(2025, 3, 7)),
    Period(date(2025, 3, 1), date(2025, 4, 1)),  # the month
    Period(date(2025, 2, 1), date(2025, 4, 2)),
    Period(date(2025, 2, 20), date(2025, 2, 26)),  # C10 filed, not yet due
    Period(date(2024, 6, 1), date(2024, 7, 1)),  # no data at all
]


@pytest.fixture(scope="module", autouse=True)
def hall_time_zone():
    mp = pytest.MonkeyPatch()
    mp.setenv("GRID_TZ", "Asia/Shanghai")
    yield
    mp.undo()


def _iso(t: datetime) -> str:
    return t.astimezone(hall_timezone()).isoformat()


def today_cases(now: datetime) -> list[dict]:
    """Open cases of today, made relative to ``now``: one whose close deadline passed an
    hour ago, one whose deadline comes later today (halfway to midnight), one closed."""
    tz = hall_timezone()
    midnight = datetime.combine(now.astimezone(tz).date() + timedelta(days=1), time(), tz)
    later = now + (midnight - now) / 2

    def at(minutes: float) -> str:
        return _iso(now - timedelta(minutes=minutes))

    def line(number, events, due):
        c = case(number, A, events)
        c["due"] = {k: _iso(v) for k, v in due.items()}
        return c

    steps = [ev("report", at(300), INTAKE, "intake"), ev("accept", at(290), INTAKE, "intake"),
             ev("file", at(280), INTAKE, "intake"),
             ev("dispatch", at(270), DISPATCHER, "dispatcher", department="huanwei")]
    return [
        line("T-OVERDUE", steps, {"file": now - timedelta(minutes=285),
                                  "dispatch": now - timedelta(minutes=275),
                                  "close": now - timedelta(hours=1)}),
        line("T-LATER", steps, {"file": now - timedelta(minutes=285),
                                "dispatch": now - timedelta(minutes=275), "close": later}),
        line("T-CLOSED", [*steps, ev("acknowledge", at(200), HW, "department"),
                          ev("feedback", at(100), HW, "department"),
                          ev("verify_pass", at(50), VERIFIER, "verifier")],
             {"file": now - timedelta(minutes=285), "dispatch": now - timedelta(minutes=275),
              "close": later}),
    ]


@pytest.fixture
def hall(engine, tmp_path):
    setup_hall(engine, tmp_path)
    now = datetime.now(UTC)
    path = tmp_path / "history.jsonl"
    lines = history_lines() + [json.dumps(c, ensure_ascii=False)
                               for c in EDGE_CASES + today_cases(now)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = import_history(engine, path)
    assert summary.loaded == 11 + len(EDGE_CASES) + 3, summary
    refresh(engine)
    return now


def _same(a, b, name: str) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if name == "handling_hours_mean":
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b  # counts, rates from the same counts, medians: exactly


def assert_same_rows(engine, by: str, t0: datetime, t1: datetime) -> list[dict]:
    rolled = _report_rows(engine, by, t0, t1, "rollup")
    direct = _report_rows(engine, by, t0, t1, "direct")
    r = {row["key"]: row for row in rolled}
    d = {row["key"]: row for row in direct}
    assert set(r) == set(d), (by, t0, t1)
    for key, row in d.items():
        assert r[key]["parts"] == row["parts"], (by, t0, t1, key)
        for name, value in row.items():
            assert _same(r[key][name], value, name), (by, t0, t1, key, name, r[key][name], value)
    return rolled


def running(now: datetime, days_back: int) -> tuple[datetime, datetime]:
    """A period from ``days_back`` days ago to the end of today, as of ``now``."""
    today = now.astimezone(hall_timezone()).date()
    t0, _ = Period(today - timedelta(days=days_back), today + timedelta(days=1)).bounds()
    return t0, now


@pytest.mark.parametrize("medians", ["walk", "sort"])
def test_every_report_is_the_direct_query_s(engine, hall, medians, monkeypatch):
    monkeypatch.setattr(kpi_rollup, "WALK_SHARE", 10**9 if medians == "walk" else 0)
    assert kpi_rollup.usable(engine)
    bounds = [p.bounds() for p in PERIODS] + [running(hall, 0), running(hall, 3)]
    seen_none = seen_backlog = False
    for t0, t1 in bounds:
        for by in GROUPINGS:
            rows = assert_same_rows(engine, by, t0, t1)
            seen_none |= any(row["closure"] is None for row in rows)
            seen_backlog |= any(row["due"] > row["closed"] for row in rows)
    assert seen_none and seen_backlog  # empty denominators and unclosed due cases were met


def test_running_periods_count_todays_deadlines_only_once_passed(engine, hall):
    """As of now, T-OVERDUE is due and T-LATER (its deadline later today) is not."""
    t0, t1 = running(hall, 1)  # yesterday and today: the T cases' steps all fall in it
    row = assert_same_rows(engine, "district", t0, t1)[0]
    # due: T-OVERDUE (its deadline passed an hour ago), T-CLOSED (closed in it), and C5,
    # C9, C10 (open and overdue since spring 2025); not T-LATER, its deadline is ahead
    assert (row["reported"], row["closed"], row["due"]) == (3, 1, 5)
    later = t1 + (datetime.combine(t1.astimezone(hall_timezone()).date() + timedelta(days=1),
                                   time(), hall_timezone()) - t1) * 3 / 4
    assert assert_same_rows(engine, "district", t0, later)[0]["due"] == 6  # + T-LATER


def test_the_daily_trend_is_the_direct_one(engine, hall):
    for period in (Period(date(2025, 2, 25), date(2025, 3, 20)),
                   Period(hall.astimezone(hall_timezone()).date() - timedelta(days=2),
                          hall.astimezone(hall_timezone()).date() + timedelta(days=1))):
        edges = bucket_edges(period, "day")
        edges[-1] = min(edges[-1], hall)  # a running period ends at one fixed instant
        rolled = trend_rows(engine, edges, period.start, True, rollup_only=True)
        direct = trend_rows(engine, edges, period.start, False)
        assert len(rolled) == len(direct) == len(edges) - 1
        for r, d in zip(rolled, direct, strict=True):
            for name, value in d.items():
                assert _same(r[name], value, name), (d["start"], name, r[name], value)
        assert any(d["due"] > d["closed"] for d in direct)


def snapshot(conn) -> tuple[list, list]:
    days = conn.execute(text("SELECT * FROM kpi_day WHERE reported <> 0 OR filed <> 0 "
                             "OR dispatched <> 0 OR fed_back <> 0 OR closed <> 0 OR lo <> 0 "
                             "OR lor <> 0 OR hi <> 0 OR hir <> 0 "
                             "ORDER BY dim, day, key, dday")).all()
    cases = conn.execute(text("SELECT * FROM kpi_case ORDER BY case_id")).all()
    return [tuple(r) for r in days], [tuple(r) for r in cases]


def assert_rollup_is_rebuilt_one(engine) -> None:
    """The rollup kept up by the triggers is the one a rebuild from scratch writes."""
    with engine.connect() as conn:
        kept = snapshot(conn)
        conn.rollback()
        tx = conn.begin()
        conn.execute(text("SELECT grid_kpi_rebuild('Asia/Shanghai')"))
        rebuilt = snapshot(conn)
        tx.rollback()
    assert kept[0] == rebuilt[0]
    assert kept[1] == rebuilt[1]


def test_new_actions_keep_it_right(engine, db_url, hall):
    """Live actions by the consoles land in the log, the fold updates their facts, and the
    triggers their rollup rows: after each, the rollup is the rebuilt one and every report
    the direct query's."""
    assert_rollup_is_rebuilt_one(engine)
    console = console_engine(db_url)
    try:
        actors = {name: authenticate(console, name, PASSWORD, "ws-1") for name in
                  ("intake1", "dispatcher1", "dept_huanwei", "dept_shizheng", "verifier1")}

        def by_shizheng(r, action, **params):
            return perform(console, actors["dept_shizheng"], action, r.number, r.version,
                           **{**flows.PARAMS.get(action, {}), **params})

        with console.connect() as conn:
            before = conn.execute(text("SELECT sum(reported) FROM kpi_day WHERE dim = 2")
                                  ).scalar_one()
        r = flows.report(console, actors, lon=A[0], lat=A[1])
        for action in ("accept", "file", "dispatch"):
            r = flows.step(console, actors, r, action)
        assert refresh(console) == 1  # one case folded
        with console.connect() as conn:
            after = conn.execute(text("SELECT sum(reported) FROM kpi_day WHERE dim = 2")
                                 ).scalar_one()
        assert after == before + 1
        now = datetime.now(UTC)
        for by in GROUPINGS:
            assert_same_rows(engine, by, *running(now, 1))
        assert_rollup_is_rebuilt_one(engine)
        for action in ("acknowledge", "return"):  # returned: misrouted, department gone
            r = flows.step(console, actors, r, action)
        r = flows.step(console, actors, r, "dispatch", department="shizheng")
        for action in ("acknowledge", "feedback", "verify_fail", "acknowledge", "feedback",
                       "verify_pass"):
            r = (by_shizheng(r, action) if action in ("acknowledge", "feedback")
                 else flows.step(console, actors, r, action))
        refresh(console)
        now = datetime.now(UTC)
        for by in GROUPINGS:
            rows = assert_same_rows(engine, by, *running(now, 1))
        assert_rollup_is_rebuilt_one(engine)
        row = assert_same_rows(engine, "district", *running(now, 0))[0]
        assert row["parts"]["misrouted"] >= 1 and row["parts"]["reworked"] >= 1
        assert rows  # worker grouping listed
    finally:
        console.dispose()


def test_a_fact_out_of_order_is_computed_directly(engine, hall):
    """A fact the owner wrote out of the lifecycle's order (C1 reworked the day after its
    close) is kept out of the rollup and recomputed in every report: on 03-04 C1 is not
    due, so its "rework" counts nowhere."""
    with engine.begin() as conn:
        conn.execute(text(
            "UPDATE case_fact SET reworked_at = closed_at + interval '1 day' "
            "WHERE case_id = (SELECT id FROM \"case\" WHERE number = 'C1')"))
        assert conn.execute(text(
            "SELECT irregular FROM kpi_case JOIN \"case\" c ON c.id = case_id "
            "WHERE c.number = 'C1'")).scalar_one()
    for period in PERIODS[4:8] + PERIODS[-7:-3]:
        for by in GROUPINGS:
            assert_same_rows(engine, by, *period.bounds())
    assert_rollup_is_rebuilt_one(engine)


def test_consoles_read_the_rollup_and_cannot_write_it(engine, db_url, hall):
    import sqlalchemy.exc

    console = console_engine(db_url)
    try:
        with console.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM kpi_day")).scalar_one() > 0
            assert conn.execute(text("SELECT grid_kpi_zone()")).scalar_one() == "Asia/Shanghai"
        for sql in ("UPDATE kpi_day SET reported = reported + 1",
                    "INSERT INTO kpi_day (dim, day, key, dday) VALUES (1, '2025-03-03', 0, "
                    "'infinity')",
                    "DELETE FROM kpi_case",
                    "SELECT grid_kpi_rebuild('UTC')",
                    "UPDATE case_fact SET closed_at = NULL"):
            with pytest.raises(sqlalchemy.exc.ProgrammingError, match="permission denied"):
                with console.begin() as conn:
                    conn.execute(text(sql))
    finally:
        console.dispose()


def test_a_hall_in_another_zone_gets_the_direct_query_until_rebuilt(engine, hall,
                                                                     monkeypatch):
    monkeypatch.setenv("GRID_TZ", "UTC")
    assert not kpi_rollup.usable(engine)  # the rollup's days are Shanghai's
    with pytest.raises(ValueError):
        _report_rows(engine, "grid", *PERIODS[5].bounds(), "rollup")
    with engine.begin() as conn:
        conn.execute(text("SELECT grid_kpi_rebuild('UTC')"))
    assert kpi_rollup.usable(engine)
    for period in PERIODS[2:9] + PERIODS[-7:-4]:
        for by in ("district", "department", "grid"):
            assert_same_rows(engine, by, *period.bounds())
