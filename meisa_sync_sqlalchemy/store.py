"""``SQLAlchemyStore``: the outbox on SQLAlchemy Core, for SQLite, PostgreSQL and MySQL/MariaDB.

It keeps every semantic of ``meisa_sync.store.OutboxStore`` (its docstring; ``tests/core/
store_contract.py`` checks them) in two tables (``meisa_sync_sqlalchemy.tables``). How a claim
leases objects safely across processes and hosts is in ``meisa_sync_sqlalchemy.claim``. Every
timestamp comes from the store's clock (aware UTC), never from the database's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    ColumnElement,
    MetaData,
    create_engine,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from meisa_sync.records import (
    Ack,
    ChangeRecord,
    ClaimedObject,
    NewChange,
    ObjectKey,
    OutboxStats,
    RecordState,
)
from meisa_sync.store import OutboxStore
from meisa_sync_sqlalchemy._backend import Backend
from meisa_sync_sqlalchemy._rows import change_record
from meisa_sync_sqlalchemy._sql import check_fits, key_in, release_leases, run_by_ids
from meisa_sync_sqlalchemy.claim import Claim
from meisa_sync_sqlalchemy.settle import ack_many
from meisa_sync_sqlalchemy.tables import OutboxTables, outbox_tables

__all__ = ["SQLAlchemyStore"]

_PENDING = RecordState.PENDING.value
_DEAD = RecordState.DEAD.value


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class SQLAlchemyStore(OutboxStore):
    """The outbox in ``meisa_sync_outbox`` and ``meisa_sync_object_state``, through ``engine``.

    ``metadata`` is the application's ``MetaData`` the tables are defined on (so Alembic sees
    them); by default a private one. ``clock`` returns the current aware UTC time (tests inject a
    fake one). ``busy_timeout`` is how long a SQLite write waits for another writer, in seconds.

    On SQLite use a database file: each claim is one ``BEGIN IMMEDIATE`` transaction, so workers in
    several processes take turns; an in-memory database is private to one connection.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        metadata: MetaData | None = None,
        clock: Callable[[], datetime] | None = None,
        busy_timeout: float = 30.0,
    ) -> None:
        self.engine = engine
        self.tables: OutboxTables = outbox_tables(metadata if metadata is not None else MetaData())
        self._backend = Backend(
            engine, write_lock_table=self.tables.state, busy_timeout=busy_timeout
        )
        self._clock = clock or _utc_now
        self._owns_engine = False

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> SQLAlchemyStore:
        """A store on its own engine for ``url`` (no pool: for short-lived commands); ``close()``
        disposes of it."""
        store = cls(create_engine(url, poolclass=NullPool), **kwargs)
        store._owns_engine = True
        return store

    def close(self) -> None:
        """Dispose of the engine if the store made it (``from_url``); an engine you passed in
        stays yours."""
        if self._owns_engine:
            self.engine.dispose()

    def create_tables(self) -> None:
        """Create the two tables (and their indexes) where they do not exist yet."""
        tables = [self.tables.outbox, self.tables.state]
        self.tables.outbox.metadata.create_all(self.engine, tables=tables)

    def __repr__(self) -> str:
        return f"SQLAlchemyStore({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- the save side -------------------------------------------------------------------------

    def enqueue(self, changes: Sequence[NewChange]) -> list[int]:
        if not changes:
            return []
        outbox = self.tables.outbox
        for change in changes:
            check_fits(outbox.c.model, change.key.model, "key.model")
            check_fits(outbox.c.object_pk, change.key.pk, "key.pk")
        now = self._db_now()
        rows = [
            {
                "model": change.key.model,
                "object_pk": change.key.pk,
                "operation": change.operation.value,
                "identifiers": dict(change.identifiers) if change.identifiers is not None else None,
                "extras": dict(change.extras) if change.extras is not None else None,
                "priority": int(change.priority),
                "state": _PENDING,
                "attempts": 0,
                "created_at": now,
                "available_at": now,
            }
            for change in changes
        ]
        return self._backend.run(lambda connection: self._insert_records(connection, rows))

    def _insert_records(self, connection: Connection, rows: list[dict[str, Any]]) -> list[int]:
        outbox = self.tables.outbox
        if connection.dialect.insert_executemany_returning_sort_by_parameter_order:
            statement = insert(outbox).returning(outbox.c.id, sort_by_parameter_order=True)
            return [int(row_id) for row_id in connection.execute(statement, rows).scalars()]
        # MySQL has no INSERT ... RETURNING: one statement per row, each reporting its id.
        ids = []
        for row in rows:
            inserted: Any = connection.execute(insert(outbox).values(row)).inserted_primary_key
            ids.append(int(inserted[0]))
        return ids

    # -- the worker side -----------------------------------------------------------------------

    def claim(self, worker_id: str, *, limit: int, lease: timedelta) -> list[ClaimedObject]:
        claim = Claim(
            self._backend,
            self.tables,
            worker_id=worker_id,
            limit=limit,
            lease=lease,
            now=self._clock(),
        )
        return self._backend.run(claim.run, own_transactions=True)

    def renew(self, worker_id: str, keys: Sequence[ObjectKey], lease: timedelta) -> set[ObjectKey]:
        if not keys:
            return set()
        now = self._clock()
        expires = self._backend.to_db(now + lease, name="lease")
        state = self.tables.state

        def renew(connection: Connection) -> set[ObjectKey]:
            held = key_in(state.c.model, state.c.object_pk, list(keys))
            connection.execute(
                update(state)
                .where(
                    held,
                    state.c.lease_owner == worker_id,
                    state.c.lease_expires_at > self._backend.to_db(now),
                )
                .values(lease_expires_at=expires)
            )
            renewed = select(state.c.model, state.c.object_pk).where(
                held, state.c.lease_owner == worker_id, state.c.lease_expires_at == expires
            )
            return {ObjectKey(row.model, row.object_pk) for row in connection.execute(renewed)}

        return self._backend.run(renew)

    def ack(
        self,
        worker_id: str,
        key: ObjectKey,
        record_ids: Sequence[int],
        *,
        payload_hash: str | None,
        payload: str | None = None,
        remote_id: str | None = None,
    ) -> None:
        state = self.tables.state
        values: dict[str, Any] = {
            "payload_hash": payload_hash,
            "payload": payload if payload_hash is not None else None,
            "last_sent_at": self._db_now(),
        }
        if remote_id is not None:
            values["remote_id"] = remote_id

        def ack(connection: Connection) -> None:
            self._delete_records(connection, key, record_ids)
            remembered = connection.execute(
                update(state)
                .where(state.c.model == key.model, state.c.object_pk == key.pk)
                .values(values)
            )
            if remembered.rowcount == 0:  # acknowledged without a claim: no state row yet
                row = {"model": key.model, "object_pk": key.pk, **values}
                connection.execute(self._backend.insert_ignoring_existing(state), [row])
            release_leases(connection, self.tables.state, worker_id, [key])

        self._backend.run(ack)

    def ack_many(self, worker_id: str, acks: Sequence[Ack]) -> None:
        """``ack`` for each item, in one transaction (``meisa_sync_sqlalchemy.settle``)."""
        ack_many(self._backend, self.tables, worker_id, acks, now=self._db_now())

    def retry(
        self,
        worker_id: str,
        key: ObjectKey,
        record_ids: Sequence[int],
        *,
        available_at: datetime,
        error: str,
        count_attempt: bool = True,
    ) -> None:
        outbox = self.tables.outbox
        values = {
            "state": _PENDING,
            "available_at": self._backend.to_db(available_at, name="available_at"),
            "last_error": error,
            "attempts": outbox.c.attempts + 1 if count_attempt else outbox.c.attempts,
        }
        self._backend.run(lambda c: self._update_records(c, worker_id, key, record_ids, values))

    def dead(
        self, worker_id: str, key: ObjectKey, record_ids: Sequence[int], *, error: str
    ) -> None:
        # available_at of a dead record is when it died: purge --older-than measures from it.
        values = {"state": _DEAD, "last_error": error, "available_at": self._db_now()}
        self._backend.run(lambda c: self._update_records(c, worker_id, key, record_ids, values))

    def release(self, worker_id: str, keys: Sequence[ObjectKey]) -> None:
        if keys:
            self._backend.run(lambda c: release_leases(c, self.tables.state, worker_id, keys))

    # -- the admin side ------------------------------------------------------------------------

    def requeue(self, record_ids: Sequence[int] | None = None) -> int:
        outbox = self.tables.outbox
        statement = (
            update(outbox)
            .where(outbox.c.state == _DEAD)
            .values(state=_PENDING, available_at=self._db_now(), attempts=0)
        )
        return self._backend.run(lambda c: run_by_ids(c, statement, outbox.c.id, record_ids))

    def stats(self, *, last_errors: int = 5) -> OutboxStats:
        outbox, state = self.tables.outbox, self.tables.state
        now = self._clock()
        db_now = self._backend.to_db(now)
        by_state = select(outbox.c.state, func.count()).group_by(outbox.c.state)
        in_flight = (
            select(func.count())
            .select_from(
                outbox.join(
                    state,
                    (state.c.model == outbox.c.model) & (state.c.object_pk == outbox.c.object_pk),
                )
            )
            .where(outbox.c.state == _PENDING, state.c.lease_expires_at > db_now)
        )
        oldest = select(func.min(outbox.c.created_at)).where(outbox.c.state == _PENDING)

        def read(connection: Connection) -> OutboxStats:
            counts = {row[0]: int(row[1]) for row in connection.execute(by_state)}
            oldest_at = connection.execute(oldest).scalar()
            age = None
            if oldest_at is not None:
                age = max(now - self._backend.from_db(oldest_at), timedelta(0))
            return OutboxStats(
                pending=counts.get(_PENDING, 0),
                in_flight=int(connection.execute(in_flight).scalar_one()),
                dead=counts.get(_DEAD, 0),
                oldest_pending_age=age,
                last_errors=tuple(self._dead_newest_first(connection, last_errors)),
            )

        return self._backend.read(read)

    def list_dead(self, *, limit: int = 50) -> list[ChangeRecord]:
        return self._backend.read(lambda connection: self._dead_newest_first(connection, limit))

    def purge(
        self, *, older_than: timedelta | None = None, record_ids: Sequence[int] | None = None
    ) -> int:
        outbox = self.tables.outbox
        statement = delete(outbox).where(outbox.c.state == _DEAD)
        if older_than is not None:
            cutoff = self._backend.to_db(self._clock() - older_than)
            statement = statement.where(outbox.c.available_at <= cutoff)
        return self._backend.run(lambda c: run_by_ids(c, statement, outbox.c.id, record_ids))

    # -- SQL shared by the operations ----------------------------------------------------------

    def _db_now(self) -> datetime:
        return self._backend.to_db(self._clock(), name="clock()")

    def _of_object(self, key: ObjectKey) -> list[ColumnElement[bool]]:
        """WHERE clauses keeping the records of ``key`` (ids of other objects are ignored)."""
        outbox = self.tables.outbox
        return [outbox.c.model == key.model, outbox.c.object_pk == key.pk]

    def _delete_records(
        self, connection: Connection, key: ObjectKey, record_ids: Sequence[int]
    ) -> None:
        outbox = self.tables.outbox
        if record_ids:
            statement = delete(outbox).where(*self._of_object(key))
            run_by_ids(connection, statement, outbox.c.id, record_ids)

    def _update_records(
        self,
        connection: Connection,
        worker_id: str,
        key: ObjectKey,
        record_ids: Sequence[int],
        values: dict[str, Any],
    ) -> None:
        outbox = self.tables.outbox
        if record_ids:
            statement = update(outbox).where(*self._of_object(key)).values(values)
            run_by_ids(connection, statement, outbox.c.id, record_ids)
        release_leases(connection, self.tables.state, worker_id, [key])

    def _dead_newest_first(self, connection: Connection, limit: int) -> list[ChangeRecord]:
        outbox = self.tables.outbox
        query = select(outbox).where(outbox.c.state == _DEAD).order_by(outbox.c.id.desc())
        rows = connection.execute(query.limit(limit)).mappings()
        return [change_record(row, self._backend) for row in rows]
