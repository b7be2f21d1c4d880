"""``DjangoStore`` passes the store conformance suite on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import pytest

from meisa_sync_django.store import DjangoStore
from tests.core.store_contract import StoreContract
from tests.django.databases import on_database


class _DjangoStoreContract(StoreContract):
    alias = "default"

    @pytest.fixture
    def store(self) -> DjangoStore:
        return DjangoStore(self.alias)


class TestSQLiteStore(_DjangoStoreContract):
    pytestmark = on_database("default", transaction=True)
    alias = "default"


class TestPostgreSQLStore(_DjangoStoreContract):
    pytestmark = on_database("postgres", transaction=True)
    alias = "postgres"


class TestMySQLStore(_DjangoStoreContract):
    pytestmark = on_database("mysql", transaction=True)
    alias = "mysql"
