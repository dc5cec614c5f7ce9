"""No command line acts as a user without that user's password (issue 9, item 5).

The test database is a shared-server database (named by URL) and not the demo.
"""

from __future__ import annotations

from tests.cli_runner import main_py
from tests.conftest import PASSWORD


def _run(db_url: str, *args: str, **env):
    return main_py("--database-url", db_url, *args, env={"GRID_WORKSTATION": "t", **env})


def test_users_commands_need_an_administrators_login(db_url):
    for args in (
        ("users", "add", "mallory", "--role", "leader"),
        ("users", "list"),
        ("users", "disable", "leader1"),
        ("users", "enable", "leader1"),
    ):
        out = _run(db_url, *args, GRID_PASSWORD="mallory-pw")
        assert out.returncode == 4, (args, out.stderr)
        assert "管理员" in out.stderr and "Traceback" not in out.stderr
    wrong = _run(db_url, "users", "disable", "leader1", "--admin", "admin1",
                 GRID_ADMIN_PASSWORD="wrong-pw")
    assert wrong.returncode == 4


def test_a_password_change_needs_the_old_password_or_an_administrator(db_url):
    out = _run(db_url, "users", "passwd", "leader1", GRID_PASSWORD="wrong-pw",
               GRID_NEW_PASSWORD="new-pass-1")
    assert out.returncode == 4
    ok = _run(db_url, "users", "passwd", "leader1", GRID_PASSWORD=PASSWORD,
              GRID_NEW_PASSWORD="new-pass-1")
    assert ok.returncode == 0, ok.stderr
    act = _run(db_url, "case", "list", "--limit", "1")
    assert act.returncode == 0


def test_simulate_and_demo_seed_refuse_a_database_that_is_not_the_demo(db_url):
    sim = _run(db_url, "simulate", "--duration", "1")
    assert sim.returncode == 4 and "演示" in sim.stderr
    seed = _run(db_url, "demo", "seed", "--days", "1", "--per-day", "5")
    assert seed.returncode == 4 and "--force" in seed.stderr


def test_a_screenshot_as_a_user_needs_that_users_password(db_url, tmp_path):
    out = _run(db_url, "screenshot", str(tmp_path / "x.png"), "--user", "leader1",
               "--size", "400x300")
    assert out.returncode == 4 and "GRID_PASSWORD" in out.stderr
    assert not (tmp_path / "x.png").exists()


def test_acting_on_a_case_needs_the_users_password(db_url):
    out = _run(db_url, "case", "act", "-", "report", "--user", "intake1", "--category",
               "S0102", "--lon", "116.41", "--lat", "39.92", "--description", "x",
               GRID_PASSWORD="wrong-pw")
    assert out.returncode == 4 and "密码错误" in out.stderr
