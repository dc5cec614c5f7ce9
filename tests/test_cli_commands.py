"""The CLI commands nothing else runs: district import|list, grid locate, case
escalate-overdue, demo seed, db upgrade, and exit code 6.

Each is run as a user would (``python main.py --database-url … COMMAND``) on
the test's own database.  Expected values come from the README (what each
command does, the exit codes), DOMAIN (codes, the roster, time limits) and
sums done here: the area of a hand-made rectangle on the sphere, the
lattice cell a point falls in, which of three deadlines are past.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from db.clock import hall_timezone
from db.engine import make_engine
from tests.cli_runner import ROOT, cli
from tests.conftest import PASSWORD

R = 6371008.8  # mean Earth radius, metres
# A rectangle of about 1.0 km × 0.67 km in WGS-84, inside Beijing (so GCJ-02 applies).
W, E, S, N = 116.400, 116.412, 39.900, 39.906
ADCODE = "999001"


def run(db_url: str, line: str, password: str = PASSWORD):
    return cli(db_url, line, password)


def ok_json(db_url: str, line: str):
    out = run(db_url, line)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    return json.loads(out.stdout)


def rectangle_km2() -> float:
    """Area of the lon/lat rectangle on the sphere: R² · Δλ · (sin φ2 − sin φ1)."""
    return (
        R**2 * math.radians(E - W) * (math.sin(math.radians(N)) - math.sin(math.radians(S))) / 1e6
    )


def write_rectangle(tmp_path: Path) -> Path:
    ring = [[W, S], [E, S], [E, N], [W, N], [W, S]]
    path = tmp_path / "rect.geojson"
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    return path


# --- district import | list, grid locate ------------------------------------------------


@pytest.fixture
def imported(db_url, tmp_path):
    path = write_rectangle(tmp_path)
    summary = ok_json(
        db_url,
        f"district import {path} --crs wgs84 --cell 100 --streets 2 --communities 4 "
        f"--grids 8 --adcode {ADCODE} --name 测试区 --json",
    )
    return path, summary


def test_district_import_builds_what_was_asked_and_list_shows_it(db_url, imported, tmp_path):
    path, summary = imported
    area = rectangle_km2()
    assert 0.66 < area < 0.70  # ≈ 1.024 km × 0.667 km, worked out by hand
    assert summary["adcode"] == ADCODE and summary["name"] == "测试区"
    assert abs(summary["area_km2"] - area) / area < 0.005
    counts = summary["counts"]
    assert (counts["streets"], counts["communities"], counts["grids"]) == (2, 4, 8)
    # ~100 m cells: at least area / (100 m)² of them, plus the clipped ones on the border.
    assert area / 0.01 <= counts["unit_cells"] <= area / 0.01 + 2 * (11 + 8)

    listed = ok_json(db_url, "district list --json")
    assert len(listed) == 1
    row = listed[0]
    assert (row["adcode"], row["name"], row["streets"], row["communities"], row["grids"]) == (
        ADCODE,
        "测试区",
        2,
        4,
        8,
    )
    assert row["unit_cells"] == counts["unit_cells"]
    plain = run(db_url, "district list")
    assert plain.returncode == 0 and plain.stdout.startswith(f"{ADCODE}\t测试区\t")
    assert "2/4/8" in plain.stdout

    # The cells add up to the district, and every code follows CJ/T 213.
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            cell_km2 = conn.execute(text("SELECT sum(area_m2) FROM unit_cell")).scalar_one() / 1e6
            codes = conn.execute(
                text(
                    "SELECT u.code AS cell, c.code AS community, s.code AS street "
                    "FROM unit_cell u JOIN community c ON c.id = u.community_id "
                    "JOIN street s ON s.id = c.street_id"
                )
            ).all()
            grid_codes = conn.execute(
                text("SELECT g.code, c.code FROM grid g JOIN community c ON c.id = g.community_id")
            ).all()
    finally:
        engine.dispose()
    assert abs(cell_km2 - area) / area < 0.005
    for r in codes:
        assert len(r.cell) == 15 and r.cell.isdigit()
        assert r.cell.startswith(r.community) and r.community.startswith(r.street)
        assert r.street.startswith(ADCODE) and len(r.street) == 9 and len(r.community) == 12
    for grid, community in grid_codes:
        assert grid.startswith(community) and len(grid) == 15

    # A second import of the same district needs --replace; with it, it is rebuilt.
    again = run(db_url, f"district import {path} --crs wgs84 --adcode {ADCODE} --grids 8")
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert ok_json(db_url, "district list --json") == listed  # unchanged
    replaced = ok_json(
        db_url,
        f"district import {path} --crs wgs84 --adcode {ADCODE} --name 测试区 --streets 1 "
        "--communities 2 --grids 4 --replace --json",
    )
    assert [replaced["counts"][k] for k in ("streets", "communities", "grids")] == [1, 2, 4]
    assert ok_json(db_url, "district list --json")[0]["grids"] == 4


@pytest.mark.parametrize(
    "content",
    [None, "{not json", json.dumps({"type": "Point", "coordinates": [116.4, 39.9]})],
    ids=["missing", "not-json", "not-a-polygon"],
)
def test_district_import_refuses_bad_files_in_one_line(db_url, tmp_path, content):
    path = tmp_path / "bad.geojson"
    if content is not None:
        path.write_text(content)
    out = run(db_url, f"district import {path} --crs wgs84 --adcode {ADCODE}")
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert ok_json(db_url, "district list --json") == []


def lattice(db_url: str) -> dict:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            d = conn.execute(
                text("SELECT origin_lon, origin_lat, dlon, dlat, n_cols, n_rows FROM district")
            ).one()
            cells = {
                (r.col, r.row): r.code
                for r in conn.execute(text("SELECT col, row, code FROM unit_cell"))
            }
    finally:
        engine.dispose()
    return {**d._mapping, "cells": cells}


def test_grid_locate_inside_on_lines_on_the_border_and_outside(db_url, imported):
    lat_ = lattice(db_url)
    ox, oy, dlon, dlat = lat_["origin_lon"], lat_["origin_lat"], lat_["dlon"], lat_["dlat"]

    def expected_cell(lon: float, lat: float) -> str:
        # The lattice: columns west→east from the origin, rows north→south.
        return lat_["cells"][(math.floor((lon - ox) / dlon), math.floor((oy - lat) / dlat))]

    centre = ((W + E) / 2, (S + N) / 2)
    inside = ok_json(db_url, f"grid locate {centre[0]} {centre[1]} --json")
    assert inside["inside"] is True
    assert inside["cell"] == expected_cell(*centre)
    assert inside["district"] == {"code": ADCODE, "name": "测试区"}
    assert inside["cell"].startswith(inside["community"]["code"])
    assert inside["grid"]["code"].startswith(inside["community"]["code"])
    assert inside["community"]["code"].startswith(inside["street"]["code"])

    # Plain output: cell, grid, community, street.
    plain = run(db_url, f"grid locate {centre[0]} {centre[1]}")
    assert plain.returncode == 0
    fields = plain.stdout.strip().split("\t")
    assert fields[0] == inside["cell"] and fields[1].startswith(inside["grid"]["code"])
    assert fields[2:] == [inside["community"]["name"], inside["street"]["name"]]

    # A point on the line between two cells belongs to the one east of it, and on a
    # line between rows to the one south of it (README).
    k, j = 4, 3  # an inner vertical and horizontal line of the lattice
    on_vertical = (ox + k * dlon, oy - (j + 0.5) * dlat)
    on_horizontal = (ox + (k + 0.5) * dlon, oy - j * dlat)
    assert (
        ok_json(db_url, "grid locate {} {} --json".format(*on_vertical))["cell"]
        == (lat_["cells"][(k, j)])
    )
    assert (
        ok_json(db_url, "grid locate {} {} --json".format(*on_horizontal))["cell"]
        == (lat_["cells"][(k, j)])
    )

    # On the border: inside, on every side (there is no cell east or south of the
    # east and south borders, and still the point is the district's).
    for lon, lat in ((W, centre[1]), (E, centre[1]), (centre[0], N), (centre[0], S), (E, S)):
        got = ok_json(db_url, f"grid locate {lon} {lat} --json")
        assert got["inside"] is True, (lon, lat)

    # Outside: a plain answer, exit 0.
    outside = ok_json(db_url, f"grid locate {E + 0.01} {centre[1]} --json")
    assert outside["inside"] is False and outside["message"] == "该点不在任何已导入的辖区内。"
    plain_out = run(db_url, f"grid locate {E + 0.01} {centre[1]}")
    assert plain_out.returncode == 0 and plain_out.stdout.strip() == "该点不在任何已导入的辖区内。"

    # Out of range: bad input, exit 2.
    bad = run(db_url, "grid locate 200 39.9 --json")
    assert bad.returncode == 2 and bad.stderr.strip() == "经纬度超出范围。"


def test_grid_locate_takes_gcj02(db_url, imported):
    from maps.coords import wgs84_to_gcj02

    centre = ((W + E) / 2, (S + N) / 2)
    want = ok_json(db_url, f"grid locate {centre[0]} {centre[1]} --json")
    glon, glat = wgs84_to_gcj02(*centre)
    # GCJ-02 is offset by hundreds of metres in Beijing: the raw numbers would miss.
    assert ok_json(db_url, f"grid locate {glon} {glat} --json").get("cell") != want["cell"]
    got = ok_json(db_url, f"grid locate {glon} {glat} --crs gcj02 --json")
    assert got["cell"] == want["cell"]
    assert got["wgs84"] == pytest.approx(list(centre), abs=1e-5)


def test_grid_locate_before_any_import_says_so(db_url):
    out = ok_json(db_url, "grid locate 116.4 39.9 --json")
    assert out == {
        "inside": False,
        "wgs84": [116.4, 39.9],
        "message": "尚未导入任何辖区。",
        "message_en": "No district has been imported yet.",
    }


# --- case escalate-overdue ----------------------------------------------------------------


def test_escalate_overdue_yellow_when_overdue_red_at_twice_the_limit(db_url, engine, actors):
    from tests.flows import case_in

    fresh = case_in(engine, actors, "filed")  # inside its limit
    late = case_in(engine, actors, "filed")  # overdue, not yet twice the limit
    very_late = case_in(engine, actors, "filed")  # past twice the limit
    closed = case_in(engine, actors, "closed")  # not open: never escalated
    with engine.begin() as conn:
        # Stage limit 10 h each; elapsed 5 h, 11 h, 21 h.
        for made, started_h in ((fresh, 5), (late, 11), (very_late, 21), (closed, 21)):
            conn.execute(
                text(
                    'UPDATE "case" SET stage_started_at = now() - make_interval(hours => :s), '
                    "stage_due_at = now() - make_interval(hours => :s) + interval '10 hours' "
                    "WHERE id = :i"
                ),
                {"s": started_h, "i": made.case_id},
            )
    out = run(db_url, "case escalate-overdue")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "escalated 2 case(s)"
    with engine.connect() as conn:
        levels = dict(conn.execute(text('SELECT number, escalation FROM "case"')).all())
        log = conn.execute(
            text(
                "SELECT case_number, actor_name, actor_role, payload FROM case_log "
                "WHERE actor_role = 'system' ORDER BY seq"
            )
        ).all()
    assert levels[fresh.number] == 0 and levels[closed.number] == 0
    assert levels[late.number] == 1  # 督办
    assert levels[very_late.number] == 2  # 挂牌督办
    # One automatic entry each, by the built-in system identity, in every timeline.
    assert sorted(r.case_number for r in log) == sorted([late.number, very_late.number])
    # Run again: nothing more to do (idempotent, several consoles may run it).
    again = run(db_url, "case escalate-overdue")
    assert again.returncode == 0 and again.stdout.strip() == "escalated 0 case(s)"
    shown = ok_json(db_url, f"case show {very_late.number} --json")
    assert shown["escalation"] == 2


# --- demo seed ---------------------------------------------------------------------------


def test_demo_seed_with_small_parameters(db_url):
    days, per_day = 3, 20
    # A shared server's database is seeded only when its owner forces it (README).
    refused = run(db_url, f"demo seed --days {days} --per-day {per_day}")
    assert refused.returncode == 4 and "--force" in refused.stderr
    out = run(db_url, f"demo seed --force --days {days} --per-day {per_day} --json")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    # The district: Dongcheng, about 590 grids; one full-time worker with a terminal per
    # grid, a roster of instructor, grid leader, full-time and ten part-time (DOMAIN); 60
    # cameras; one login per role (README).
    assert s["adcode"] == "110101"
    assert 560 <= s["grids"] <= 620
    assert s["devices"] == s["grids"] and s["workers"] == 13 * s["grids"]
    assert s["cameras"] == 60
    roles = ["intake", "dispatcher", "department", "verifier", "leader", "admin", "wall"]
    assert [(u["name"], u["role"], u["password"]) for u in s["users"]] == [
        (r, r, f"demo-{r}") for r in roles
    ]
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            reported = conn.execute(text('SELECT reported_at FROM "case"')).scalars().all()
            now = conn.execute(text("SELECT now()")).scalar_one()
            streets, communities = conn.execute(
                text("SELECT (SELECT count(*) FROM street), (SELECT count(*) FROM community)")
            ).one()
    finally:
        engine.dispose()
    assert (streets, communities) == (17, 205)
    assert s["cases"] == len(reported)
    # The history covers the last ``days`` days in the hall's time zone, up to now, about
    # ``per_day`` a day (every full day within ±30 %), and nothing in the future.
    tz = hall_timezone()
    today = now.astimezone(tz).date()
    by_day: dict = {}
    for t in reported:
        by_day.setdefault(t.astimezone(tz).date(), 0)
        by_day[t.astimezone(tz).date()] += 1
    assert set(by_day) <= {today - timedelta(days=d) for d in range(days)}
    assert max(reported) <= now
    for d in range(1, days):  # the full days before today
        assert 0.7 * per_day <= by_day.get(today - timedelta(days=d), 0) <= 1.3 * per_day
    assert by_day.get(today, 0) <= 1.3 * per_day
    assert sum(s["by_status"].values()) == s["cases"] and s["log_entries"] >= s["cases"]

    # The demo logins work, with the passwords printed.
    login = cli(
        db_url,
        "case act - report --user intake --category S0102 --lon 116.417 "
        "--lat 39.928 --description 演示登录 --json",
        "demo-intake",
    )
    assert login.returncode == 0, login.stderr
    # A second seed is refused: the demo goes only into an empty database.
    second = run(db_url, "demo seed --force --days 1 --per-day 5")
    assert second.returncode == 2 and "空库" in second.stderr
    assert "Traceback" not in second.stderr


@pytest.mark.parametrize(
    "line", ["demo seed --days 0", "demo seed --per-day 0", "demo seed --days 400"]
)
def test_demo_seed_refuses_out_of_range_parameters(db_url, line):
    out = run(db_url, line)
    assert out.returncode == 2 and "天数须为 1–366" in out.stderr


# --- db upgrade and exit code 6 ---------------------------------------------------------


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "db" / "migrations"))
    return ScriptDirectory.from_config(cfg).get_current_head()


def test_db_upgrade_on_an_empty_database(pg_server):
    name = "t_cli_db_upgrade"
    url = pg_server.create(name)
    try:
        out = run(url, "db upgrade")
        assert out.returncode == 0, out.stderr
        head = head_revision()
        assert out.stdout.startswith(f"schema at {head} ")
        status = ok_json(url, "db status --json")
        assert status["schema"] == status["schema_head"] == head
        assert status["categories"] > 40  # reference data loaded with it
        # Again: nothing to do, same answer.
        again = run(url, "db upgrade")
        assert again.returncode == 0 and again.stdout.startswith(f"schema at {head} ")
    finally:
        pg_server.drop(name)


def test_db_upgrade_brings_an_older_schema_to_head(pg_server):
    from db import migrate

    name = "t_cli_db_upgrade_old"
    url = pg_server.create(name)
    try:
        engine = make_engine(url)
        migrate.upgrade(engine, "0002")  # as an older console left it
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
        engine.dispose()
        # A console refuses the older schema too (exit 6), and says what to run.
        old = run(url, "case list")
        assert old.returncode == 6 and "db upgrade" in old.stderr and "0002" in old.stderr
        out = run(url, "db upgrade")
        assert out.returncode == 0, out.stderr
        assert ok_json(url, "db status --json")["schema"] == head_revision()
        assert run(url, "case list --json").returncode == 0
    finally:
        pg_server.drop(name)


@pytest.fixture
def future_db(db_url):
    """The test database as a newer console left it: an alembic revision this one lacks."""
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    yield db_url, engine
    engine.dispose()


@pytest.mark.parametrize(
    "line",
    [
        "case list",
        "db status",
        "db upgrade",
        "users list --as-owner",
        "district list",
        "case escalate-overdue",
        "grid locate 116.4 39.9",
        "demo seed --force --days 1 --per-day 5",
        "case act - report --user intake1 --category S0102 --lon 116.41 --lat 39.92 "
        "--description 路边垃圾",
    ],
)
def test_a_newer_schema_exits_6_and_changes_nothing(future_db, line):
    db_url, engine = future_db
    out = run(db_url, line)
    assert out.returncode == 6, (line, out.returncode, out.stderr)
    assert "9999_future" in out.stderr and "比本程序新" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
            "9999_future"
        )
        assert conn.execute(text('SELECT count(*) FROM "case"')).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM worker")).scalar() == 0


def test_a_newer_schema_message_in_english_and_for_the_screenshot(future_db, tmp_path):
    db_url, _ = future_db
    out = run(db_url, "--lang en case list")
    assert out.returncode == 6 and "newer than this console" in out.stderr
    shot = tmp_path / "shot.png"
    out = run(db_url, f"screenshot {shot} --view console --user dispatcher1 --size 800x600")
    assert out.returncode == 6, out.stderr
    assert "9999_future" in out.stderr and not shot.exists()


def test_db_upgrade_puts_the_evaluation_rollup_in_the_halls_zone(db_url, engine):
    """A hall in Ürümqi: the rollup was built in Shanghai's days, so every report took
    the slow path without a word.  ``db upgrade`` with its GRID_TZ rebuilds it, once."""
    from db.kpi_rollup import zone

    assert zone(engine) == "Asia/Shanghai"
    out = cli(db_url, "db upgrade", PASSWORD, GRID_TZ="Asia/Urumqi")
    assert out.returncode == 0, out.stderr
    assert "evaluation rollup rebuilt for Asia/Urumqi" in out.stdout
    assert zone(engine) == "Asia/Urumqi"
    again = cli(db_url, "db upgrade", PASSWORD, GRID_TZ="Asia/Urumqi")
    assert again.returncode == 0 and "rollup" not in again.stdout
