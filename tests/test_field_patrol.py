"""Patrol compliance (巡查) on hand-made tracks; every expected figure worked out here.

The track of worker A on Monday 2 November 2026 (hall time), one fix a minute:

* 09:00–09:29 moving at 4 km/h inside the own grid, ten minutes in each of three
  cells; 09:30–09:40 moving outside it (another grid); then nothing until 10:00.
  → session 09:00–09:30 (the interval 09:29→09:30 belongs to the fix at 09:29, inside),
  10 minutes outside (09:30→09:40), the hole 09:40→10:00 counts for nothing.
* 10:00–10:49 inside, standing (speed 0) 10:10–10:19: a 10-minute stop is work and
  counts; 10:50–11:39 standing: 50 minutes is more than the 30 a stop may last, so it
  is a break left out whole; 11:40–11:55 moving.
  → sessions 10:00–10:50 (50 min) and 11:40–11:55 (15 min).
* 12:10–12:45 inside with no speed reported, 20 m back and forth a minute (1.2 km/h
  from the distance: moving; read as standing, 35 minutes would be a break).
  → session 12:10–12:45 (35 min).

So Monday: 4 sessions, 130 minutes of patrol, 4 patrols (of at least 10 minutes; 3 of
at least 16), 10 minutes outside, three own cells visited; Tuesday: nothing.  Worker B
walks 23:50 Monday – 00:10 Tuesday inside: 10 minutes each day, a session on each side
of midnight; B is on duty Mondays only.
"""

from __future__ import annotations

import json
import math
from datetime import date, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db.errors import Forbidden
from db.field import patrol_report, set_schedule
from db.users import authenticate
from maps.patrol import QUANKE
from tests.cli_runner import cli
from tests.conftest import PASSWORD
from tests.field_support import add_worker, local, put_fixes, territory
from tests.kpi_support import console_engine

MON, TUE, WED = date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)
MINUTE = timedelta(minutes=1)


