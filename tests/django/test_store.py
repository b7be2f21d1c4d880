"""``DjangoStore`` passes the store conformance suite on SQLite, PostgreSQL and MariaDB.

Each test runs in a transaction rolled back afterwards, on a fake clock (leases expire without
sleeping); the threaded claim test needs committed rows, so it runs in a transactional class.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from meisa_sync_django.store import DjangoStore
from tests.core.store_contract import StoreContract
from tests.core.sync_helpers import FakeClock
from tests.django.databases import on_database


class _DjangoStoreContract(StoreContract):
    alias = "default"

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def store(self, clock: FakeClock) -> DjangoStore:
        return DjangoStore(self.alias, clock=clock)

    @pytest.fixture
    def advance(self, clock: FakeClock) -> Callable[[timedelta], None]:
        return clock.advance

    @pytest.fixture
    def now(self, clock: FakeClock) -> Callable[[], datetime]:
        return clock

    # Threads need committed rows: this one runs in the transactional classes below.
    test_concurrent_workers_never_hold_the_same_object = None  # type: ignore[assignment]


class _ThreadedClaims:
    alias = "default"

    @pytest.fixture
    def store(self) -> DjangoStore:
        return DjangoStore(self.alias)

    test_concurrent_workers_never_hold_the_same_object = (
        StoreContract.test_concurrent_workers_never_hold_the_same_object
    )


class TestSQLiteStore(_DjangoStoreContract):
    pytestmark = on_database("default")
    alias = "default"


class TestPostgreSQLStore(_DjangoStoreContract):
    pytestmark = on_database("postgres")
    alias = "postgres"


class TestMySQLStore(_DjangoStoreContract):
    pytestmark = on_database("mysql")
    alias = "mysql"


class TestSQLiteThreadedClaims(_ThreadedClaims):
    pytestmark = on_database("default", transaction=True)
    alias = "default"


class TestPostgreSQLThreadedClaims(_ThreadedClaims):
    pytestmark = on_database("postgres", transaction=True)
    alias = "postgres"


class TestMySQLThreadedClaims(_ThreadedClaims):
    pytestmark = on_database("mysql", transaction=True)
    alias = "mysql"
