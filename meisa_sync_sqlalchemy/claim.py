"""The claim: lease up to ``limit`` objects with due pending records to one worker.

The object-state row is the per-object lock. A claim runs in four steps:

1. Candidates: walk the due pending records in claim order, ``(priority, available_at, id)``, along
   the ``(state, priority, available_at, id)`` index, anti-joined to the state rows of objects
   another worker holds a live lease on, one page at a time (keyset pagination). The walk goes one
   priority level at a time (the next level is an index seek), and within a level reads only the
   range due by now: records backing off after failures sit past its end and are never read, so a
   claim reads about as many rows with a thousand records waiting as with a million, due or not.
   An object's first row is its best, so the walk yields objects in claim order and stops as soon
   as enough are found. (What it reads past are the due records of objects leased to others.)
2. State rows: an object seen for the first time gets its state row (an insert that ignores rows
   already there, so concurrent claims may race to create it).
3. Lock and lease: the candidates' state rows that are still free are locked ``FOR UPDATE SKIP
   LOCKED`` (a row another claim is locking is skipped, never waited for), leased, and committed:
   one short transaction per batch on PostgreSQL and MySQL. SQLite has no row locks: the whole claim
   runs in one ``BEGIN IMMEDIATE`` transaction, so no other writer can interleave.
4. Records: the claimed objects' due pending records, oldest first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, update
from sqlalchemy.engine import Connection

from meisa_sync.records import ChangeRecord, ClaimedObject, ObjectKey, RecordState
from meisa_sync_sqlalchemy._backend import Backend
from meisa_sync_sqlalchemy._rows import change_record
from meisa_sync_sqlalchemy._sql import check_fits, key_in, release_leases
from meisa_sync_sqlalchemy.tables import OutboxTables

__all__ = ["Claim"]

# The first page of candidate rows holds a few rows per wanted object (objects with several
# records, objects skipped as locked); later pages double, up to this many rows.
_MAX_PAGE = 5000


@dataclass(frozen=True)
class _Candidate:
    key: ObjectKey
    has_state_row: bool


@dataclass(frozen=True)
class _Lock:
    last_payload_hash: str | None
    remote_id: str | None


class Claim:
    """One ``claim`` call: ``Claim(...).run(connection)`` returns the leased objects."""

    def __init__(
        self,
        backend: Backend,
        tables: OutboxTables,
        *,
        worker_id: str,
        limit: int,
        lease: timedelta,
        now: datetime,
    ) -> None:
        check_fits(tables.state.c.lease_owner, worker_id, "worker_id")
        self._backend = backend
        self._outbox = tables.outbox
        self._state = tables.state
        self._worker_id = worker_id
        self._limit = limit
        self._now = backend.to_db(now, name="now")
        self._expires = backend.to_db(now + lease, name="lease")

    def run(self, connection: Connection) -> list[ClaimedObject]:
        """Claim on ``connection``, beginning and committing its transactions."""
        backend = self._backend
        backend.check_claim_support(connection)
        if self._limit <= 0:
            return []
        backend.begin(connection)
        claimed: dict[ObjectKey, _Lock] = {}
        candidates = self._candidates(connection)
        while len(claimed) < self._limit:
            batch = list(islice(candidates, self._limit - len(claimed)))
            if not batch:
                break
            self._create_state_rows(connection, [c.key for c in batch if not c.has_state_row])
            locked = self._lock_free_states(connection, [c.key for c in batch])
            self._lease(connection, list(locked))
            if not backend.single_writer:
                backend.commit(connection)
            claimed.update((c.key, locked[c.key]) for c in batch if c.key in locked)
        records = self._due_records(connection, list(claimed))
        empty = [key for key in claimed if key not in records]
        if empty:
            # Acknowledged by a worker whose lease had run out, between our walk and our lease.
            release_leases(connection, self._state, self._worker_id, empty)
        backend.commit(connection)
        return [
            ClaimedObject(
                key=key,
                records=tuple(records[key]),
                last_payload_hash=lock.last_payload_hash,
                remote_id=lock.remote_id,
            )
            for key, lock in claimed.items()
            if key in records
        ]

    # -- the steps -----------------------------------------------------------------------------

    def _candidates(self, connection: Connection) -> Iterator[_Candidate]:
        """Objects with due pending records and no lease held by another, best first."""
        seen: set[ObjectKey] = set()
        page = max(2 * self._limit, 32)
        level: int | None = connection.scalar(self._next_level(None))
        after: tuple[Any, int] | None = None
        while level is not None:
            rows = connection.execute(self._candidate_page(level, after, page)).all()
            for row in rows:
                key = ObjectKey(row.model, row.object_pk)
                if key not in seen:
                    seen.add(key)
                    yield _Candidate(key, has_state_row=row.state_model is not None)
            if len(rows) < page:
                level, after = connection.scalar(self._next_level(level)), None
            else:
                after = (rows[-1].available_at, rows[-1].id)
                page = min(page * 2, _MAX_PAGE)

    def _next_level(self, level: int | None) -> Select[Any]:
        """The lowest priority with pending records above ``level``: a seek on the claim index."""
        outbox = self._outbox
        query = select(func.min(outbox.c.priority)).where(
            outbox.c.state == RecordState.PENDING.value
        )
        return query if level is None else query.where(outbox.c.priority > level)

    def _candidate_page(self, level: int, after: tuple[Any, int] | None, size: int) -> Select[Any]:
        outbox, state = self._outbox, self._state
        joined = outbox.outerjoin(
            state,
            and_(state.c.model == outbox.c.model, state.c.object_pk == outbox.c.object_pk),
        )
        query = (
            select(
                outbox.c.id,
                outbox.c.available_at,
                outbox.c.model,
                outbox.c.object_pk,
                state.c.model.label("state_model"),
            )
            .select_from(joined)
            .where(
                outbox.c.state == RecordState.PENDING.value,
                outbox.c.priority == level,
                outbox.c.available_at <= self._now,
                or_(state.c.model.is_(None), self._lease_free()),
            )
            .order_by(outbox.c.available_at, outbox.c.id)
            .limit(size)
        )
        if after is not None:
            due, last_id = after
            # The first condition alone bounds the index range; the second finishes the keyset.
            query = query.where(
                outbox.c.available_at >= due,
                or_(outbox.c.available_at > due, outbox.c.id > last_id),
            )
        return query

    def _lease_free(self) -> ColumnElement[bool]:
        """The object's lease is free for this worker: none, expired, or already its own."""
        state = self._state
        return or_(
            state.c.lease_expires_at.is_(None),
            state.c.lease_expires_at <= self._now,
            state.c.lease_owner == self._worker_id,
        )

    def _create_state_rows(self, connection: Connection, keys: list[ObjectKey]) -> None:
        if not keys:
            return
        # Sorted, so that concurrent claims inserting overlapping keys wait in one order.
        rows = [{"model": key.model, "object_pk": key.pk} for key in sorted(keys)]
        connection.execute(self._backend.insert_ignoring_existing(self._state), rows)

    def _lock_free_states(
        self, connection: Connection, keys: list[ObjectKey]
    ) -> dict[ObjectKey, _Lock]:
        state = self._state
        query = (
            select(state.c.model, state.c.object_pk, state.c.payload_hash, state.c.remote_id)
            .where(key_in(state.c.model, state.c.object_pk, keys), self._lease_free())
            .with_for_update(skip_locked=True)
        )
        return {
            ObjectKey(row.model, row.object_pk): _Lock(row.payload_hash, row.remote_id)
            for row in connection.execute(query)
        }

    def _lease(self, connection: Connection, keys: list[ObjectKey]) -> None:
        if not keys:
            return
        state = self._state
        connection.execute(
            update(state)
            .where(key_in(state.c.model, state.c.object_pk, keys))
            .values(lease_owner=self._worker_id, lease_expires_at=self._expires)
        )

    def _due_records(
        self, connection: Connection, keys: list[ObjectKey]
    ) -> dict[ObjectKey, list[ChangeRecord]]:
        if not keys:
            return {}
        outbox = self._outbox
        query = (
            select(outbox)
            .where(
                key_in(outbox.c.model, outbox.c.object_pk, keys),
                outbox.c.state == RecordState.PENDING.value,
                outbox.c.available_at <= self._now,
            )
            .order_by(outbox.c.id)
        )
        records: dict[ObjectKey, list[ChangeRecord]] = {}
        for row in connection.execute(query).mappings():
            record = change_record(row, self._backend)
            records.setdefault(record.key, []).append(record)
        return records
