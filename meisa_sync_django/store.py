"""``DjangoStore``: the outbox store on the Django ORM (``meisa_sync.store.OutboxStore``).

The claim lives in ``meisa_sync_django.claim``; the rest is one short transaction per call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import connections, models, transaction
from django.db.models import Count, F, Min, Q

from meisa_sync.records import (
    Ack,
    ChangeRecord,
    ClaimedObject,
    NewChange,
    ObjectKey,
    OutboxStats,
    RecordState,
)
from meisa_sync.store import OutboxStore, fold_acks
from meisa_sync_django.claim import claim
from meisa_sync_django.models import ObjectState, OutboxRecord
from meisa_sync_django.outbox import write_changes
from meisa_sync_django.rows import (
    ThreadConnections,
    change_record,
    from_db_time,
    outbox,
    states,
    to_db_time,
)

__all__ = ["DjangoStore"]

_PENDING = RecordState.PENDING.value
_DEAD = RecordState.DEAD.value
# Objects per statement in ``ack_many``: bounded statements, whatever the group's size.
_ACKS_PER_STATEMENT = 200


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class DjangoStore(OutboxStore):
    """The outbox in ``meisa_sync_outbox`` / ``meisa_sync_object_state`` on database ``using``.

    ``clock`` returns the current aware UTC time (tests inject one). Safe to share between threads:
    each thread uses its own Django connection, closed when the thread ends.
    """

    def __init__(
        self, using: str = "default", *, clock: Callable[[], dt.datetime] = _utc_now
    ) -> None:
        self.using = using
        self._clock = clock
        self._connections = ThreadConnections(using)

    # -- the save side -------------------------------------------------------------------------

    def enqueue(self, changes: Sequence[NewChange]) -> list[int]:
        if not changes:
            return []
        with self._atomic():
            return write_changes(self.using, changes, now=to_db_time(self._clock()))

    # -- the worker side -----------------------------------------------------------------------

    def claim(self, worker_id: str, *, limit: int, lease: dt.timedelta) -> list[ClaimedObject]:
        if limit <= 0:
            return []
        self._connections.track()
        return claim(self.using, worker_id, limit=limit, lease=lease, now=self._clock())

    def renew(
        self, worker_id: str, keys: Sequence[ObjectKey], lease: dt.timedelta
    ) -> set[ObjectKey]:
        if not keys:
            return set()
        now = self._clock()
        held = states(self.using, keys).filter(
            lease_owner=worker_id, lease_expires_at__gt=to_db_time(now)
        )
        with self._atomic():
            found = {ObjectKey(m, pk) for m, pk in held.values_list("model", "object_pk")}
            if found:
                states(self.using, found).update(lease_expires_at=to_db_time(now + lease))
        return found

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
        values: dict[str, Any] = {
            "payload_hash": payload_hash,
            "payload": payload if payload_hash is not None else None,
            "last_sent_at": to_db_time(self._clock()),
        }
        if remote_id is not None:
            values["remote_id"] = remote_id
        with self._atomic():
            self._records(key, record_ids).delete()
            if not states(self.using, [key]).update(**values):
                ObjectState.objects.using(self.using).bulk_create(
                    [ObjectState(model=key.model, object_pk=key.pk, **values)],
                    ignore_conflicts=True,
                )
            self._release(worker_id, [key])

    def ack_many(self, worker_id: str, acks: Sequence[Ack]) -> None:
        """``ack`` for each item in one transaction: per chunk of objects, one DELETE of the
        records, one upsert of the state rows (two when only some carry a contact id), one
        UPDATE freeing the leases ``worker_id`` holds."""
        folded = fold_acks(acks)
        if not folded:
            return
        now = to_db_time(self._clock())
        with self._atomic():
            for start in range(0, len(folded), _ACKS_PER_STATEMENT):
                chunk = folded[start : start + _ACKS_PER_STATEMENT]
                acknowledged = Q(pk__in=[])
                for item in chunk:
                    acknowledged |= Q(
                        model=item.key.model, object_pk=item.key.pk, id__in=item.record_ids
                    )
                ids = [record_id for item in chunk for record_id in item.record_ids]
                outbox(self.using).filter(id__in=ids).filter(acknowledged).delete()
                self._remember(chunk, now)
                self._release(worker_id, [item.key for item in chunk])

    def retry(
        self,
        worker_id: str,
        key: ObjectKey,
        record_ids: Sequence[int],
        *,
        available_at: dt.datetime,
        error: str,
        count_attempt: bool = True,
    ) -> None:
        with self._atomic():
            self._records(key, record_ids).update(
                state=_PENDING,
                available_at=to_db_time(available_at),
                last_error=error,
                attempts=F("attempts") + 1 if count_attempt else F("attempts"),
            )
            self._release(worker_id, [key])

    def dead(
        self, worker_id: str, key: ObjectKey, record_ids: Sequence[int], *, error: str
    ) -> None:
        # available_at of a dead record is when it died: purge --older-than measures from it.
        with self._atomic():
            self._records(key, record_ids).update(
                state=_DEAD, last_error=error, available_at=to_db_time(self._clock())
            )
            self._release(worker_id, [key])

    def release(self, worker_id: str, keys: Sequence[ObjectKey]) -> None:
        if keys:
            with self._atomic():
                self._release(worker_id, keys)

    # -- the admin side ------------------------------------------------------------------------

    def requeue(self, record_ids: Sequence[int] | None = None) -> int:
        dead = outbox(self.using).filter(state=_DEAD)
        if record_ids is not None:
            dead = dead.filter(id__in=list(record_ids))
        with self._atomic():
            count: int = dead.update(
                state=_PENDING, available_at=to_db_time(self._clock()), attempts=0
            )
        return count

    def stats(self, *, last_errors: int = 5) -> OutboxStats:
        self._connections.track()
        now = self._clock()
        records = outbox(self.using)
        counts = dict(
            records.values_list("state").annotate(count=Count("id")).values_list("state", "count")
        )
        oldest = records.filter(state=_PENDING).aggregate(oldest=Min("created_at"))["oldest"]
        leased = ObjectState.objects.using(self.using).filter(
            lease_owner__isnull=False,
            lease_expires_at__gt=to_db_time(now),
            model=models.OuterRef("model"),
            object_pk=models.OuterRef("object_pk"),
        )
        in_flight = records.filter(state=_PENDING).filter(models.Exists(leased)).count()
        return OutboxStats(
            pending=counts.get(_PENDING, 0),
            in_flight=in_flight,
            dead=counts.get(_DEAD, 0),
            oldest_pending_age=(
                None if oldest is None else max(now - from_db_time(oldest), dt.timedelta(0))
            ),
            last_errors=tuple(self.list_dead(limit=last_errors)),
        )

    def list_dead(self, *, limit: int = 50) -> list[ChangeRecord]:
        self._connections.track()
        rows = outbox(self.using).filter(state=_DEAD).order_by("-id")[:limit]
        return [change_record(row) for row in rows]

    def purge(
        self,
        *,
        older_than: dt.timedelta | None = None,
        record_ids: Sequence[int] | None = None,
    ) -> int:
        doomed = outbox(self.using).filter(state=_DEAD)
        if record_ids is not None:
            doomed = doomed.filter(id__in=list(record_ids))
        if older_than is not None:
            doomed = doomed.filter(available_at__lte=to_db_time(self._clock() - older_than))
        with self._atomic():
            deleted: int = doomed.delete()[0]
        return deleted

    # -- internals -----------------------------------------------------------------------------

    def _release(self, worker_id: str, keys: Iterable[ObjectKey]) -> None:
        # A worker whose lease was taken over must not free the new holder's lease.
        states(self.using, list(keys)).filter(lease_owner=worker_id).update(
            lease_owner=None, lease_expires_at=None
        )

    def _remember(self, acks: Sequence[Ack], now: dt.datetime) -> None:
        """Write the acknowledged state of ``acks`` (one object each), creating missing rows."""
        fields = ["payload_hash", "payload", "last_sent_at"]
        # MySQL's ON DUPLICATE KEY UPDATE takes no conflict target (it is the primary key here).
        target = ["model", "object_pk"]
        if not connections[self.using].features.supports_update_conflicts_with_target:
            target = []
        # A contact id is only ever replaced, never cleared: acks without one leave it alone.
        for with_remote_id in (False, True):
            rows = [
                ObjectState(
                    model=item.key.model,
                    object_pk=item.key.pk,
                    payload_hash=item.payload_hash,
                    payload=item.payload if item.payload_hash is not None else None,
                    remote_id=item.remote_id,
                    last_sent_at=now,
                )
                for item in acks
                if (item.remote_id is not None) is with_remote_id
            ]
            if rows:
                ObjectState.objects.using(self.using).bulk_create(
                    rows,
                    update_conflicts=True,
                    unique_fields=target,
                    update_fields=[*fields, "remote_id"] if with_remote_id else fields,
                )

    def _records(self, key: ObjectKey, record_ids: Sequence[int]) -> models.QuerySet[OutboxRecord]:
        records: models.QuerySet[OutboxRecord] = outbox(self.using).filter(
            id__in=list(record_ids), model=key.model, object_pk=key.pk
        )
        return records

    def _atomic(self) -> transaction.Atomic:
        self._connections.track()
        return transaction.atomic(using=self.using)
