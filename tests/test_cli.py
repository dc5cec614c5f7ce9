"""The command line as a script sees it: output, JSON and exit codes."""

from __future__ import annotations

import json

import pytest

from tests.cli_runner import cli, main_py
from tests.conftest import PASSWORD


def run(db_url: str, line: str, password: str = PASSWORD):
    return cli(db_url, line, password)


def test_case_lifecycle_and_exit_codes(db_url):
    out = run(
        db_url,
        "case act - report --user intake1 --category S0102 --lon 116.41 "
        "--lat 39.92 --description 路边垃圾 --json",
    )
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    n = created["number"]
    assert created["status"] == "reported" and created["version"] == 1
    for action, version in [("accept", 1), ("file", 2)]:
        out = run(db_url, f"case act {n} {action} --user intake1 --expect-version {version}")
        assert out.returncode == 0, out.stderr
    ok = run(
        db_url,
        f"case act {n} dispatch --user dispatcher1 --expect-version 3 --department huanwei --json",
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["status"] == "dispatched"
    # The same action on the stale version: someone else changed the case.
    late = run(db_url, f"case act {n} dispatch --user dispatcher2 --expect-version 3")
    assert late.returncode == 3
    assert "已被 王伟 于" in late.stderr and "派遣" in late.stderr
    late_en = run(db_url, f"--lang en case act {n} dispatch --user dispatcher2 --expect-version 3")
    assert late_en.returncode == 3 and "already dispatched by 王伟 at" in late_en.stderr
    # The role may not do it.
    denied = run(db_url, f"case act {n} verify_pass --user dispatcher1 --expect-version 4")
    assert denied.returncode == 4 and "无权" in denied.stderr
    # Bad input: an unknown category, a step that does not apply now.
    bad = run(
        db_url,
        "case act - report --user intake1 --category NOPE --lon 116.41 --lat 39.92 --description x",
    )
    assert bad.returncode == 2 and "未知问题类别" in bad.stderr
    bad_state = run(db_url, f"case act {n} accept --user intake1 --expect-version 4")
    assert bad_state.returncode == 2 and "不能受理" in bad_state.stderr
    wrong_pw = run(
        db_url, f"case act {n} acknowledge --user dept_huanwei --expect-version 4", password="wrong"
    )
    assert wrong_pw.returncode == 4 and "密码错误" in wrong_pw.stderr
    # list and show agree with what happened.
    listed = json.loads(run(db_url, "case list --json").stdout)
    assert [c["number"] for c in listed] == [n]
    shown = json.loads(run(db_url, f"case show {n} --json").stdout)
    assert [e["action"] for e in shown["log"]] == ["report", "accept", "file", "dispatch"]
    assert shown["log"][-1]["workstation"] == "cli-test"


def test_users_add_and_db_commands(db_url):
    # Without an administrator's login nobody is added (issue 9: mallory).
    nobody = run(db_url, "users add mallory --role leader", password="mallory-pw")
    assert nobody.returncode == 4 and "管理员" in nobody.stderr
    not_admin = cli(db_url, "users add mallory --role leader --admin leader1", "mallory-pw",
                    GRID_ADMIN_PASSWORD=PASSWORD)
    assert not_admin.returncode == 4
    out = cli(db_url, "users add zhou --role verifier --display-name 周 --admin admin1",
              "s3cret-pw", GRID_ADMIN_PASSWORD=PASSWORD)
    assert out.returncode == 0, out.stderr
    listed = json.loads(
        cli(db_url, "users list --json --admin admin1", "", GRID_ADMIN_PASSWORD=PASSWORD).stdout
    )
    zhou = next(u for u in listed if u["name"] == "zhou")
    assert (zhou["display_name"], zhou["role"], zhou["active"]) == ("周", "verifier", True)
    assert "mallory" not in {u["name"] for u in listed}
    assert all("password_hash" not in u for u in listed)
    short = cli(db_url, "users add qian --role intake --admin admin1", "1",
                GRID_ADMIN_PASSWORD=PASSWORD)
    assert short.returncode == 2 and "至少" in short.stderr
    assert run(db_url, "db url").stdout.strip() == db_url
    status = json.loads(run(db_url, "db status --json").stdout)
    assert status["schema"] == status["schema_head"] and status["categories"] > 40


def test_unreachable_database_is_a_clear_message():
    out = run("postgresql+psycopg2://nobody@127.0.0.1:1/none", "case list")
    assert out.returncode == 5
    assert "无法连接数据库" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("line", ["case act 1 fly --user x", "nonsense"])
def test_usage_errors_exit_2(db_url, line):
    assert run(db_url, line).returncode == 2


def test_help_lists_the_commands():
    out = main_py("--help")
    assert out.returncode == 0
    for command in ("db", "users", "case", "screenshot"):
        assert command in out.stdout
