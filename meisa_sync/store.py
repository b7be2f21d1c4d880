"""The outbox store interface: where change records wait until Meisa acknowledges them.

Implementations: ``meisa_sync.memory.InMemoryStore`` (tests, the reference for semantics),
``meisa_sync_sqlalchemy.SQLAlchemyStore`` (SQLAlchemy Core) and ``meisa_sync_django.DjangoStore``.

Semantics every implementation keeps (``tests/core/store_contract.py`` checks them):

- Records are ``pending`` or ``dead``; an acknowledged record is deleted.
- Leases are per *object*, not per record: ``claim`` leases whole objects, and while an object's
  lease is alive no other worker can claim any of its records, old or new. That is what keeps at
  most one request per object in flight across all workers (CONTRACT.md §10.3).
- ``claim`` returns up to ``limit`` objects that have at least one due pending record and no live
  lease held by another worker (an expired lease is free), ordered by their best
  (priority, available_at, id): live before backfill, then the longest due first; each with all its
  due pending records. Claimed records stay ``pending``: a worker that dies
  leaves them to be claimed again once the lease expires.
- ``ack``/``retry``/``dead``/``release`` act only on the given record ids of an object and release
  that object's lease; records that arrived while the request was in flight stay pending. Only
  the lease's holder frees it: a late answer from a worker whose lease was taken over still
  settles its records, but leaves the new holder's lease alone.
- ``ack_many`` is ``ack`` for each item of a list, in order, written at once (the SQL stores use
  one transaction, so the drain worker pays one commit for a group of objects, not one each).
- ``renew`` extends leases still held by the worker and returns the keys it still holds.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime, timedelta

from meisa_sync.records import (
    Ack,
    ChangeRecord,
    ClaimedObject,
    NewChange,
    ObjectKey,
    OutboxStats,
)

__all__ = ["OutboxStore", "fold_acks"]


class OutboxStore(abc.ABC):
    """Where change records wait, with per-object leases for the drain workers."""

    @abc.abstractmethod
    def enqueue(self, changes: Sequence[NewChange]) -> list[int]:
        """Insert change records; return their ids."""

    @abc.abstractmethod
    def claim(self, worker_id: str, *, limit: int, lease: timedelta) -> list[ClaimedObject]:
        """Lease up to ``limit`` objects with due pending records to ``worker_id``."""

    @abc.abstractmethod
    def renew(self, worker_id: str, keys: Sequence[ObjectKey], lease: timedelta) -> set[ObjectKey]:
        """Extend the leases ``worker_id`` still holds on ``keys``; return those keys."""

    @abc.abstractmethod
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
        """Meisa acknowledged (or nothing had to be sent): delete the records, remember the state.

        ``payload_hash`` (and the canonical ``payload`` JSON, for admins) become the object's last
        acknowledged payload; ``None`` after a delete clears it.
        """

    def ack_many(self, worker_id: str, acks: Sequence[Ack]) -> None:
        """``ack`` for each item, in order: the same semantics, written together.

        Each item deletes only its own records (ids of other objects are ignored), becomes its
        object's last acknowledged state and frees the lease ``worker_id`` holds on it (a lease
        another worker took over stays theirs). Several items for one object act as successive
        acks: every listed record leaves, the last item's payload wins, the last ``remote_id``
        given is kept.

        This default calls ``ack`` once per item; a store that can should override it with one
        transaction for the whole list (``fold_acks`` merges the items of one object first).
        """
        for item in acks:
            self.ack(
                worker_id,
                item.key,
                item.record_ids,
                payload_hash=item.payload_hash,
                payload=item.payload,
                remote_id=item.remote_id,
            )

    @abc.abstractmethod
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
        """Put the records back to pending, due at ``available_at``; release the lease."""

    @abc.abstractmethod
    def dead(
        self, worker_id: str, key: ObjectKey, record_ids: Sequence[int], *, error: str
    ) -> None:
        """Mark the records dead with ``error``; release the lease."""

    @abc.abstractmethod
    def release(self, worker_id: str, keys: Sequence[ObjectKey]) -> None:
        """Give leases back untouched (shutdown, auth failure): no attempt is counted."""

    @abc.abstractmethod
    def requeue(self, record_ids: Sequence[int] | None = None) -> int:
        """Make dead records pending and due now (all of them when ``record_ids`` is None)."""

    @abc.abstractmethod
    def stats(self, *, last_errors: int = 5) -> OutboxStats:
        """Counts by state, the oldest pending age and the most recent dead records."""

    @abc.abstractmethod
    def list_dead(self, *, limit: int = 50) -> list[ChangeRecord]:
        """Dead records, newest first."""

    @abc.abstractmethod
    def purge(
        self, *, older_than: timedelta | None = None, record_ids: Sequence[int] | None = None
    ) -> int:
        """Delete dead records (only dead ones); return how many."""


def fold_acks(acks: Sequence[Ack]) -> list[Ack]:
    """One ``Ack`` per object with the effect of all its items in order (``ack_many``'s
    semantics), in the order objects first appear: for stores writing a list in one statement."""
    folded: dict[ObjectKey, Ack] = {}
    for item in acks:
        earlier = folded.get(item.key)
        if earlier is not None:
            item = Ack(
                key=item.key,
                record_ids=tuple(dict.fromkeys(earlier.record_ids + item.record_ids)),
                payload_hash=item.payload_hash,
                payload=item.payload,
                remote_id=item.remote_id if item.remote_id is not None else earlier.remote_id,
            )
        folded[item.key] = item
    return list(folded.values())
