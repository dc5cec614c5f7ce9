"""The gateway's own upkeep: terminals that fall silent go offline, old positions go away.

README (GPS gateway): "going offline and coming back become ``worker_event``
rows"; ``--offline-minutes 10`` is the silence before a terminal counts as
offline, ``--retention-days 90`` the days of positions kept.  The db-level
functions have tests of their own (``test_gateway_storage.py``); these run
them the way a hall does, inside a running gateway (its writer's timers and
its start-up), and through ``python main.py gateway`` with the flags.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from console.cli import build_parser
from console.config import Settings
from console.gateway.server import GatewayConfig
from db.errors import BadInput
from db.positions import PositionReport, store_positions
from tests.cli_runner import ROOT, main_py
from tests.conftest import PASSWORD, wait_for
from tests.gateway_support import Client, add_devices, running_gateway

OFFLINE_MINUTES = 0.05  # three seconds of silence, so the test need not wait ten minutes


def events(engine, kind: str | None = None) -> list:
    sql = (
        "SELECT d.identifier AS device, e.kind, e.at, e.worker_id, e.detail "
        "FROM worker_event e JOIN device d ON d.id = e.device_id"
    )
    params = {}
    if kind:
        sql += " WHERE e.kind = :k"
        params["k"] = kind
    with engine.connect() as conn:
        return conn.execute(text(sql + " ORDER BY e.id"), params).all()


def kinds_of(engine, device: str) -> list[str]:
    return [e.kind for e in events(engine) if e.device == device]


def send(gateway, device: str, lon: float = 116.41, lat: float = 39.92) -> None:
    client = Client(gateway.port)
    try:
        status, body = client.get(id=device, lat=lat, lon=lon, timestamp=int(time.time()))
    finally:
        client.close()
    assert status == 200, body
    assert gateway.wait_drained(10)


def test_silent_terminals_go_offline_once_per_silence_and_come_back(engine, tmp_path):
    with engine.begin() as conn:
        worker = conn.execute(
            text("INSERT INTO worker (code, name) VALUES ('W1', '张三') RETURNING id")
        ).scalar_one()
        conn.execute(
            text("INSERT INTO device (identifier, worker_id) VALUES ('w1', :w)"), {"w": worker}
        )
    add_devices(engine, ["w2"])
    with running_gateway(
        engine, tmp_path / "q", offline_minutes=OFFLINE_MINUTES, sweep_every=0.1
    ) as gw:
        send(gw, "w1")
        assert wait_for(lambda: kinds_of(engine, "w1") == ["offline"], timeout=30)
        # Then w2 reports and falls silent too; by the time it is offline the gateway
        # has swept many more times, and w1, still silent, was not reported again.
        send(gw, "w2")
        assert wait_for(lambda: kinds_of(engine, "w2") == ["offline"], timeout=30)
        assert kinds_of(engine, "w1") == ["offline"]
        # w1 comes back: online at once; silent again: offline again.
        send(gw, "w1")
        assert kinds_of(engine, "w1") == ["offline", "online"]
        assert wait_for(lambda: kinds_of(engine, "w1") == ["offline", "online", "offline"], 30)

    offline = [e for e in events(engine, "offline")]
    for e in offline:
        # Reported offline only after the silence the setting gives, never before.
        last = datetime.fromisoformat(e.detail["last_report"])
        assert e.at - last >= timedelta(minutes=OFFLINE_MINUTES)
    assert {e.worker_id for e in offline if e.device == "w1"} == {worker}


def _partitions(engine) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'positions'::regclass"
                )
            ).scalars()
        )


def _kept_days(engine) -> list[int]:
    """Ages in whole days of the positions stored (by their fix time)."""
    with engine.connect() as conn:
        ages = conn.execute(
            text("SELECT round(extract(epoch FROM now() - ts) / 86400)::int FROM positions")
        ).scalars()
        return sorted(ages)


def _partition_of(engine, ts: datetime) -> str:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT 'positions_' || to_char(CAST(:t AS timestamptz), 'YYYYMMDD')"), {"t": ts}
        ).scalar_one()


@pytest.fixture
def history(engine):
    """Device ``a`` with positions 40, 11, 9 days old and now, each in its day's partition,
    and two stray rows in the DEFAULT partition, 20 and 5 days old."""
    add_devices(engine, ["a"])
    now = datetime.now(UTC).replace(microsecond=0)
    stored = [PositionReport("a", now - timedelta(days=d), 116.41, 39.92) for d in (40, 11, 9, 0)]
    assert store_positions(engine, stored).stored == 4
    with engine.begin() as conn:
        for d in (20, 5):  # days without a partition of their own: they land in DEFAULT
            conn.execute(
                text(
                    "INSERT INTO positions (device_id, ts, lon, lat) "
                    "SELECT id, :ts, 116.41, 39.92 FROM device WHERE identifier = 'a'"
                ),
                {"ts": now - timedelta(days=d, hours=1)},
            )
    assert _kept_days(engine) == [0, 5, 9, 11, 20, 40]
    return now


def test_gateway_start_applies_retention(engine, tmp_path, history):
    now = history
    old, older = (
        _partition_of(engine, now - timedelta(days=11)),
        _partition_of(engine, now - timedelta(days=40)),
    )
    assert {old, older} <= _partitions(engine)
    with running_gateway(engine, tmp_path / "q", retention_days=10):
        # 10 days kept: the 11- and 40-day-old positions are gone (their day partitions
        # dropped), the 20-day-old stray too; 9 and 5 days old and today's stay.
        assert _kept_days(engine) == [0, 5, 9]
        assert old not in _partitions(engine) and older not in _partitions(engine)
        assert _partition_of(engine, now - timedelta(days=9)) in _partitions(engine)


def test_a_running_gateway_applies_retention_again_on_its_timer(engine, tmp_path, history):
    with running_gateway(engine, tmp_path / "q", retention_days=30, maintain_every=0.2):
        assert _kept_days(engine) == [0, 5, 9, 11, 20]  # 40 days is past 30
        # A late report of 35 days ago arrives (a terminal's backlog): stored, then
        # removed by the next upkeep, without a restart.
        late = datetime.now(UTC) - timedelta(days=35)
        assert store_positions(engine, [PositionReport("a", late, 116.41, 39.92)]).stored == 1
        assert wait_for(lambda: _kept_days(engine) == [0, 5, 9, 11, 20], timeout=30)


# --- the command and its settings ----------------------------------------------------------


def config_from(argv: list[str], tmp_path) -> GatewayConfig:
    args = build_parser().parse_args(["gateway", *argv])
    return GatewayConfig.from_args(Settings(data_dir=tmp_path), args)


def test_flags_then_environment_then_defaults(tmp_path, monkeypatch):
    for name in (
        "GRID_GATEWAY_RETENTION_DAYS",
        "GRID_GATEWAY_OFFLINE_MINUTES",
        "GRID_GATEWAY_MAX_BACKLOG",
    ):
        monkeypatch.delenv(name, raising=False)
    default = config_from([], tmp_path)
    assert (default.retention_days, default.offline_minutes, default.max_backlog) == (
        90,
        10,
        20_000,
    )  # README: --retention-days 90, --offline-minutes 10, --max-backlog 20000
    monkeypatch.setenv("GRID_GATEWAY_RETENTION_DAYS", "30")
    monkeypatch.setenv("GRID_GATEWAY_OFFLINE_MINUTES", "2.5")
    from_env = config_from([], tmp_path)
    assert (from_env.retention_days, from_env.offline_minutes) == (30, 2.5)
    flags = config_from(["--retention-days", "7", "--offline-minutes", "1.5"], tmp_path)
    assert (flags.retention_days, flags.offline_minutes) == (7, 1.5)
    assert config_from(["--retention-days", "1"], tmp_path).retention_days == 1


@pytest.mark.parametrize(
    "argv, env",
    [
        (["--retention-days", "0"], {}),
        (["--retention-days", "-3"], {}),
        (["--offline-minutes", "0"], {}),
        (["--offline-minutes", "-1"], {}),
        (["--offline-minutes", "nan"], {}),
        (["--max-backlog", "0"], {}),
        ([], {"GRID_GATEWAY_RETENTION_DAYS": "abc"}),
        ([], {"GRID_GATEWAY_OFFLINE_MINUTES": "-5"}),
    ],
)
def test_bad_settings_are_refused(tmp_path, monkeypatch, argv, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(BadInput):
        config_from(argv, tmp_path)


def _gateway_process(db_url: str, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "GRID_DATABASE_URL"}
    env.update(GRID_PASSWORD=PASSWORD, GRID_WORKSTATION="gateway-test")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--database-url", db_url, "gateway", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def test_the_gateway_command_applies_retention_days(db_url, engine, tmp_path, history):
    proc = _gateway_process(
        db_url, "--port", "0", "--queue-dir", str(tmp_path / "q"), "--retention-days", "10"
    )
    try:
        assert wait_for(
            lambda: _kept_days(engine) == [0, 5, 9] or proc.poll() is not None, timeout=90
        )
        assert proc.poll() is None, proc.communicate()[1]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert _kept_days(engine) == [0, 5, 9]


@pytest.mark.parametrize(
    "flag", ["--retention-days 0", "--retention-days -1", "--offline-minutes -2"]
)
def test_the_gateway_command_refuses_bad_settings_in_one_line(
    db_url, engine, history, flag, tmp_path
):
    out = main_py(
        "--database-url",
        db_url,
        "gateway",
        "--port",
        "0",
        "--queue-dir",
        str(tmp_path / "q"),
        *flag.split(),
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert _kept_days(engine) == [0, 5, 9, 11, 20, 40]  # nothing was touched
