"""The server's database: engine per URL, session factory, transactions that retry on collisions.

SQLite serialises writers; a transaction that starts reading and later writes can fail with
"database is locked" when another connection wrote in between, so every SQLite transaction starts
with ``BEGIN IMMEDIATE`` and waits (``busy_timeout``) instead. PostgreSQL and MariaDB run at READ
COMMITTED so a retried transaction sees the row a concurrent one just committed.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as exc_module
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from meisa_sync.server.models import Base

__all__ = ["Database", "pipelined"]

T = TypeVar("T")
_JOINED: contextvars.ContextVar[tuple[Database, Session] | None] = contextvars.ContextVar(
    "meisa_joined_transaction", default=None
)
logger = logging.getLogger(__name__)

# Collisions worth retrying: a unique index refused a concurrent insert, or the database chose this
# transaction as a deadlock victim / serialisation failure.
_RETRYABLE = (IntegrityError, OperationalError)
_ATTEMPTS = 5


def _sqlite_engine(url: str) -> Engine:
    in_memory = url in {"sqlite://", "sqlite:///:memory:"}
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if in_memory:
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not pysqlite, decide when transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_engine(url: str) -> Engine:
    """An engine for ``url`` configured for the server's concurrency (see the module docstring)."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql://"):
        # psycopg 3 is the driver this project installs; plain postgresql:// would pick psycopg2.
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("mysql://") or url.startswith("mariadb://"):
        url = "mysql+pymysql://" + url.split("://", 1)[1]
    # No pool_pre_ping: it costs a round trip per checkout; pool_recycle retires stale connections.
    engine = create_engine(url, isolation_level="READ COMMITTED", pool_recycle=1800)
    if engine.dialect.name == "postgresql":

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # The durability SQLite's WAL with synchronous=NORMAL gives: a commit does not wait
            # for its WAL flush, so a power cut may lose the last moments, never consistency.
            cursor = dbapi_connection.cursor()
            cursor.execute("SET synchronous_commit TO off")
            cursor.close()
            dbapi_connection.commit()

    return engine


class Database:
    """The engine and session factory of one server, and its transaction helper."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_tables(self) -> None:
        Base.metadata.create_all(self.engine)

    def drop_tables(self) -> None:
        Base.metadata.drop_all(self.engine)

    @property
    def lock_style(self) -> str | None:
        """How to lock a contact row read with an outer join: PostgreSQL needs ``FOR UPDATE OF``;
        MariaDB/MySQL take a plain ``FOR UPDATE``; SQLite needs nothing (writers are serialised)."""
        name = self.engine.dialect.name
        return None if name == "sqlite" else "of" if name == "postgresql" else "plain"

    @property
    def locks_rows(self) -> bool:
        """Whether ``SELECT ... FOR UPDATE`` means anything (SQLite already serialises writers)."""
        return self.engine.dialect.name != "sqlite"

    def transaction(
        self, work: Callable[[Session], T], *, on_retry: Callable[[], None] | None = None
    ) -> T:
        """Run ``work`` in one transaction, retried from scratch when it collides with another
        (``on_retry`` runs before each retry: drop what may have been cached from the collision).

        Inside :meth:`joined`, ``work`` runs in the joined transaction instead (whose owner
        retries).
        """
        joined = _JOINED.get()
        if joined is not None and joined[0] is self:
            return work(joined[1])
        for attempt in range(1, _ATTEMPTS + 1):
            with self.sessions() as session:
                try:
                    with session.begin():
                        return work(session)
                except _RETRYABLE as exc:
                    if attempt == _ATTEMPTS or not _is_collision(exc):
                        raise
                    logger.debug("transaction collided (attempt %d), retrying: %s", attempt, exc)
                    if on_retry is not None:
                        on_retry()
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def joined(self, session: Session) -> Iterator[None]:
        """Make :meth:`transaction` calls in this block (same thread) run in ``session``'s
        transaction: how an idempotency record is written in the same commit as the work."""
        token = _JOINED.set((self, session))
        try:
            yield
        finally:
            _JOINED.reset(token)

    def close(self) -> None:
        self.engine.dispose()


@contextlib.contextmanager
def pipelined(connection: Connection) -> Iterator[None]:
    """Send the statements of the block without waiting for each answer, where the driver can
    (psycopg 3's pipeline mode): the writes of an upsert then cost one round trip, not one each.

    Errors then surface when the block ends, from the driver; they are re-raised as SQLAlchemy's
    so that a unique-index collision is retried like any other.
    """
    dbapi_connection = connection.connection.dbapi_connection
    pipeline = getattr(dbapi_connection, "pipeline", None)
    if connection.dialect.name != "postgresql" or pipeline is None:
        yield
        return
    try:
        with pipeline():
            yield
    except connection.dialect.loaded_dbapi.Error as exc:
        raise exc_module.DBAPIError.instance(
            None, None, exc, connection.dialect.loaded_dbapi.Error
        ) from exc


def _is_collision(exc: Exception) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return any(
        marker in text
        for marker in ("deadlock", "database is locked", "could not serialize", "lock wait timeout")
    )
