"""Migrations: applied on start, refused when the schema is newer than the console."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from db import migrate
from db.errors import SchemaError
from db.models import Base


def test_migrated_schema_has_every_model_table_and_the_partitioned_positions(engine):
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    with engine.connect() as conn:
        kind = conn.execute(
            text("SELECT relkind FROM pg_class WHERE relname = 'positions'")
        ).scalar_one()
        part = conn.execute(text("SELECT ensure_position_partition(current_date)")).scalar_one()
        conn.execute(
            text("INSERT INTO positions (device_id, ts, lon, lat) VALUES (1, now(), 116.4, 39.9)")
        )
        where = conn.execute(text("SELECT tableoid::regclass::text FROM positions")).scalar_one()
    assert kind == "p"  # partitioned table
    assert where == part


def test_models_and_migrations_agree(engine):
    """Autogenerate finds nothing to add: the migration is the model."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    # positions is created by hand (partitioned), its indexes too; everything else must match.
    diff = [d for d in diff if not (d[0] == "remove_table" and d[1].name.startswith("positions"))
            and not (d[0] == "remove_index" and d[1].table.name.startswith("positions"))]
    assert diff == []


def test_newer_schema_is_refused_with_a_clear_message(engine):
    assert migrate.check_schema(engine) == migrate.head_revision()
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(SchemaError) as err:
        migrate.check_schema(engine)
    assert "9999_future" in err.value.zh and "upgrade the console" in err.value.en
    with pytest.raises(SchemaError):
        migrate.upgrade(engine)


def test_upgrade_on_an_empty_database(pg_server):
    from db.engine import make_engine

    url = pg_server.create("t_empty_upgrade")
    try:
        eng = make_engine(url)
        assert migrate.current_revision(eng) is None
        assert migrate.upgrade(eng) == migrate.head_revision()
        assert migrate.upgrade(eng) == migrate.head_revision()  # idempotent
        eng.dispose()
    finally:
        pg_server.drop("t_empty_upgrade")