def _track_a(place):
    c1, c2, c3 = place.own_cells[:3]
    own, other = place.own_grid, place.other_grid
    fixes = []
    t = local(2026, 11, 2, 9, 0)
    for k in range(30):  # 09:00..09:29, ten fixes in each cell
        cell = (c1, c2, c3)[k // 10]
        fixes.append((t + k * MINUTE, *cell.at(0.3 + 0.04 * (k % 10), 0.5), 4.0, own))
    for k in range(11):  # 09:30..09:40 outside
        fixes.append((t + (30 + k) * MINUTE, *place.other_cell.at(0.5, 0.5), 4.0, other))
    t = local(2026, 11, 2, 10, 0)
    for k in range(116):  # 10:00..11:55
        speed = 0.0 if 10 <= k < 20 or 50 <= k < 100 else 4.0
        fixes.append((t + k * MINUTE, *c1.at(0.5, 0.5), speed, own))
    lon0, lat0 = c1.at(0.2, 0.3)
    step = 20.0 / (111_320.0 * math.cos(math.radians(lat0)))  # 20 m east or back a minute
    t = local(2026, 11, 2, 12, 10)
    for k in range(36):  # 12:10..12:45, no speed reported
        fixes.append((t + k * MINUTE, lon0 + (k % 2) * step, lat0, None, own))
    return fixes


def _track_b(place):
    c4 = place.own_cells[3]
    t = local(2026, 11, 2, 23, 50)
    return [(t + k * MINUTE, *c4.at(0.5, 0.5), 4.0, place.own_grid) for k in range(21)]


@pytest.fixture
def hall(engine):
    place = territory(engine)
    _, da = add_worker(engine, "PA01", place.own_grid, device="TA")
    _, db_ = add_worker(engine, "PB01", place.own_grid, device="TB")
    add_worker(engine, "PC01", place.own_grid, role="part_time")  # no terminal: not measured
    put_fixes(engine, da, _track_a(place))
    put_fixes(engine, db_, _track_b(place))
    set_schedule(engine, None, "PB01", [1], local(2026, 1, 1, 8, 0).time(),
                 local(2026, 1, 1, 23, 59).time())
    return place


def _by_worker(rep):
    return {w["worker"]: w for w in rep["workers"]}


def test_sessions_coverage_and_outside_time_on_a_hand_made_track(hall, db_url):
    rep = patrol_report(console_engine(db_url), MON, WED)  # as a console reads it
    a, b = _by_worker(rep)["PA01"], _by_worker(rep)["PB01"]
    assert "PC01" not in _by_worker(rep)
    mon, tue = a["days"]
    assert [(s["start"][11:16], s["end"][11:16], s["minutes"]) for s in mon["sessions"]] == [
        ("09:00", "09:30", 30.0), ("10:00", "10:50", 50.0), ("11:40", "11:55", 15.0),
        ("12:10", "12:45", 35.0)]
    assert mon["patrol_minutes"] == 130.0
    assert mon["patrols"] == 4
    assert mon["outside_minutes"] == 10.0
    assert mon["cells_visited"] == 3
    assert mon["cells"] == hall.n_own_cells
    assert mon["coverage"] == round(3 / hall.n_own_cells, 4)
    assert (tue["patrols"], tue["patrol_minutes"], tue["cells_visited"]) == (0, 0.0, 0)
    # One patrol a day, every day required (no schedule): Monday yes, Tuesday no.
    assert (mon["compliant"], tue["compliant"]) == (True, False)
    assert (a["compliant_days"], a["required_days"], a["compliant"]) == (1, 2, False)
    # B: ten minutes each side of midnight, two sessions; duty on Mondays only.
    bmon, btue = b["days"]
    assert [(s["start"][11:16], s["end"][11:16]) for s in bmon["sessions"]] == [
        ("23:50", "00:00")]
    assert [(s["start"][11:16], s["end"][11:16]) for s in btue["sessions"]] == [
        ("00:00", "00:10")]
    assert (bmon["patrol_minutes"], btue["patrol_minutes"]) == (10.0, 10.0)
    assert (bmon["required"], btue["required"]) == (True, False)
    assert (b["compliant_days"], b["required_days"], b["compliant"]) == (1, 1, True)


def test_the_quanke_rule_and_a_configured_rule(hall, engine):
    a = _by_worker(patrol_report(engine, MON, TUE, rule=QUANKE))["PA01"]
    assert a["days"][0]["patrols"] == 0  # no session of two hours
    assert a["compliant"] is False
    three = QUANKE.with_changes(min_patrols=3, min_minutes=15, days_per_week=1)
    assert _by_worker(patrol_report(engine, MON, WED, rule=three))["PA01"]["compliant"]
    assert _by_worker(patrol_report(engine, MON, WED, rule=three))["PA01"]["days"][0][
        "patrols"] == 4
    sixteen = three.with_changes(min_minutes=16)  # 30, 50 and 35: the 15 is too short
    assert _by_worker(patrol_report(engine, MON, WED, rule=sixteen))["PA01"]["days"][0][
        "patrols"] == 3


def test_only_an_administrator_sets_a_schedule(hall, engine, db_url):
    console = console_engine(db_url)
    nine, five = local(2026, 1, 1, 9, 0).time(), local(2026, 1, 1, 17, 0).time()
    for who in ("dispatcher1", "leader1", "wall1"):
        actor = authenticate(console, who, PASSWORD, f"ws-{who}")
        with pytest.raises(Forbidden):
            set_schedule(console, actor, "PA01", [1, 2], nine, five)
    with console.begin() as conn, pytest.raises(DBAPIError):  # nor by hand
        conn.execute(text("INSERT INTO duty_schedule (worker_id, days, start_time, end_time) "
                          "SELECT id, '{1}', '09:00', '17:00' FROM worker WHERE code = 'PA01'"))
    a = _by_worker(patrol_report(engine, MON, WED))["PA01"]
    assert a["required_days"] == 2  # still no schedule
    admin = authenticate(console, "admin1", PASSWORD, "ws-admin1")
    set_schedule(console, admin, "PA01", [1], nine, five)
    a = _by_worker(patrol_report(engine, MON, WED))["PA01"]
    assert (a["required_days"], a["compliant"]) == (1, True)
    set_schedule(console, admin, "PA01", None)
    assert _by_worker(patrol_report(engine, MON, WED))["PA01"]["required_days"] == 2


def test_patrol_report_on_the_command_line(hall, db_url):
    out = cli(db_url, "patrol report --from 2026-11-02 --to 2026-11-04 --json "
                      "--min-patrols 3 --min-minutes 15", "x")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    a = _by_worker(rep)["PA01"]
    assert a["days"][0]["compliant"] and a["days"][0]["patrols"] == 4
    table = cli(db_url, "patrol report --from 2026-11-02 --to 2026-11-04", "x")
    assert table.returncode == 0 and "PA01" in table.stdout
    bad = cli(db_url, "patrol report --from 2026-11-04 --to 2026-11-02", "x")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    unknown = cli(db_url, "patrol report --from 2026-11-02 --to 2026-11-04 --street 999 "
                          "--lang en", "x")
    assert unknown.returncode == 2 and "Unknown street" in unknown.stderr
