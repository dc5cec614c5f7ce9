"""Every metric of docs/DOMAIN.md §2, worked out by hand on the imported history of
tests/kpi_support.py (C1–C12), for a day, a week and a month in Asia/Shanghai.

The periods: DAY = [03-03, 03-04), WEEK = [03-03, 03-10) (Monday on), MONTH = March.
Per case, when each step came (hall time) and whether it was in time; the expected
numbers below are counted from this table, their arithmetic beside them.

case place dept(day/week) filed         dispatched  fed back (first)   closed           due in
C1   A     hw / hw        03-03 08:30 ✓ 09:00 ✓     03-03 12:00 ✓      03-03 14:00 ✓    D W M
C2   A     sz / sz        03-03 00:20 ✗ 01:00 ✓     03-03 20:00 ✗ (*)  03-04 09:00 ✓    W M
C3   B     hw / hw        03-03 00:30 ✓ 01:00 ✓ (r) 03-03 10:00 ✓      03-03 12:00 ✓    D W M
C4   B     hw / hw        03-03 09:10 ✓ 09:30 ✓     03-03 11:00 ✓      03-05 10:00 ✗    W M (rework)
C5   A     — / hw         03-04 11:00 ✓ 11:30 ✓     —                  open             W M
C6   B     — / sz         03-06 12:00 ✗ 12:30 ✓     03-10 12:00 ✓      03-10 14:00 ✓    W (**) M
C7   A     none           03-03 15:00 ✓ —           03-03 15:00 ✓      03-03 16:00 ✓    D W M
C8   A     none           —             —           —                  (rejected)       —
C9   B     none           04-01 00:00   —           —                  open             —
C10  B     hw / hw        02-20         02-20       —                  open, overdue    D W M
C12  A     hw / sz        03-03 11:10 ✓ 11:20 ✓     03-04 15:00 ✓      03-04 17:00 ✓    W M

(r) returned by yuanlin, re-dispatched to huanwei: misrouted.  (*) the lead fed back at
05:00, on time; the co-department at 20:00, after the 12:00 deadline: the case's handling
is late.  (**) its close deadline 03-08 12:00 was moved by 72 h only on 03-10 09:00, after
the week: at the end of the week it was overdue.  Reported: C3 at 03-02 23:59:59 (not in
the day or week), C2 at 03-03 00:00:00 (in both), C5 03-04, C6 03-06, C9 03-31 23:30.
Handling hours (file → close): C1 5.5, C2 32 h 40 = 98/3, C3 11.5, C4 48 h 50 = 293/6,
C6 98, C7 1, C12 29 h 50 = 179/6.
C5/C6/C7 have no deadlines in the file: urgent S0102 limits file 2 h, dispatch 1 h,
handle 24 h, close 48 h (kpi_support.URGENT_LIMITS), plus approved extensions.
"""

from __future__ import annotations

from datetime import date

import pytest

from db.history_import import import_history
from db.metrics import GROUPINGS, Period, cases_behind, report, trend
from tests.kpi_support import place_codes, setup_hall, write_history

DAY = Period(date(2025, 3, 3), date(2025, 3, 4))
WEEK = Period(date(2025, 3, 3), date(2025, 3, 10))
MONTH = Period(date(2025, 3, 1), date(2025, 4, 1))
NONE = {"reported": 0, "filed": 0, "dispatched": 0, "closed": 0, "due": 0,
        "timely_filing": None, "timely_dispatch": None, "ontime_handling": None,
        "dispatch_accuracy": None, "rework": None, "closure": None, "ontime_closure": None,
        "handling_hours_mean": None, "handling_hours_median": None}


@pytest.fixture(scope="module", autouse=True)
def hall_time_zone():
    mp = pytest.MonkeyPatch()
    mp.setenv("GRID_TZ", "Asia/Shanghai")
    yield
    mp.undo()


@pytest.fixture
def hall(engine, tmp_path):
    setup_hall(engine, tmp_path)
    summary = import_history(engine, write_history(tmp_path / "history.jsonl"))
    assert summary.loaded == 11
    return place_codes(engine)


def check(row: dict, expected: dict) -> None:
    """Every metric named in ``expected`` as given (floats to 1e-9)."""
    for name, value in expected.items():
        got = row[name]
        if value is None or name in ("reported", "filed", "dispatched", "closed", "due"):
            assert got == value, (row["key"], name, got, value)
        else:
            assert got == pytest.approx(value, abs=1e-9), (row["key"], name, got, value)


def rows_by_key(rep: dict) -> dict:
    return {r["key"]: r for r in rep["rows"]}


