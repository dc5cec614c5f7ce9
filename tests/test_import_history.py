"""``case import``: legacy history loads line by line; a broken line is refused with its
number and reason, the rest loads; a second import changes nothing; only the owner imports.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from db.audit import verify
from db.errors import Forbidden
from db.history_import import import_history
from tests.cli_runner import main_py
from tests.conftest import PASSWORD, table_counts
from tests.kpi_support import NUMBERS, cases, console_engine, setup_hall, write_history

# The refused lines and a word of the reason each must give (BAD_LINES in kpi_support).
REFUSED = {
    3: ("不是有效的 JSON", "Not valid JSON"),
    6: ("角色“intake”无权执行此操作", "the intake role may not take it"),
    9: ("时间早于上一步", "before the previous step"),
    12: ("不在辖区内", "outside the territory"),
    14: ("不能执行", "does not apply"),
}


@pytest.fixture
def hall(engine, tmp_path):
    setup_hall(engine, tmp_path)
    return write_history(tmp_path / "history.jsonl")


def test_good_lines_load_and_each_broken_line_is_refused_with_its_number(engine, hall):
    summary = import_history(engine, hall)
    assert summary.lines == 16
    assert summary.loaded == 11
    assert summary.events == sum(len(c["events"]) for c in cases())
    assert [r.line for r in summary.refused] == sorted(REFUSED)
    for r in summary.refused:
        zh, en = REFUSED[r.line]
        assert zh in r.message("zh") and r.message("zh").startswith(f"第 {r.line} 行")
        assert en in r.message("en") and r.message("en").startswith(f"line {r.line}: ")
    with engine.connect() as conn:
        rows = conn.execute(text(
            'SELECT number, status, imported, version FROM "case" ORDER BY number')).all()
        log = conn.execute(text(
            "SELECT case_number, action, actor_id, actor_name, actor_role, at, workstation "
            "FROM case_log ORDER BY seq")).all()
        due = dict(conn.execute(text(
            "SELECT c.number, i.due_close FROM case_import i JOIN \"case\" c ON c.id = i.case_id"
        )).all())
    assert sorted(r.number for r in rows) == sorted(NUMBERS)  # their own numbers
    assert all(r.imported for r in rows)
    status = {r.number: r.status for r in rows}
    # the lifecycle replayed: closed, archived, open in the right place, rejected
    assert status == {"C1": "archived", "C2": "closed", "C3": "closed", "C4": "closed",
                      "C5": "in_progress", "C6": "closed", "C7": "closed", "C8": "rejected",
                      "C9": "filed", "C10": "in_progress", "C12": "closed"}
    versions = {r.number: r.version for r in rows}
    assert versions == {c["number"]: len(c["events"]) for c in cases()}
    # the file's actors and times are kept (not this system's users, not now)
    c3 = [e for e in log if e.case_number == "C3"]
    assert [e.action for e in c3] == ["report", "accept", "file", "dispatch", "return",
                                      "dispatch", "acknowledge", "feedback", "verify_pass"]
    assert c3[4].actor_name == "园林所" and c3[4].actor_role == "department"
    assert all(e.actor_id is None for e in log)
    assert c3[2].at.isoformat() == "2025-03-02T16:30:00+00:00"
    assert all(e.workstation == "import:history.jsonl" for e in log)
    assert due["C1"].isoformat() == "2025-03-05T00:30:00+00:00"  # 08:30 +08:00
    assert due["C5"] is None  # no deadlines in the file: from the time limits
    # and the log's chain holds across the imported entries
    assert verify(engine, 0, None).ok


def test_a_second_import_of_the_same_file_changes_nothing(engine, hall):
    import_history(engine, hall)
    before = table_counts(engine)
    again = import_history(engine, hall)
    assert again.loaded == 0
    assert sorted(again.present) == sorted(NUMBERS)
    assert [r.line for r in again.refused] == sorted(REFUSED)  # still broken, still refused
    assert table_counts(engine) == before


def test_dry_run_checks_every_line_and_writes_nothing(engine, hall):
    before = table_counts(engine)
    summary = import_history(engine, hall, dry_run=True)
    assert summary.loaded == 11 and [r.line for r in summary.refused] == sorted(REFUSED)
    assert table_counts(engine) == before


def test_a_merge_may_point_to_a_case_earlier_in_the_same_file(engine, hall, tmp_path):
    first, second = cases()[0], dict(cases()[7])
    second.update(number="C1-DUP", events=[
        {"action": "report", "at": "2025-03-03T08:05:00+08:00", "actor": "张受理",
         "role": "intake"},
        {"action": "merge", "at": "2025-03-03T08:06:00+08:00", "actor": "张受理",
         "role": "intake", "into": "C1"},
    ])
    path = tmp_path / "merge.jsonl"
    path.write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in (first, second)),
                    encoding="utf-8")
    summary = import_history(engine, path)
    assert summary.loaded == 2 and not summary.refused
    with engine.connect() as conn:
        target = conn.execute(text(
            'SELECT t.number FROM "case" c JOIN "case" t ON t.id = c.merged_into_id '
            "WHERE c.number = 'C1-DUP'")).scalar_one()
    assert target == "C1"


def test_only_the_owner_imports(engine, db_url, hall):
    console = console_engine(db_url)
    try:
        with pytest.raises(Forbidden, match="owner's credentials"):
            import_history(console, hall)
    finally:
        console.dispose()
    assert table_counts(engine)["case"] == 0


def test_a_console_cannot_mark_a_case_imported(engine, db_url, tmp_path):
    """The 0006 guard: a console's new case is never imported history."""
    from db.case_actions import report
    from db.users import authenticate

    setup_hall(engine, tmp_path)
    console = console_engine(db_url)
    try:
        intake = authenticate(console, "intake1", PASSWORD, "ws-test")
        made = report(console, intake, category="S0102", lon=116.404, lat=39.910,
                      description="路边暴露垃圾")
        with console.connect() as conn:
            imported = conn.execute(text('SELECT imported FROM "case" WHERE id = :i'),
                                    {"i": made.case_id}).scalar_one()
        assert imported is False
        with pytest.raises(Exception, match="only the owner imports history"):
            with console.begin() as conn:
                conn.execute(text("SELECT set_config('grid.session', :t, true), "
                                  "set_config('grid.action', 'report', true)"),
                             {"t": intake.token})
                conn.execute(text(
                    'INSERT INTO "case" (number, source, category_id, severity, lon, lat, '
                    "description, status, reported_at, stage_started_at, stage_due_at, version, "
                    "imported) SELECT 'FAKE-1', 'patrol', c.id, 'normal', 116.404, 39.910, 'x', "
                    "'reported', now(), now(), grid_stage_due('reported', c.id, 'normal', now()), "
                    "1, true FROM category c WHERE c.code = 'S0102'"))
    finally:
        console.dispose()


def test_cli_import_prints_each_refused_line_and_exits_2(engine, db_url, hall):
    run = main_py("case", "import", str(hall), env={"GRID_DATABASE_URL": db_url})
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert [line.split("：")[0] for line in lines] == [f"第 {n} 行" for n in sorted(REFUSED)]
    assert "已导入 11 件" in run.stdout
    again = main_py("case", "import", str(hall), "--json", "--lang", "en",
                    env={"GRID_DATABASE_URL": db_url})
    assert again.returncode == 2
    answer = json.loads(again.stdout)
    assert answer["loaded"] == 0 and sorted(answer["present"]) == sorted(NUMBERS)
    assert again.stderr.splitlines()[0].startswith("line 3: Not valid JSON")
    assert "Traceback" not in run.stderr + again.stderr


def test_cli_import_of_a_missing_file_is_one_line(db_url, tmp_path):
    run = main_py("case", "import", str(tmp_path / "nope.jsonl"), "--lang", "en",
                  env={"GRID_DATABASE_URL": db_url})
    assert run.returncode == 2
    assert run.stderr.strip().startswith("No such file") and len(run.stderr.splitlines()) == 1
