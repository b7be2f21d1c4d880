"""Alembic autogenerate sees the outbox tables: the registration puts them on your MetaData."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata, produce_migrations, render_python_code
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.operations.ops import ModifyTableOps
from sqlalchemy import Engine, String, create_engine, inspect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from meisa_sync.mapping import ContactMapping, Field
from meisa_sync_sqlalchemy import SQLAlchemySync
from meisa_sync_sqlalchemy.tables import OUTBOX_TABLE, STATE_TABLE


class Base(DeclarativeBase):
    pass


class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))


class MemberMapping(ContactMapping):
    model = Member
    email = Field("email")
    external_id = Field("id")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sync(engine: Engine) -> Iterator[SQLAlchemySync]:
    sync = SQLAlchemySync(engine, [MemberMapping()], session_class=_Session)
    yield sync
    sync.close()


class _Session(Session):  # this file's own, so its listeners watch no other test's sessions
    pass


def added_tables(diffs: list[Any]) -> set[str]:
    return {diff[1].name for diff in diffs if diff[0] == "add_table"}


def test_the_tables_join_the_models_metadata(sync: SQLAlchemySync) -> None:
    assert sync.metadata is Base.metadata
    assert {OUTBOX_TABLE, STATE_TABLE} <= set(Base.metadata.tables)


def test_autogenerate_creates_the_tables_and_then_sees_no_difference(
    sync: SQLAlchemySync, engine: Engine
) -> None:
    with engine.begin() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert added_tables(compare_metadata(context, Base.metadata)) == {
            "members",
            OUTBOX_TABLE,
            STATE_TABLE,
        }
        migration = produce_migrations(context, Base.metadata)
        assert migration.upgrade_ops is not None
        code = render_python_code(migration.upgrade_ops)
        assert f"op.create_table('{OUTBOX_TABLE}'" in code
        assert "op.create_index('meisa_sync_outbox_due_idx'" in code
        # Run the generated operations, as `alembic upgrade head` would.
        operations = Operations(context)
        for operation in migration.upgrade_ops.ops:
            # Index creations come grouped per table; run what each group holds.
            for step in operation.ops if isinstance(operation, ModifyTableOps) else [operation]:
                operations.invoke(step)

    with engine.begin() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    indexes = {index["name"] for index in inspect(engine).get_indexes(OUTBOX_TABLE)}
    assert {"meisa_sync_outbox_due_idx", "meisa_sync_outbox_object_idx"} <= indexes


def test_create_tables_for_projects_without_alembic(sync: SQLAlchemySync, engine: Engine) -> None:
    sync.create_tables()
    sync.create_tables()  # idempotent
    assert {OUTBOX_TABLE, STATE_TABLE} <= set(inspect(engine).get_table_names())
    assert "members" not in inspect(engine).get_table_names()  # your tables stay yours