# --- the district ----------------------------------------------------------------------

DISTRICT = {
    "day": {
        "reported": 6,  # C1 C2 C4 C7 C8 C12 (C3 was 03-02 23:59:59)
        "filed": 6,  # C1 C2 C3 C4 C7 C12
        "dispatched": 5,  # C1 C2 C3 C4 C12
        "closed": 3,  # C1 C3 C7
        "due": 4,  # the 3 closed + C10 (overdue since 02-25)
        "timely_filing": 5 / 6,  # all but C2
        "timely_dispatch": 1.0,  # 5 / 5
        "ontime_handling": 4 / 5,  # fed back C1 C2 C3 C4 C7; C2 late
        "dispatch_accuracy": 1 - 1 / 5,  # C3 returned
        "rework": 0.0,  # 0 / 4 (C4's rework: C4 is not due in the day)
        "closure": 3 / 4,
        "ontime_closure": 3 / 4,
        "handling_hours_mean": (5.5 + 11.5 + 1.0) / 3,  # = 6.0
        "handling_hours_median": 5.5,
    },
    "week": {
        "reported": 8,  # C1 C2 C4 C5 C6 C7 C8 C12
        "filed": 8,  # C1 C2 C3 C4 C5 C6 C7 C12
        "dispatched": 7,  # C1 C2 C3 C4 C5 C6 C12
        "closed": 6,  # C1 C2 C3 C4 C7 C12
        "due": 9,  # 6 closed + C5 (03-08 11:00) + C6 (03-08 12:00 at the week's end) + C10
        "timely_filing": 6 / 8,  # C2 and C6 late
        "timely_dispatch": 7 / 7,
        "ontime_handling": 5 / 6,  # fed back C1 C2 C3 C4 C7 C12; C2 late (C6 is 03-10)
        "dispatch_accuracy": 1 - 1 / 7,
        "rework": 1 / 9,  # C4
        "closure": 6 / 9,
        "ontime_closure": 5 / 9,  # all closed but C4
        # 5.5 + 98/3 + 11.5 + 293/6 + 1 + 179/6 = 388/3 over 6 cases
        "handling_hours_mean": 388 / 3 / 6,
        "handling_hours_median": (11.5 + 179 / 6) / 2,  # of 1, 5.5, 11.5, 29.83, 32.67, 48.83
    },
    "month": {
        "reported": 10,  # all but C10 (February)
        "filed": 8,  # C9 was filed at 04-01 00:00, the end of March: not in it
        "dispatched": 7,
        "closed": 7,  # the week's 6 + C6
        "due": 9,  # 7 closed + C5 + C10 (C9 filed only at the end)
        "timely_filing": 6 / 8,
        "timely_dispatch": 7 / 7,
        "ontime_handling": 6 / 7,  # + C6, on time: 03-07 12:30 + 72 h = 03-10 12:30
        "dispatch_accuracy": 1 - 1 / 7,
        "rework": 1 / 9,
        "closure": 7 / 9,
        "ontime_closure": 6 / 9,  # C6 on time: 03-08 12:00 + 72 h = 03-11 12:00
        "handling_hours_mean": (388 / 3 + 98) / 7,  # = 682/21
        "handling_hours_median": 179 / 6,  # the 4th of 7: C12
    },
}


@pytest.mark.parametrize("name,period", [("day", DAY), ("week", WEEK), ("month", MONTH)])
def test_district(engine, hall, name, period):
    rep = report(engine, period)
    assert rep["from"] == period.start.isoformat() and rep["to"] == period.end.isoformat()
    assert len(rep["rows"]) == 1 and rep["rows"][0]["key"] == "district"
    assert rep["rows"][0]["name"] == "评价区"
    check(rep["rows"][0], DISTRICT[name])


def test_a_period_with_no_data_has_no_rates(engine, hall):
    rep = report(engine, Period(date(2024, 6, 1), date(2024, 7, 1)))
    check(rep["rows"][0], NONE)
    for by in GROUPINGS[1:]:
        rep = report(engine, Period(date(2024, 6, 1), date(2024, 6, 2)), by)
        for row in rep["rows"]:
            check(row, NONE)
            # no rate, no rank; a count (workers by reports) is 0 for all: one shared rank
            assert row["rank"] == (1 if rep["rank_by"] == "reported" else None)


# --- by department ------------------------------------------------------------------------

