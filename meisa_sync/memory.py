"""The in-memory twins: ``InMemoryStore`` and ``InMemorySource``.

They hold everything in process memory, so they suit tests, demos and the reference for the
store's semantics (``meisa_sync/store.py``): ``tests/core/store_contract.py`` runs on this store
first, and the SQL stores must behave the same way. Nothing survives the process: never use them in
production.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from meisa_sync import signals
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

if TYPE_CHECKING:
    from meisa_sync.mapping import ContactMapping

__all__ = ["InMemorySource", "InMemoryStore", "utc_now"]


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC (the default clock of the stores and the worker)."""
    return datetime.now(timezone.utc)


@dataclass
class _ObjectState:
    """Per-object lease and last acknowledged payload (the ``meisa_sync_object_state`` row)."""

    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    payload_hash: str | None = None
    payload: str | None = None
    remote_id: str | None = None
    last_sent_at: datetime | None = None

    def leased_to_other(self, worker_id: str, now: datetime) -> bool:
        return self.leased(now) and self.lease_owner != worker_id

    def leased(self, now: datetime) -> bool:
        return (
            self.lease_owner is not None
            and self.lease_expires_at is not None
            and self.lease_expires_at > now
        )

    def held_by(self, worker_id: str, now: datetime) -> bool:
        return self.leased(now) and self.lease_owner == worker_id

    def release(self, worker_id: str) -> None:
        # A worker whose lease was taken over must not free the new holder's lease.
        if self.lease_owner == worker_id:
            self.lease_owner = None
            self.lease_expires_at = None


