"""``DjangoStore`` passes the store conformance suite on SQLite, PostgreSQL and MariaDB.

Each test runs in a transaction rolled back afterwards, on a fake clock (leases expire without
sleeping); the threaded claim test needs committed rows, so it runs in a transactional class.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import OperationalError, connections

from meisa_sync.records import NewChange, ObjectKey
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


@on_database("postgres", transaction=True)[0]
@on_database("postgres", transaction=True)[1]
def test_a_claim_replaces_a_connection_the_server_dropped() -> None:
    connection = connections["postgres"]
    # A persistent connection, as a worker has with CONN_MAX_AGE set (with the default 0, every
    # claim opens a fresh one anyway).
    connection.close()
    connection.settings_dict["CONN_MAX_AGE"] = None
    try:
        _claim_after_the_server_dropped_the_connection(connection)
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = 0
        connection.close()


def _claim_after_the_server_dropped_the_connection(connection: Any) -> None:
    store = DjangoStore("postgres")
    store.enqueue([NewChange(ObjectKey("tests.User", "1"))])
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    # Another session ends ours, as a database restart or a failover would.
    other = connection.copy()
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()

    with pytest.raises(OperationalError):
        store.claim("w1", limit=1, lease=timedelta(seconds=60))
    (claimed,) = store.claim("w1", limit=1, lease=timedelta(seconds=60))
    assert claimed.key == ObjectKey("tests.User", "1")