DEPARTMENTS = {
    "day": {
        # C1 C3 C4 C12 (dispatched to huanwei by the end of the day) and C10
        "huanwei": {"reported": 3, "filed": 4, "dispatched": 4, "closed": 2, "due": 3,
                    "timely_filing": 1.0, "timely_dispatch": 1.0,
                    "ontime_handling": 1.0,  # C1 C3 C4
                    "dispatch_accuracy": 1 - 1 / 4,  # C3
                    "rework": 0.0, "closure": 2 / 3, "ontime_closure": 2 / 3,  # C1 C3 of C1 C3 C10
                    "handling_hours_mean": (5.5 + 11.5) / 2, "handling_hours_median": 8.5},
        "shizheng": {"reported": 1, "filed": 1, "dispatched": 1, "closed": 0, "due": 0,  # C2
                     "timely_filing": 0.0, "timely_dispatch": 1.0, "ontime_handling": 0.0,
                     "dispatch_accuracy": 1.0, "rework": None, "closure": None,
                     "ontime_closure": None, "handling_hours_mean": None,
                     "handling_hours_median": None},
        None: {"reported": 2, "filed": 1, "dispatched": 0, "closed": 1, "due": 1,  # C7 C8
               "timely_filing": 1.0, "timely_dispatch": None, "ontime_handling": 1.0,
               "dispatch_accuracy": None, "rework": 0.0, "closure": 1.0, "ontime_closure": 1.0,
               "handling_hours_mean": 1.0, "handling_hours_median": 1.0},
        "yuanlin": NONE,  # C3 went to yuanlin first, but its latest dispatch was huanwei
    },
    "week": {
        # C1 C3 C4 C5 C10; C12 was reassigned to shizheng on 03-04
        "huanwei": {"reported": 3, "filed": 4, "dispatched": 4, "closed": 3, "due": 5,
                    "timely_filing": 1.0, "timely_dispatch": 1.0, "ontime_handling": 1.0,
                    "dispatch_accuracy": 0.75, "rework": 1 / 5,  # C4
                    "closure": 3 / 5, "ontime_closure": 2 / 5,  # C4 late
                    "handling_hours_mean": (5.5 + 11.5 + 293 / 6) / 3,
                    "handling_hours_median": 11.5},
        # C2 C6 C12
        "shizheng": {"reported": 3, "filed": 3, "dispatched": 3, "closed": 2, "due": 3,
                     "timely_filing": 1 / 3,  # C12 only
                     "timely_dispatch": 1.0,
                     "ontime_handling": 1 / 2,  # C2 late, C12 on time (C6 fed back 03-10)
                     "dispatch_accuracy": 1.0, "rework": 0.0,
                     "closure": 2 / 3, "ontime_closure": 2 / 3,  # C2 C12 of C2 C6 C12
                     "handling_hours_mean": (98 / 3 + 179 / 6) / 2,  # = 31.25
                     "handling_hours_median": 31.25},
        None: {"reported": 2, "filed": 1, "dispatched": 0, "closed": 1, "due": 1,
               "timely_filing": 1.0, "ontime_handling": 1.0, "closure": 1.0},
    },
    "month": {
        "huanwei": {"reported": 4,  # + C3 (03-02)
                    "filed": 4, "dispatched": 4, "closed": 3, "due": 5,
                    "dispatch_accuracy": 0.75, "rework": 1 / 5, "closure": 3 / 5,
                    "ontime_closure": 2 / 5},
        "shizheng": {"reported": 3, "filed": 3, "dispatched": 3, "closed": 3, "due": 3,
                     "timely_filing": 1 / 3, "ontime_handling": 2 / 3,  # + C6 on time
                     "closure": 1.0, "ontime_closure": 1.0,
                     "handling_hours_mean": (98 / 3 + 98 + 179 / 6) / 3,  # = 53.5
                     "handling_hours_median": 98 / 3},
        None: {"reported": 3, "filed": 1, "closed": 1, "due": 1},  # C7 C8 C9
    },
}


@pytest.mark.parametrize("name,period", [("day", DAY), ("week", WEEK), ("month", MONTH)])
def test_by_department(engine, hall, name, period):
    rows = rows_by_key(report(engine, period, "department"))
    for key, expected in DEPARTMENTS[name].items():
        check(rows[key], expected)
    assert rows[None]["name"] == "未派遣"
    # every department is listed, those without cases as "no data"
    check(rows["chengguan"], NONE)
    assert sum(r["reported"] for r in rows.values()) == DISTRICT[name]["reported"]
    assert sum(r["due"] for r in rows.values()) == DISTRICT[name]["due"]


# --- by street, community and grid (A and B lie in different streets) ----------------------