class InMemoryStore(OutboxStore):
    """A thread-safe outbox in a dict, with per-object leases.

    ``clock`` returns the current aware UTC time; tests inject a fake one to expire leases and make
    retried records due without sleeping.
    """

    def __init__(self, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._records: dict[int, ChangeRecord] = {}
        self._states: dict[ObjectKey, _ObjectState] = {}

    # -- the save side -------------------------------------------------------------------------

    def enqueue(self, changes: Sequence[NewChange]) -> list[int]:
        ids = self._insert(changes)
        if ids:
            signals.send_safely(signals.enqueued, self, changes=list(changes), record_ids=ids)
        return ids

    def _insert(self, changes: Sequence[NewChange]) -> list[int]:
        with self._lock:
            now = self._clock()
            ids = []
            for change in changes:
                record = ChangeRecord(
                    id=next(self._ids),
                    key=change.key,
                    operation=change.operation,
                    identifiers=dict(change.identifiers)
                    if change.identifiers is not None
                    else None,
                    extras=dict(change.extras) if change.extras is not None else None,
                    priority=int(change.priority),
                    state=RecordState.PENDING,
                    attempts=0,
                    created_at=now,
                    available_at=now,
                )
                self._records[record.id] = record
                ids.append(record.id)
            return ids

    # -- the worker side -----------------------------------------------------------------------

    def claim(self, worker_id: str, *, limit: int, lease: timedelta) -> list[ClaimedObject]:
        with self._lock:
            now = self._clock()
            due: dict[ObjectKey, list[ChangeRecord]] = {}
            for record in sorted(self._records.values(), key=lambda r: r.id):
                if record.state is RecordState.PENDING and record.available_at <= now:
                    due.setdefault(record.key, []).append(record)
            candidates = [
                key for key in due if not self._state(key).leased_to_other(worker_id, now)
            ]
            candidates.sort(
                key=lambda key: min((r.priority, r.available_at, r.id) for r in due[key])
            )
            claimed = []
            for key in candidates[:limit]:
                state = self._state(key)
                state.lease_owner = worker_id
                state.lease_expires_at = now + lease
                claimed.append(
                    ClaimedObject(
                        key=key,
                        records=tuple(due[key]),
                        last_payload_hash=state.payload_hash,
                        remote_id=state.remote_id,
                    )
                )
            return claimed

    def renew(self, worker_id: str, keys: Sequence[ObjectKey], lease: timedelta) -> set[ObjectKey]:
        with self._lock:
            now = self._clock()
            held = set()
            for key in keys:
                state = self._states.get(key)
                if state is not None and state.held_by(worker_id, now):
                    state.lease_expires_at = now + lease
                    held.add(key)
            return held

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
        with self._lock:
            self._ack(worker_id, Ack(key, tuple(record_ids), payload_hash, payload, remote_id))

    def ack_many(self, worker_id: str, acks: Sequence[Ack]) -> None:
        with self._lock:
            for item in acks:
                self._ack(worker_id, item)

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
        with self._lock:
            for record in self._records_of(key, record_ids):
                self._records[record.id] = replace(
                    record,
                    state=RecordState.PENDING,
                    available_at=available_at,
                    attempts=record.attempts + 1 if count_attempt else record.attempts,
                    last_error=error,
                )
            self._state(key).release(worker_id)

    def dead(
        self, worker_id: str, key: ObjectKey, record_ids: Sequence[int], *, error: str
    ) -> None:
        with self._lock:
            now = self._clock()
            for record in self._records_of(key, record_ids):
                # A dead record's available_at is when it died: purge --older-than counts from it.
                self._records[record.id] = replace(
                    record, state=RecordState.DEAD, last_error=error, available_at=now
                )
            self._state(key).release(worker_id)

    def release(self, worker_id: str, keys: Sequence[ObjectKey]) -> None:
        with self._lock:
            for key in keys:
                state = self._states.get(key)
                if state is not None:
                    state.release(worker_id)

    # -- the admin side ------------------------------------------------------------------------

    def requeue(self, record_ids: Sequence[int] | None = None) -> int:
        with self._lock:
            now = self._clock()
            wanted = None if record_ids is None else set(record_ids)
            count = 0
            for record in list(self._records.values()):
                if record.state is RecordState.DEAD and (wanted is None or record.id in wanted):
                    self._records[record.id] = replace(
                        record, state=RecordState.PENDING, available_at=now, attempts=0
                    )
                    count += 1
            return count

    def stats(self, *, last_errors: int = 5) -> OutboxStats:
        with self._lock:
            now = self._clock()
            pending = [r for r in self._records.values() if r.state is RecordState.PENDING]
            in_flight = [r for r in pending if self._state(r.key).leased(now)]
            oldest = min((r.created_at for r in pending), default=None)
            return OutboxStats(
                pending=len(pending),
                in_flight=len(in_flight),
                dead=sum(1 for r in self._records.values() if r.state is RecordState.DEAD),
                oldest_pending_age=None if oldest is None else max(now - oldest, timedelta(0)),
                last_errors=tuple(self._dead_newest_first()[:last_errors]),
            )

    def list_dead(self, *, limit: int = 50) -> list[ChangeRecord]:
        with self._lock:
            return self._dead_newest_first()[:limit]

    def purge(
        self, *, older_than: timedelta | None = None, record_ids: Sequence[int] | None = None
    ) -> int:
        with self._lock:
            now = self._clock()
            wanted = None if record_ids is None else set(record_ids)
            doomed = [
                record.id
                for record in self._records.values()
                if record.state is RecordState.DEAD
                and (wanted is None or record.id in wanted)
                and (older_than is None or record.available_at <= now - older_than)
            ]
            for record_id in doomed:
                del self._records[record_id]
            return len(doomed)

    # -- for tests and demos -------------------------------------------------------------------

    def records(self) -> list[ChangeRecord]:
        """Every record still in the outbox, oldest first."""
        with self._lock:
            return sorted(self._records.values(), key=lambda r: r.id)

    def last_payload(self, key: ObjectKey) -> str | None:
        """The canonical JSON of the object's last acknowledged payload."""
        with self._lock:
            state = self._states.get(key)
            return None if state is None else state.payload

    def remote_id(self, key: ObjectKey) -> str | None:
        """The Meisa contact id remembered for the object."""
        with self._lock:
            state = self._states.get(key)
            return None if state is None else state.remote_id

    # -- internals (called with the lock held) -------------------------------------------------

    def _ack(self, worker_id: str, ack: Ack) -> None:
        for record in self._records_of(ack.key, ack.record_ids):
            del self._records[record.id]
        state = self._state(ack.key)
        state.payload_hash = ack.payload_hash
        state.payload = ack.payload if ack.payload_hash is not None else None
        if ack.remote_id is not None:
            state.remote_id = ack.remote_id
        state.last_sent_at = self._clock()
        state.release(worker_id)

    def _state(self, key: ObjectKey) -> _ObjectState:
        return self._states.setdefault(key, _ObjectState())

    def _records_of(self, key: ObjectKey, record_ids: Iterable[int]) -> list[ChangeRecord]:
        found = (self._records.get(record_id) for record_id in record_ids)
        return [record for record in found if record is not None and record.key == key]

    def _dead_newest_first(self) -> list[ChangeRecord]:
        dead = [r for r in self._records.values() if r.state is RecordState.DEAD]
        return sorted(dead, key=lambda r: r.id, reverse=True)


class InMemorySource:
    """An ``ObjectSource`` over plain objects kept by model label and primary key.

    ``put`` stores (or replaces) an object, ``remove`` forgets it; ``load`` returns what is there,
    ignoring the mapping (plain objects have nothing to eager-load). ``loads`` counts ``load``
    calls, so tests can check that the worker loads each model once per batch.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, object]] = {}
        self.loads = 0

    def put(self, model: str, pk: object, obj: object) -> ObjectKey:
        """Store ``obj`` as ``model``'s object ``pk``; return its key."""
        with self._lock:
            self._objects.setdefault(model, {})[str(pk)] = obj
        return ObjectKey(model, str(pk))

    def remove(self, model: str, pk: object) -> None:
        """Forget the object (as if its row was deleted); unknown objects are ignored."""
        with self._lock:
            self._objects.get(model, {}).pop(str(pk), None)

    def load(self, model: str, pks: Sequence[str], mapping: ContactMapping) -> dict[str, object]:
        with self._lock:
            self.loads += 1
            objects = self._objects.get(model, {})
            return {pk: objects[pk] for pk in pks if pk in objects}
