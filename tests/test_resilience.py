"""Lost connections: actions retry safely, or fail with a clear message and no change."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from db.case_actions import perform
from db.engine import make_engine
from db.errors import Unavailable
from tests.flows import REPORT, case_in, report, step


def _kill_app_connections(pg_server, engine) -> int:
    admin = pg_server.admin()
    with admin.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (engine.url.database,),
        )
        killed = cur.fetchone()[0]
    admin.close()
    return killed


def test_action_after_pooled_connections_died_is_retried_once(engine, actors, pg_server):
    case = case_in(engine, actors, "filed")
    # Fill the pool with several connections, then kill them all (as a restart would).
    conns = [engine.connect() for _ in range(3)]
    for c in conns:
        c.execute(text("SELECT 1"))
        c.close()
    assert _kill_app_connections(pg_server, engine) >= 1
    result = step(engine, actors, case, "dispatch")
    assert result.status == "dispatched" and result.version == case.version + 1
    with engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM case_log WHERE case_id = :i"), {"i": result.case_id}
        ).scalar_one()
    assert n == result.version  # applied exactly once


def test_report_after_connections_died_is_stored_once(engine, actors, pg_server):
    report(engine, actors)
    _kill_app_connections(pg_server, engine)
    result = report(engine, actors)
    with engine.connect() as conn:
        count = conn.execute(text('SELECT count(*) FROM "case"')).scalar_one()
    assert count == 2 and result.version == 1


def test_unreachable_server_is_unavailable_not_a_trace(actors):
    dead = make_engine("postgresql+psycopg2://grid@127.0.0.1:1/grid")
    with pytest.raises(Unavailable) as err:
        perform(dead, actors["intake1"], "report", **REPORT)
    assert "数据库暂时不可用" in err.value.zh and "nothing was changed" in err.value.en
    dead.dispose()
