"""The case log is append-only, whoever asks."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.flows import case_in

STATEMENTS = [
    "UPDATE case_log SET reason = 'rewritten'",
    "UPDATE case_log SET actor_name = '别人' WHERE seq = (SELECT min(seq) FROM case_log)",
    "DELETE FROM case_log",
    "DELETE FROM case_log WHERE seq = (SELECT max(seq) FROM case_log)",
    "TRUNCATE case_log CASCADE",
]


def _log(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT * FROM case_log ORDER BY seq")).all()


@pytest.mark.parametrize("statement", STATEMENTS)
def test_application_role_cannot_rewrite_the_log(engine, actors, statement):
    case_in(engine, actors, "dispatched")
    before = _log(engine)
    assert before
    with pytest.raises(DBAPIError) as err, engine.begin() as conn:
        conn.execute(text(statement))
    assert "append-only" in str(err.value)
    assert _log(engine) == before


def test_even_a_table_owner_without_superuser_cannot_rewrite(engine, actors, db_url):
    """A separate login role that owns nothing but has every table privilege."""
    case_in(engine, actors, "filed")
    before = _log(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP ROLE IF EXISTS grid_app_test"))
        conn.execute(text("CREATE ROLE grid_app_test LOGIN"))
        conn.execute(text("GRANT ALL ON ALL TABLES IN SCHEMA public TO grid_app_test"))
    try:
        for statement in STATEMENTS:
            with pytest.raises(DBAPIError), engine.begin() as conn:
                conn.execute(text("SET LOCAL ROLE grid_app_test"))
                conn.execute(text(statement))
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text("DELETE FROM case_log"))
        assert _log(engine) == before
    finally:
        with engine.begin() as conn:
            conn.execute(text("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM grid_app_test"))
            conn.execute(text("DROP ROLE grid_app_test"))
