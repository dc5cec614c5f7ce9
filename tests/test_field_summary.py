"""Patrol summaries of closed days (``patrol_day``, revision 0009): the report answers the
same with them as from the fixes alone, on hand-made tracks whose figures are worked out
here; late fixes, a changed own grid and retention do not leave a stale answer.

The days are counted back from the hall's today (``D1`` = four days ago), so summarised
days are over and today is computed live:

* worker A, D1: 09:00–09:29 moving at 4 km/h inside the own grid, one fix a minute, then
  09:30–09:40 outside → one session 09:00–09:30 (30 min; the 09:29→09:30 interval
  belongs to the inside fix), 10 minutes outside.
* A, D2: 10:00–11:00 inside, standing 10:20–10:29 (a ten-minute stop is work) → one
  session 10:00–11:00, 60 minutes.
* A, D3: nothing; today: 00:00–00:20 inside moving → 20 minutes, live.
* worker B, D1 23:50 – D2 00:10 inside moving: a session each side of midnight, 10
  minutes each (D1's last interval ends with D2's 00:00 fix: the summary of D1 alone must
  load past midnight).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db.clock import hall_timezone
from db.engine import make_engine, role_url
from db.field import patrol_report, session_params, summarize_patrol_days
from maps.patrol import DAILY
from tests.cli_runner import cli
from tests.field_support import add_worker, put_fixes, territory
from tests.kpi_support import console_engine

MINUTE = timedelta(minutes=1)
TODAY = datetime.now(hall_timezone()).date()
D1, D2, D3 = (TODAY - timedelta(days=k) for k in (4, 3, 2))
END = TODAY + timedelta(days=1)


def at(day, h, m):
    return datetime(day.year, day.month, day.day, h, m, tzinfo=hall_timezone())


@pytest.fixture
def hall(engine):
    place = territory(engine)
    wa, da = add_worker(engine, "SA01", place.own_grid, device="SA")
    _, db_ = add_worker(engine, "SB01", place.own_grid, device="SB")
    c1, c2 = place.own_cells[:2]
    own, other = place.own_grid, place.other_grid
    a = [(at(D1, 9, 0) + k * MINUTE, *c1.at(0.2 + 0.02 * k, 0.5), 4.0, own) for k in range(30)]
    a += [(at(D1, 9, 30) + k * MINUTE, *place.other_cell.at(0.5, 0.5), 4.0, other)
          for k in range(11)]
    a += [(at(D2, 10, 0) + k * MINUTE, *c2.at(0.5, 0.5), 0.0 if 20 <= k < 30 else 4.0, own)
          for k in range(61)]
    a += [(at(TODAY, 0, 0) + k * MINUTE, *c1.at(0.5, 0.5), 4.0, own) for k in range(21)]
    put_fixes(engine, da, a)
    put_fixes(engine, db_, [(at(D1, 23, 50) + k * MINUTE, *c2.at(0.3, 0.3), 4.0, own)
                            for k in range(21)])
    return {"place": place, "a_worker": wa, "a_device": da}


def _sessions(rep, worker):
    w = next(w for w in rep["workers"] if w["worker"] == worker)
    return [[(s["start"][11:16], s["end"][11:16], s["minutes"]) for s in d["sessions"]]
            for d in w["days"]]


def _stored(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM patrol_day")).scalar_one()


def _hand_figures(rep):
    a, b = _sessions(rep, "SA01"), _sessions(rep, "SB01")
    assert a == [[("09:00", "09:30", 30.0)], [("10:00", "11:00", 60.0)], [], [],
                 [("00:00", "00:20", 20.0)]]
    assert b == [[("23:50", "00:00", 10.0)], [("00:00", "00:10", 10.0)], [], [], []]
    wa = next(w for w in rep["workers"] if w["worker"] == "SA01")
    assert wa["days"][0]["outside_minutes"] == 10.0
    assert wa["patrol_minutes"] == 110.0


def test_summaries_give_the_same_report_and_are_reused(hall, engine, db_url):
    console = console_engine(db_url)
    live = patrol_report(console, D1, END, summaries=False)
    _hand_figures(live)
    gateway = make_engine(role_url(db_url, "grid_gateway"))
    # Three closed days of two workers; today (and a day not over) is never summarised.
    assert summarize_patrol_days(gateway, D1, D3 + timedelta(days=1)) == 6
    assert summarize_patrol_days(gateway, TODAY, END) == 0
    assert _stored(engine) == 6
    kept = patrol_report(console, D1, END)
    assert kept == live
    _hand_figures(kept)
    # The report reads the stored figures: a changed row shows (only the owner can).
    with engine.begin() as conn:
        conn.execute(text("UPDATE patrol_day SET patrol_s = 3600, sessions = "
                          "ARRAY[extract(epoch FROM CAST(:a AS timestamptz)), "
                          "extract(epoch FROM CAST(:b AS timestamptz))] "
                          "WHERE worker_id = :w AND day = :d"),
                     {"a": at(D3, 8, 0), "b": at(D3, 9, 0), "w": hall["a_worker"], "d": D3})
    assert _sessions(patrol_report(console, D1, END), "SA01")[2] == [("08:00", "09:00", 60.0)]
    assert _sessions(patrol_report(console, D1, END, summaries=False), "SA01")[2] == []
    # A console reads the summaries but cannot write one.
    with console.begin() as conn, pytest.raises(DBAPIError):
        conn.execute(text("DELETE FROM patrol_day"))
    summarize_patrol_days(gateway, D3, D3 + timedelta(days=1))
    assert patrol_report(console, D1, END) == live
    gateway.dispose()


def test_a_late_fix_of_a_summarised_day_is_counted(hall, engine, db_url):
    summarize_patrol_days(engine, D1, D3 + timedelta(days=1))
    assert _stored(engine) == 6
    # A terminal that was offline on D3 uploads its buffer today: 14:00–14:10 inside.
    c1 = hall["place"].own_cells[0]
    put_fixes(engine, hall["a_device"], [(at(D3, 14, 0) + k * MINUTE, *c1.at(0.5, 0.5), 4.0,
                                          hall["place"].own_grid) for k in range(11)])
    assert _stored(engine) == 5  # that day's summary of that worker is gone, no other
    kept, live = patrol_report(engine, D1, END), patrol_report(engine, D1, END, summaries=False)
    assert kept == live
    assert _sessions(kept, "SA01")[2] == [("14:00", "14:10", 10.0)]
    # A fix just after D2's midnight ends D2's last interval: D2 goes too, D1 stays.
    put_fixes(engine, hall["a_device"], [(at(D3, 0, 10), *c1.at(0.5, 0.5), 4.0,
                                          hall["place"].own_grid)])
    assert _stored(engine) == 4
    assert patrol_report(engine, D1, END) == patrol_report(engine, D1, END, summaries=False)


def test_a_changed_own_grid_or_rule_is_computed_from_the_fixes(hall, engine):
    summarize_patrol_days(engine, D1, D3 + timedelta(days=1))
    with engine.begin() as conn:
        conn.execute(text("UPDATE worker SET grid_id = :g WHERE code = 'SA01'"),
                     {"g": hall["place"].other_grid})
    kept, live = patrol_report(engine, D1, END), patrol_report(engine, D1, END, summaries=False)
    assert kept == live
    # D1 in the new own grid: the ten minutes that were outside are now the session.
    assert _sessions(kept, "SA01")[0] == [("09:30", "09:40", 10.0)]
    # Other session parameters are another key; a gap longer than the margin is never kept.
    slow = DAILY.with_changes(moving_kmh=5.0)
    assert session_params(slow) != session_params(DAILY)
    assert patrol_report(engine, D1, END, rule=slow) == patrol_report(
        engine, D1, END, rule=slow, summaries=False)
    assert session_params(DAILY.with_changes(max_gap_s=3600.0)) is None


def test_retention_takes_the_summaries_of_the_days_it_drops(hall, engine):
    summarize_patrol_days(engine, D1, D3 + timedelta(days=1))
    with engine.begin() as conn:
        conn.execute(text("SELECT grid_drop_positions_before(:d)"), {"d": D2})
        left = conn.execute(text("SELECT day FROM patrol_day ORDER BY day")).scalars().all()
    assert D1 not in left and set(left) <= {D2, D3}
    kept = patrol_report(engine, D1, END)
    assert kept == patrol_report(engine, D1, END, summaries=False)


def test_patrol_summarize_on_the_command_line(hall, engine, db_url):
    out = cli(db_url, f"patrol summarize --from {D1} --to {D3 + timedelta(days=1)}", "x")
    assert out.returncode == 0, out.stderr
    assert _stored(engine) == 6
    bad = cli(db_url, f"patrol summarize --from {D3} --to {D1} --lang en", "x")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "end date" in bad.stderr
