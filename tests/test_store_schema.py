"""The schema: migrations match the models, and a wrong schema is refused."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from canary.errors import SchemaError
from canary.store.database import check_schema, connect, migrate
from canary.store.tables import Base


def test_migrations_match_the_models(migrated_url: str) -> None:
    engine = connect(migrated_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    check_schema(engine)


def test_unmigrated_database_is_refused(database_url: str) -> None:
    with pytest.raises(SchemaError, match="canary db upgrade"):
        check_schema(connect(database_url))


def test_database_migrated_by_a_newer_version_is_refused(migrated_url: str) -> None:
    engine = connect(migrated_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_future'"))
    with pytest.raises(SchemaError, match="newer version"):
        check_schema(engine)
    with pytest.raises(SchemaError, match="newer version"):
        migrate(engine)


def test_upgrade_twice_is_a_no_op(migrated_url: str) -> None:
    before, after = migrate(connect(migrated_url))
    assert before == after


@pytest.mark.postgres
def test_a_pooled_connection_the_server_dropped_while_idle_is_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PostgreSQL restart (or a proxy cutting idle connections) between two rounds
    costs no failed round: an idle pooled connection is checked before use."""
    from canary.store import database

    monkeypatch.setattr(database, "PING_IDLE_SECONDS", 0.0)
    engine = connect(postgres_url)
    try:
        with engine.connect() as connection:
            pid = connection.scalar(sa.text("SELECT pg_backend_pid()"))
        admin = connect(postgres_url)  # another pool: the server ends the idle connection
        with admin.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.dispose()
        with engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT 1")) == 1
    finally:
        engine.dispose()
