"""What the store does differently on SQLite, PostgreSQL and MySQL/MariaDB.

- Transactions: SQLite runs every write in ``BEGIN IMMEDIATE`` (one writer at a time, waiting up
  to the busy timeout), so a claim can never interleave with another (on an engine whose listener
  already said ``BEGIN``, a write that changes nothing takes the lock); PostgreSQL and MySQL run at
  READ COMMITTED whatever the engine's default, so locking reads see the latest committed leases
  and MySQL takes no gap locks. Deadlocks and lock timeouts are retried.
- Row locks: ``FOR UPDATE SKIP LOCKED`` needs PostgreSQL, MySQL 8.0.1+ or MariaDB 10.6+.
- Inserts that ignore existing rows: ``ON CONFLICT DO NOTHING`` or ``INSERT IGNORE``.
- Timestamps: PostgreSQL keeps the zone; MySQL and SQLite keep naive UTC.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import Insert, Table, false, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from meisa_sync_sqlalchemy.exceptions import UnsupportedDatabaseError

__all__ = ["Backend"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

_SUPPORTED = ("sqlite", "postgresql", "mysql")
# deadlock_detected, serialization_failure, lock_not_available
_TRANSIENT_SQLSTATES = frozenset({"40P01", "40001", "55P03"})
# ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
_TRANSIENT_MYSQL_ERRORS = frozenset({1213, 1205})
_ATTEMPTS = 5


class Backend:
    """The engine plus the dialect-specific pieces of SQL the store needs."""

    def __init__(
        self, engine: Engine, *, write_lock_table: Table, busy_timeout: float = 30.0
    ) -> None:
        """``write_lock_table``: a table of the store's that a no-op UPDATE may name."""
        if engine.dialect.name not in _SUPPORTED:
            raise UnsupportedDatabaseError(
                f"meisa-sync's SQLAlchemy store supports SQLite, PostgreSQL and MySQL 8/MariaDB "
                f"10.6+, not {engine.dialect.name!r}"
            )
        self.engine = engine
        self.name = engine.dialect.name
        self._busy_timeout_ms = int(busy_timeout * 1000)
        first = write_lock_table.c[0]
        self._write_lock = update(write_lock_table).where(false()).values({first.name: first})
        self._claim_support_checked = False

    @property
    def single_writer(self) -> bool:
        """SQLite: writes are serialised by the database, so a claim needs no row locks."""
        return self.name == "sqlite"

    # -- transactions --------------------------------------------------------------------------

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection on which ``begin``/``commit`` delimit real transactions on every backend.

        PostgreSQL and MySQL run READ COMMITTED, even on an engine set to autocommit. SQLite's
        connection is put in autocommit mode so that ``begin`` can say ``BEGIN IMMEDIATE`` itself.
        """
        with self.engine.connect() as connection:
            if self.single_writer:
                connection.execution_options(isolation_level="AUTOCOMMIT")
                connection.exec_driver_sql(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            else:
                connection.execution_options(isolation_level="READ COMMITTED")
            try:
                yield connection
            except BaseException:
                self.rollback(connection)
                raise

    def begin(self, connection: Connection) -> None:
        """Start a write transaction (elsewhere than SQLite the next statement starts one)."""
        if not self.single_writer:
            return
        if not _sqlite_in_transaction(connection):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            # A deferred transaction is open already: an engine "begin" listener said BEGIN
            # (SQLAlchemy's recipe for SAVEPOINT on pysqlite), or sqlite3 runs with
            # autocommit=False. A write that changes nothing takes the write lock now, as
            # BEGIN IMMEDIATE would have.
            connection.execute(self._write_lock)

    def commit(self, connection: Connection) -> None:
        if self.single_writer:
            # The driver's own commit: it knows whether it (or a listener) opened the transaction.
            connection.connection.driver_connection.commit()  # type: ignore[union-attr]
        else:
            connection.commit()

    def rollback(self, connection: Connection) -> None:
        if self.single_writer:
            if _sqlite_in_transaction(connection):
                connection.connection.driver_connection.rollback()  # type: ignore[union-attr]
        else:
            connection.rollback()

    def run(self, work: Callable[[Connection], T], *, own_transactions: bool = False) -> T:
        """``work`` in one write transaction, run again if the database aborted it (deadlock).

        With ``own_transactions`` the work begins and commits on its connection itself.
        """
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self.connect() as connection:
                    if own_transactions:
                        return work(connection)
                    self.begin(connection)
                    result = work(connection)
                    self.commit(connection)
                    return result
            except DBAPIError as exc:
                if attempt == _ATTEMPTS or not self.is_transient(exc):
                    raise
                _log.debug("transaction aborted (%s), attempt %d; running it again", exc, attempt)
                time.sleep(random.uniform(0.005, 0.02) * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def read(self, work: Callable[[Connection], T]) -> T:
        """``work`` on a connection that only reads."""
        with self.engine.connect() as connection:
            return work(connection)

    def is_transient(self, exc: DBAPIError) -> bool:
        """A deadlock or lock timeout: the transaction was rolled back and may simply run again."""
        original: Any = exc.orig
        if self.name == "postgresql":
            return getattr(original, "sqlstate", None) in _TRANSIENT_SQLSTATES
        if self.name == "mysql":
            args: tuple[Any, ...] = getattr(original, "args", ())
            return bool(args) and args[0] in _TRANSIENT_MYSQL_ERRORS
        return False

    # -- SQL pieces ----------------------------------------------------------------------------

    def check_claim_support(self, connection: Connection) -> None:
        """Refuse MySQL before 8.0.1 and MariaDB before 10.6: they have no SKIP LOCKED."""
        if self._claim_support_checked or self.name != "mysql":
            return
        dialect: Any = connection.dialect
        version = tuple(dialect.server_version_info or ())
        mariadb = bool(getattr(dialect, "is_mariadb", False))
        minimum = (10, 6) if mariadb else (8, 0, 1)
        if version < minimum:
            product = "MariaDB" if mariadb else "MySQL"
            found = ".".join(str(part) for part in version)
            needed = ".".join(str(part) for part in minimum)
            raise UnsupportedDatabaseError(
                f"{product} {found} has no FOR UPDATE SKIP LOCKED, which the outbox claim needs; "
                f"use {product} {needed} or newer"
            )
        self._claim_support_checked = True

    def insert_ignoring_existing(self, table: Table) -> Insert:
        """An INSERT that silently skips rows whose primary key already exists."""
        if self.name == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        if self.name == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing()
        return insert(table).prefix_with("IGNORE")

    def to_db(self, when: datetime, *, name: str = "timestamp") -> datetime:
        """An aware datetime as this backend stores it (naive UTC except on PostgreSQL)."""
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"{name}: a timezone-aware datetime is required, got {when!r}")
        utc = when.astimezone(timezone.utc)
        return utc if self.name == "postgresql" else utc.replace(tzinfo=None)

    @staticmethod
    def from_db(when: datetime) -> datetime:
        """A stored timestamp as an aware UTC datetime."""
        if when.tzinfo is None:
            return when.replace(tzinfo=timezone.utc)
        return when.astimezone(timezone.utc)


def _sqlite_in_transaction(connection: Connection) -> bool:
    driver: Any = connection.connection.driver_connection
    return bool(getattr(driver, "in_transaction", False))