PLACES_WEEK = {
    # A: C1 C2 C5 C7 C8 C12
    "A": {"reported": 6, "filed": 5, "dispatched": 4, "closed": 4, "due": 5,
          "timely_filing": 4 / 5,  # C2 late
          "timely_dispatch": 1.0, "ontime_handling": 3 / 4,  # C1 C7 C12 of C1 C2 C7 C12
          "dispatch_accuracy": 1.0, "rework": 0.0, "closure": 4 / 5, "ontime_closure": 4 / 5,
          "handling_hours_mean": (5.5 + 98 / 3 + 1 + 179 / 6) / 4,  # = 69 / 4
          "handling_hours_median": (5.5 + 179 / 6) / 2},
    # B: C3 C4 C6 C10
    "B": {"reported": 2, "filed": 3, "dispatched": 3, "closed": 2, "due": 4,
          "timely_filing": 2 / 3,  # C6 late
          "timely_dispatch": 1.0, "ontime_handling": 1.0,  # C3 C4
          "dispatch_accuracy": 1 - 1 / 3,  # C3
          "rework": 1 / 4,  # C4 of C3 C4 C6 C10
          "closure": 2 / 4, "ontime_closure": 1 / 4,  # C3 on time, C4 late
          "handling_hours_mean": (11.5 + 293 / 6) / 2,
          "handling_hours_median": (11.5 + 293 / 6) / 2},
}
GRIDS_DAY = {
    # A: C1 C2 C7 C8 C12
    "A": {"reported": 5, "filed": 4, "dispatched": 3, "closed": 2, "due": 2,
          "timely_filing": 3 / 4, "timely_dispatch": 1.0, "ontime_handling": 2 / 3,
          "dispatch_accuracy": 1.0, "rework": 0.0, "closure": 1.0, "ontime_closure": 1.0,
          "handling_hours_mean": 3.25, "handling_hours_median": 3.25},  # C1 5.5, C7 1
    # B: C3 C4 C10 (C3 was reported the day before)
    "B": {"reported": 1, "filed": 2, "dispatched": 2, "closed": 1, "due": 2,
          "timely_filing": 1.0, "timely_dispatch": 1.0, "ontime_handling": 1.0,
          "dispatch_accuracy": 0.5, "rework": 0.0, "closure": 0.5, "ontime_closure": 0.5,
          "handling_hours_mean": 11.5, "handling_hours_median": 11.5},
}


@pytest.mark.parametrize("by", ["street", "community", "grid"])
def test_by_place_for_the_week(engine, hall, by):
    assert hall["A"][by] != hall["B"][by]
    rows = rows_by_key(report(engine, WEEK, by))
    check(rows[hall["A"][by]], PLACES_WEEK["A"])
    check(rows[hall["B"][by]], PLACES_WEEK["B"])
    for key, row in rows.items():
        if key not in (hall["A"][by], hall["B"][by]):
            check(row, NONE)  # the other grids (communities, streets) have no data
    if by == "grid":
        assert all(len(k) == 15 and k.isdigit() for k in rows)


def test_by_grid_for_the_day_and_ranked(engine, hall):
    rep = report(engine, DAY, "grid")
    rows = rows_by_key(rep)
    check(rows[hall["A"]["grid"]], GRIDS_DAY["A"])
    check(rows[hall["B"]["grid"]], GRIDS_DAY["B"])
    # ranked by 按期结案率: A (100 %) before B (50 %), the grids without data last
    assert rep["rank_by"] == "ontime_closure"
    assert [r["key"] for r in rep["rows"][:2]] == [hall["A"]["grid"], hall["B"]["grid"]]
    assert [r["rank"] for r in rep["rows"]] == [1, 2, None, None]
    by_rework = report(engine, WEEK, "street", rank_by="rework")  # lower is better
    assert [r["key"] for r in by_rework["rows"]] == [hall["A"]["street"], hall["B"]["street"]]


def test_by_worker_for_the_week(engine, hall):
    rep = report(engine, WEEK, "worker")
    rows = rows_by_key(rep)
    check(rows["W1"], {  # C1 and C7
        "reported": 2, "filed": 2, "dispatched": 1, "closed": 2, "due": 2,
        "timely_filing": 1.0, "timely_dispatch": 1.0, "ontime_handling": 1.0,
        "dispatch_accuracy": 1.0, "rework": 0.0, "closure": 1.0, "ontime_closure": 1.0,
        "handling_hours_mean": (5.5 + 1) / 2, "handling_hours_median": 3.25})
    check(rows["W2"], {  # C3: reported the day before the week, filed in it
        "reported": 0, "filed": 1, "dispatched": 1, "closed": 1, "due": 1,
        "timely_filing": 1.0, "dispatch_accuracy": 0.0})
    assert rep["rank_by"] == "reported" and rep["rows"][0]["key"] == "W1"


