"""Live reports credit their grid worker: the ranking by worker counts live cases too.

docs/DOMAIN.md, Evaluation: "by worker, the grid worker who reported it (reported and
filed counts)".  A report names its worker (``worker``, with the grid worker's source
only); the database lets a console set ``case.reporter_worker_id`` on the new case and
refuses any later change of it.  Expected figures are counted by hand below.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db.case_actions import perform
from db.clock import hall_timezone
from db.errors import BadInput
from db.users import add_user, authenticate
from tests.cli_runner import cli, main_py
from tests.conftest import PASSWORD, table_counts
from tests.flows import REPORT, step
from tests.kpi_support import console_engine

# code, name, active
WORKERS = [("W1", "张巡查", True), ("W2", "李巡查", True), ("WX", "王离职", False)]


@pytest.fixture
def workers(engine) -> dict[str, int]:
    """Three roster entries (one retired), as the owner enters them."""
    ids = {}
    with engine.begin() as conn:
        for code, name, active in WORKERS:
            ids[code] = conn.execute(
                text("INSERT INTO worker (code, name, active) VALUES (:c, :n, :a) RETURNING id"),
                {"c": code, "n": name, "a": active},
            ).scalar_one()
    return ids


def reporter_of(engine, number: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(text('SELECT reporter_worker_id FROM "case" WHERE number = :n'),
                            {"n": number}).scalar_one()


def period() -> tuple[str, str]:
    """Yesterday to the day after tomorrow in the hall's zone: today's reports are in it
    whatever the hour (a test run across midnight included)."""
    today = datetime.now(hall_timezone()).date()
    return str(today - timedelta(days=1)), str(today + timedelta(days=2))


def report_line(extra: str) -> str:
    return (f"case act - report --user intake1 --category {REPORT['category']} "
            f"--lon {REPORT['lon']} --lat {REPORT['lat']} --description 路边暴露垃圾 {extra}")


def test_live_reports_rank_under_their_worker(engine, db_url, actors, workers):
    """W1: a case reported from the CLI and filed, one only reported; W2: one reported
    with the default source (the grid worker's); one case names nobody."""
    console = console_engine(db_url)
    try:
        intake = authenticate(console, "intake1", PASSWORD, "ws-intake")  # a real session
        run = cli(db_url, report_line("--source patrol --worker W1 --json"), PASSWORD)
        assert run.returncode == 0, run.stderr
        a = json.loads(run.stdout)
        b = perform(console, intake, "report", **{**REPORT, "worker": "W1"})
        c = perform(console, intake, "report", **{k: v for k, v in REPORT.items()
                                                   if k != "source"}, worker="W2")
        d = perform(console, intake, "report", **REPORT)
    finally:
        console.dispose()
    assert reporter_of(engine, a["number"]) == workers["W1"]
    assert reporter_of(engine, b.number) == workers["W1"]
    assert reporter_of(engine, c.number) == workers["W2"]
    assert reporter_of(engine, d.number) is None
    with engine.connect() as conn:
        payload = conn.execute(text(
            "SELECT payload FROM case_log WHERE case_number = :n AND action = 'report'"),
            {"n": b.number}).scalar_one()
    assert payload["worker"] == "W1"  # the log says whom the case was credited to
    # Case A is accepted and filed (its first `file` is today).
    ra = perform(engine, actors["intake1"], "accept", a["number"], a["version"])
    step(engine, actors, ra, "file")

    start, end = period()
    run = main_py("kpi", "--from", start, "--to", end, "--by", "worker", "--json",
                  env={"GRID_DATABASE_URL": db_url, "GRID_TZ": "Asia/Shanghai"})
    assert run.returncode == 0, run.stderr
    rows = {r["key"]: r for r in json.loads(run.stdout)["rows"]}
    # Worked out by hand: W1 reported A and B, filed A; W2 reported C; WX nothing.
    assert (rows["W1"]["reported"], rows["W1"]["filed"]) == (2, 1)
    assert (rows["W2"]["reported"], rows["W2"]["filed"]) == (1, 0)
    assert (rows["WX"]["reported"], rows["WX"]["filed"]) == (0, 0)
    assert rows["W1"]["name"] == "张巡查"
    # D names no worker: the district counts four reports, the workers three.
    run = main_py("kpi", "--from", start, "--to", end, "--json",
                  env={"GRID_DATABASE_URL": db_url, "GRID_TZ": "Asia/Shanghai"})
    (district,) = json.loads(run.stdout)["rows"]
    assert district["reported"] == 4


BAD = [
    ("--source patrol --worker NOPE", "未知网格员“NOPE”。", "Unknown worker 'NOPE'."),
    ("--source patrol --worker WX", "网格员“WX”已停用", "Worker 'WX' is inactive"),
    ("--source hotline --worker W1", "只有来源为“网格员巡查”", "goes only with the source"),
]


@pytest.mark.parametrize(("extra", "zh", "en"), BAD)
def test_bad_worker_is_one_line_and_changes_nothing(engine, db_url, workers, extra, zh, en):
    before = table_counts(engine)
    for lang, words in (("zh", zh), ("en", en)):
        run = cli(db_url, report_line(f"{extra} --lang {lang}"), PASSWORD)
        assert run.returncode == BadInput.exit_code, (run.stdout, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], run.stderr
        assert "Traceback" not in run.stderr
    assert table_counts(engine) == before


def test_service_refuses_the_same_before_touching_a_row(engine, actors, workers):
    before = table_counts(engine)
    for params in ({"worker": "NOPE"}, {"worker": "WX"}, {"worker": "W1", "source": "camera"},
                   {"worker": "W1\nW2"}, {"worker": "W" * 41}):
        with pytest.raises(BadInput):
            perform(engine, actors["intake1"], "report", **{**REPORT, **params})
    assert table_counts(engine) == before


def _console_update(console, user: str, action: str, case_id: int, assignment: str) -> None:
    """A console's own UPDATE of the case row, with a real session, around the services."""
    token = authenticate(console, user, PASSWORD, "ws-forger").token
    with console.begin() as conn:
        conn.execute(text("SELECT set_config('grid.session', :t, true), "
                          "set_config('grid.action', :a, true)"), {"t": token, "a": action})
        conn.execute(text(f'UPDATE "case" SET {assignment}, version = version + 1 '
                          "WHERE id = :i"), {"i": case_id})


@pytest.mark.parametrize("assignment", [
    "reporter_worker_id = (SELECT id FROM worker WHERE code = 'W2')",
    "reporter_worker_id = NULL",
])
@pytest.mark.parametrize(("user", "action"), [("leader1", "escalate"), ("intake1", "accept")])
def test_a_console_cannot_change_the_reporter_later(engine, db_url, workers, assignment,
                                                    user, action):
    console = console_engine(db_url)
    try:
        intake = authenticate(console, "intake1", PASSWORD, "ws-intake")
        r = perform(console, intake, "report", **{**REPORT, "worker": "W1"})
        extra = ", status = 'accepted'" if action == "accept" else ", escalation = 1"
        with pytest.raises(DBAPIError) as err:
            _console_update(console, user, action, r.case_id, assignment + extra)
    finally:
        console.dispose()
    assert "may not change reporter_worker_id" in str(err.value)
    assert reporter_of(engine, r.number) == workers["W1"]
    with engine.connect() as conn:
        assert conn.execute(text('SELECT version FROM "case" WHERE id = :i'),
                            {"i": r.case_id}).scalar_one() == 1


def test_report_dialog_offers_workers_only_for_the_grid_workers_source(qtbot):
    from widgets.action_dialog import ActionDialog, FormContext

    ctx = FormContext(
        categories=[{"code": "S0102", "name": "暴露垃圾", "name_en": "Exposed garbage",
                     "class_name": "市容环境", "department": "huanwei"}],
        workers=[{"code": "W1", "name": "张巡查", "grid_name": "东四1号网格"},
                 {"code": "W2", "name": "李巡查", "grid_name": None}],
    )
    dialog = ActionDialog("report", ctx)
    qtbot.addWidget(dialog)
    source, picker = dialog.widgets["source"], dialog.widgets["worker"]
    assert [picker.itemData(i) for i in range(picker.count())] == ["", "W1", "W2"]
    source.setCurrentIndex(source.findData("patrol"))
    assert dialog.form.isRowVisible(picker)
    picker.setCurrentIndex(picker.findData("W2"))
    assert dialog.params()["worker"] == "W2"
    source.setCurrentIndex(source.findData("hotline"))
    assert not dialog.form.isRowVisible(picker)
    assert "worker" not in dialog.params()  # another source names no reporting worker
    source.setCurrentIndex(source.findData("patrol"))
    picker.setCurrentIndex(0)
    assert "worker" not in dialog.params()


def test_simulated_patrol_reports_name_their_walker(engine, tmp_path):
    """The simulator's terminal (巡查终端) reports as the walker it picked."""
    from console.simulator import Simulator
    from db.territory import import_district
    from tests.kpi_support import boundary

    import_district(engine, boundary(tmp_path / "district.geojson"), crs="wgs84", cell_m=200,
                    streets=2, communities=2, grids=4)
    add_user(engine, "terminal", "intake", PASSWORD, "巡查终端", None)
    with engine.begin() as conn:
        for code, name in (("S1", "张巡查"), ("S2", "李巡查")):
            wid = conn.execute(text(
                "INSERT INTO worker (code, name, grid_id) VALUES (:c, :n, "
                "(SELECT grid_id FROM unit_cell WHERE NOT clipped ORDER BY code LIMIT 1)) "
                "RETURNING id"), {"c": code, "n": name}).scalar_one()
            conn.execute(text("INSERT INTO device (identifier, worker_id) VALUES (:d, :w)"),
                         {"d": f"dev-{code}", "w": wid})
    sim = Simulator(engine, speed=1.0, seed=3, operators=False, cases_per_day=0).load()
    assert {w.code for w in sim.walkers} == {"S1", "S2"}
    sim.cases_per_day = 86_400 * 4.0  # about four reports a simulated second
    for _ in range(50):
        sim.tick(1.0)
        if sim.stats.reports >= 3:
            break
    assert sim.stats.reports >= 3
    with engine.connect() as conn:
        rows = conn.execute(text(
            'SELECT c.reporter, w.name FROM "case" c JOIN worker w '
            "ON w.id = c.reporter_worker_id WHERE c.source = 'patrol'")).all()
        total = conn.execute(text('SELECT count(*) FROM "case"')).scalar_one()
    assert len(rows) == total == sim.stats.reports
    assert all(reporter == name for reporter, name in rows)  # the walker who found it
