"""The tables: the migration matches the models, the columns match the SQLAlchemy plugin's, and
both ways of creating the state table (Django 5.2+ and the raw DDL used on 4.2) give it the
composite primary key."""

from __future__ import annotations

import importlib

import pytest
from django.core.management import call_command
from django.db import connections

from meisa_sync_sqlalchemy.tables import outbox_tables
from tests.django.databases import on_database

migration = importlib.import_module("meisa_sync_django.migrations.0001_initial")


def test_the_migration_matches_the_models() -> None:
    call_command("makemigrations", "meisa_sync", "--check", "--dry-run", verbosity=0)


def _columns(alias: str, table: str) -> set[str]:
    connection = connections[alias]
    with connection.cursor() as cursor:
        return {c.name for c in connection.introspection.get_table_description(cursor, table)}


def _primary_key(alias: str, table: str) -> list[str]:
    connection = connections[alias]
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    (columns,) = [c["columns"] for c in constraints.values() if c["primary_key"]]
    return list(columns)


class _Schema:
    alias = "default"

    def test_the_columns_are_the_sqlalchemy_plugins(self) -> None:
        from sqlalchemy import MetaData

        tables = outbox_tables(MetaData())
        for table in (tables.outbox, tables.state):
            assert _columns(self.alias, table.name) == {c.name for c in table.columns}

    def test_the_state_table_has_the_composite_primary_key(self) -> None:
        assert _primary_key(self.alias, "meisa_sync_object_state") == ["model", "object_pk"]

    def test_the_django_4_2_ddl_makes_the_same_table(self) -> None:
        connection = connections[self.alias]
        expected = _columns(self.alias, "meisa_sync_object_state")
        with connection.schema_editor() as editor:
            migration._drop_state_table(None, editor)
            migration._create_state_table(None, editor)
        assert _columns(self.alias, "meisa_sync_object_state") == expected
        assert _primary_key(self.alias, "meisa_sync_object_state") == ["model", "object_pk"]


class TestSQLiteSchema(_Schema):
    pytestmark = on_database("default", transaction=True)
    alias = "default"


class TestPostgreSQLSchema(_Schema):
    pytestmark = on_database("postgres", transaction=True)
    alias = "postgres"


class TestMySQLSchema(_Schema):
    pytestmark = on_database("mysql", transaction=True)
    alias = "mysql"


pytestmark = pytest.mark.django_db