# --- the cases behind a number, and the trend ------------------------------------------------


def test_the_cases_behind_each_number(engine, hall):
    def numbers(which, by="district", key="district", period=WEEK):
        return sorted(r["number"] for r in cases_behind(engine, period, which, by, key))

    assert numbers("due") == sorted(["C1", "C2", "C3", "C4", "C7", "C12", "C5", "C6", "C10"])
    assert numbers("closed_late") == ["C4"]
    assert numbers("filed_late") == ["C2", "C6"]
    assert numbers("misrouted") == ["C3"]
    assert numbers("reworked") == ["C4"]
    assert numbers("due_open") == ["C10", "C5", "C6"]
    assert numbers("fed_back_late", period=DAY) == ["C2"]
    assert numbers("dispatched", "department", "huanwei", DAY) == ["C1", "C12", "C3", "C4"]
    assert numbers("dispatched", "department", "shizheng", WEEK) == ["C12", "C2", "C6"]
    assert numbers("reported", "department", None, MONTH) == ["C7", "C8", "C9"]
    assert numbers("due", "grid", hall["B"]["grid"], DAY) == ["C10", "C3"]


def test_the_daily_trend_is_each_day_as_a_period(engine, hall):
    days = trend(engine, WEEK, "day")
    assert [d["start"][:10] for d in days] == [f"2025-03-{n:02d}" for n in range(3, 10)]
    first = days[0]
    for name, value in DISTRICT["day"].items():  # 03-03 is the day worked out above
        assert first[name] == pytest.approx(value, abs=1e-9) if value is not None \
            else first[name] is None, name
    # 03-04: reported C5; filed C5; closed C2, C12 (on time); due C2 C12 C10 (C4 was due
    # 03-05 09:10, C5 03-08: not yet); C5 dispatched on time
    d4 = days[1]
    assert (d4["reported"], d4["filed"], d4["dispatched"], d4["closed"], d4["due"]) == \
        (1, 1, 1, 2, 3)
    assert d4["closure"] == pytest.approx(2 / 3) and d4["ontime_handling"] == 1.0  # C4 C12
    # 03-08: nothing happens, but C10 (since 02-25), C5 (from 11:00) and C6 (from 12:00)
    # are overdue and due; no case was closed
    d8 = days[5]
    assert (d8["reported"], d8["closed"], d8["due"], d8["closure"]) == (0, 0, 3, 0.0)
    hours = trend(engine, DAY, "hour")
    assert len(hours) == 24
    assert [h["reported"] for h in hours if h["reported"]] == [1, 1, 1, 1, 1, 1]
    assert hours[0]["start"] == "2025-03-03T00:00:00+08:00" and hours[0]["reported"] == 1  # C2
    assert hours[0]["filed"] == 2  # C2 00:20 and C3 00:30 (written 16:30Z the day before)


def test_a_changed_time_limit_does_not_rewrite_the_past(engine, db_url, tmp_path):
    """A live case's deadlines are the ones the database recorded in its log (0006), so an
    administrator who shortens a time limit later does not turn a timely filing late."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    from db.case_actions import perform
    from db.users import authenticate
    from tests.conftest import PASSWORD
    from tests.kpi_support import A, console_engine

    setup_hall(engine, tmp_path)
    console = console_engine(db_url)
    try:
        intake = authenticate(console, "intake1", PASSWORD, "ws-1")
        r = perform(console, intake, "report", category="S0102", lon=A[0], lat=A[1],
                    description="路边暴露垃圾")
        r = perform(console, intake, "accept", r.number, r.version)
        r = perform(console, intake, "file", r.number, r.version)  # 4 h allowed: on time
        with console.connect() as conn:
            recorded = conn.execute(text(
                "SELECT payload->>'stage_due' FROM case_log WHERE case_number = :n "
                "AND action = 'accept'"), {"n": r.number}).scalar_one()
        assert recorded is not None  # the accept entry carries the filing deadline
        today = datetime.now(UTC).date()
        period = Period(today - timedelta(days=1), today + timedelta(days=2))
        assert report(console, period)["rows"][0]["timely_filing"] == 1.0
        with engine.begin() as conn:  # the limit is cut to a second, and every case refolded
            conn.execute(text("UPDATE time_limit SET file_h = 0.0003"))
            conn.execute(text("UPDATE grid_meta SET value = '0' WHERE key = 'metrics_seq'"))
        assert report(console, period)["rows"][0]["timely_filing"] == 1.0
    finally:
        console.dispose()
