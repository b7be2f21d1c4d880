"""``DjangoStore``: the outbox store on the Django ORM (``meisa_sync.store.OutboxStore``).

A claim locks the objects' state rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` where the database
has it (PostgreSQL, MySQL 8, MariaDB 10.6+), so workers on many hosts never wait for each other; on
SQLite the claim's transaction takes the write lock first, so claims run one at a time.

Timestamps go to the database as UTC (aware under ``USE_TZ``, naive UTC without it) and come back
aware in UTC.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Count, F, Min, Q

from meisa_sync.records import (
    ChangeRecord,
    ClaimedObject,
    NewChange,
    ObjectKey,
    Operation,
    OutboxStats,
    RecordState,
)
from meisa_sync.store import OutboxStore
from meisa_sync_django.models import ObjectState, OutboxRecord
from meisa_sync_django.outbox import write_changes

__all__ = ["DjangoStore"]

_PENDING = RecordState.PENDING.value
_DEAD = RecordState.DEAD.value


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
        self._threads = threading.local()

    # -- the save side -------------------------------------------------------------------------

    def enqueue(self, changes: Sequence[NewChange]) -> list[int]:
        if not changes:
            return []
        with self._atomic():
            return write_changes(self.using, changes, now=self._db_time(self._clock()))

    # -- the worker side -----------------------------------------------------------------------

    def claim(self, worker_id: str, *, limit: int, lease: dt.timedelta) -> list[ClaimedObject]:
        if limit <= 0:
            return []
        connection = connections[self.using]
        if not connection.in_atomic_block:
            # A worker lives for days: a connection broken by a database restart or failover is
            # replaced here, once per claim, instead of failing every call that follows.
            connection.close_if_unusable_or_obsolete()
        now = self._clock()
        claimed: list[ClaimedObject] = []
        seen: set[ObjectKey] = set()
        page = max(4 * limit, 100)
        after: tuple[int, int] | None = None
        while len(claimed) < limit:
            rows = self._due_page(now, after, page)
            candidates = []
            for priority, record_id, model, object_pk in rows:
                after = (priority, record_id)
                key = ObjectKey(model, object_pk)
                if key not in seen:
                    seen.add(key)
                    candidates.append(key)
            if candidates:
                claimed += self._lease(worker_id, candidates, limit - len(claimed), now, lease)
            if len(rows) < page:
                break
        claimed.sort(key=lambda c: min((r.priority, r.id) for r in c.records))
        return claimed

    def renew(
        self, worker_id: str, keys: Sequence[ObjectKey], lease: dt.timedelta
    ) -> set[ObjectKey]:
        if not keys:
            return set()
        now = self._clock()
        held = self._states(keys).filter(
            lease_owner=worker_id, lease_expires_at__gt=self._db_time(now)
        )
        with self._atomic():
            found = {ObjectKey(m, pk) for m, pk in held.values_list("model", "object_pk")}
            if found:
                self._states(found).update(lease_expires_at=self._db_time(now + lease))
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
        now = self._db_time(self._clock())
        values: dict[str, Any] = {
            "payload_hash": payload_hash,
            "payload": payload if payload_hash is not None else None,
            "last_sent_at": now,
        }
        if remote_id is not None:
            values["remote_id"] = remote_id
        with self._atomic():
            self._records(key, record_ids).delete()
            state = self._states([key])
            if not state.update(**values):
                ObjectState.objects.using(self.using).bulk_create(
                    [ObjectState(model=key.model, object_pk=key.pk, **values)],
                    ignore_conflicts=True,
                )
            self._release(worker_id, [key])

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
                available_at=self._db_time(available_at),
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
                state=_DEAD, last_error=error, available_at=self._db_time(self._clock())
            )
            self._release(worker_id, [key])

    def release(self, worker_id: str, keys: Sequence[ObjectKey]) -> None:
        if keys:
            with self._atomic():
                self._release(worker_id, keys)

    # -- the admin side ------------------------------------------------------------------------

    def requeue(self, record_ids: Sequence[int] | None = None) -> int:
        dead = self._objects().filter(state=_DEAD)
        if record_ids is not None:
            dead = dead.filter(id__in=list(record_ids))
        with self._atomic():
            count: int = dead.update(
                state=_PENDING, available_at=self._db_time(self._clock()), attempts=0
            )
        return count

    def stats(self, *, last_errors: int = 5) -> OutboxStats:
        now = self._clock()
        self._track_thread_connection()
        counts = dict(
            self._objects()
            .values_list("state")
            .annotate(count=Count("id"))
            .values_list("state", "count")
        )
        oldest = self._objects().filter(state=_PENDING).aggregate(oldest=Min("created_at"))
        leased = ObjectState.objects.using(self.using).filter(
            lease_owner__isnull=False,
            lease_expires_at__gt=self._db_time(now),
            model=models.OuterRef("model"),
            object_pk=models.OuterRef("object_pk"),
        )
        in_flight = self._objects().filter(state=_PENDING).filter(models.Exists(leased)).count()
        oldest_at = oldest["oldest"]
        return OutboxStats(
            pending=counts.get(_PENDING, 0),
            in_flight=in_flight,
            dead=counts.get(_DEAD, 0),
            oldest_pending_age=(
                None if oldest_at is None else max(now - _from_db_time(oldest_at), dt.timedelta(0))
            ),
            last_errors=tuple(self.list_dead(limit=last_errors)),
        )

    def list_dead(self, *, limit: int = 50) -> list[ChangeRecord]:
        self._track_thread_connection()
        rows = self._objects().filter(state=_DEAD).order_by("-id")[:limit]
        return [_record(row) for row in rows]

    def purge(
        self,
        *,
        older_than: dt.timedelta | None = None,
        record_ids: Sequence[int] | None = None,
    ) -> int:
        doomed = self._objects().filter(state=_DEAD)
        if record_ids is not None:
            doomed = doomed.filter(id__in=list(record_ids))
        if older_than is not None:
            doomed = doomed.filter(available_at__lte=self._db_time(self._clock() - older_than))
        with self._atomic():
            deleted: int = doomed.delete()[0]
        return deleted

    # -- internals -----------------------------------------------------------------------------

    def _due_page(
        self, now: dt.datetime, after: tuple[int, int] | None, page: int
    ) -> list[tuple[int, int, str, str]]:
        """The next ``page`` due pending records in claim order, as (priority, id, model, pk)."""
        self._track_thread_connection()
        due = self._objects().filter(state=_PENDING, available_at__lte=self._db_time(now))
        if after is not None:
            priority, record_id = after
            due = due.filter(Q(priority__gt=priority) | Q(priority=priority, id__gt=record_id))
        ordered = due.order_by("priority", "id").values_list("priority", "id", "model", "object_pk")
        return list(ordered[:page])

    def _lease(
        self,
        worker_id: str,
        candidates: list[ObjectKey],
        wanted: int,
        now: dt.datetime,
        lease: dt.timedelta,
    ) -> list[ClaimedObject]:
        """Lock the candidates' state rows that are free, lease up to ``wanted`` of them."""
        self._ensure_states(candidates)
        connection = connections[self.using]
        with self._atomic():
            if connection.vendor == "sqlite":
                self._take_sqlite_write_lock(connection)
            db_now = self._db_time(now)
            free = self._states(candidates).filter(
                Q(lease_owner__isnull=True)
                | Q(lease_expires_at__lte=db_now)
                | Q(lease_owner=worker_id)
            )
            if connection.features.has_select_for_update_skip_locked:
                free = free.select_for_update(skip_locked=True)
            elif connection.features.has_select_for_update:
                free = free.select_for_update()
            states = {
                ObjectKey(model, object_pk): (payload_hash, remote_id)
                for model, object_pk, payload_hash, remote_id in free.values_list(
                    "model", "object_pk", "payload_hash", "remote_id"
                )
            }
            if not states:
                return []
            records = self._due_records(list(states), db_now)
            chosen = [key for key in candidates if key in records][:wanted]
            if not chosen:
                return []
            self._states(chosen).update(
                lease_owner=worker_id, lease_expires_at=self._db_time(now + lease)
            )
        return [
            ClaimedObject(
                key=key,
                records=tuple(records[key]),
                last_payload_hash=states[key][0],
                remote_id=states[key][1],
            )
            for key in chosen
        ]

    def _due_records(
        self, keys: Sequence[ObjectKey], db_now: dt.datetime
    ) -> dict[ObjectKey, list[ChangeRecord]]:
        rows = (
            self._objects()
            .filter(_keys_q(keys), state=_PENDING, available_at__lte=db_now)
            .order_by("id")
        )
        records: dict[ObjectKey, list[ChangeRecord]] = {}
        for row in rows:
            record = _record(row)
            records.setdefault(record.key, []).append(record)
        return records

    def _ensure_states(self, keys: Sequence[ObjectKey]) -> None:
        """Create the missing state rows, outside the claim's transaction so that no lock of the
        insert outlives it (InnoDB keeps shared locks on duplicate keys until commit)."""
        existing = {
            ObjectKey(model, object_pk)
            for model, object_pk in self._states(keys).values_list("model", "object_pk")
        }
        missing = sorted(set(keys) - existing)
        if missing:
            ObjectState.objects.using(self.using).bulk_create(
                [ObjectState(model=key.model, object_pk=key.pk) for key in missing],
                ignore_conflicts=True,
            )

    @staticmethod
    def _take_sqlite_write_lock(connection: BaseDatabaseWrapper) -> None:
        # A deferred SQLite transaction that reads first and writes later fails with "database is
        # locked" when another one got the write lock in between; writing first makes claims queue
        # on the busy timeout instead, the same as BEGIN IMMEDIATE.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE meisa_sync_object_state SET lease_owner = lease_owner WHERE 1 = 0"
            )

    def _release(self, worker_id: str, keys: Iterable[ObjectKey]) -> None:
        # A worker whose lease was taken over must not free the new holder's lease.
        self._states(list(keys)).filter(lease_owner=worker_id).update(
            lease_owner=None, lease_expires_at=None
        )

    def _objects(self) -> models.QuerySet[OutboxRecord]:
        records: models.QuerySet[OutboxRecord] = OutboxRecord.objects.using(self.using)
        return records

    def _records(self, key: ObjectKey, record_ids: Sequence[int]) -> models.QuerySet[OutboxRecord]:
        records: models.QuerySet[OutboxRecord] = self._objects().filter(
            id__in=list(record_ids), model=key.model, object_pk=key.pk
        )
        return records

    def _states(self, keys: Iterable[ObjectKey]) -> models.QuerySet[ObjectState]:
        states: models.QuerySet[ObjectState] = ObjectState.objects.using(self.using).filter(
            _keys_q(keys)
        )
        return states

    def _atomic(self) -> transaction.Atomic:
        self._track_thread_connection()
        return transaction.atomic(using=self.using)

    @staticmethod
    def _db_time(value: dt.datetime) -> dt.datetime:
        utc = value.astimezone(dt.timezone.utc)
        return utc if settings.USE_TZ else utc.replace(tzinfo=None)

    def _track_thread_connection(self) -> None:
        if threading.current_thread() is threading.main_thread():
            return
        if getattr(self._threads, "closer", None) is None:
            self._threads.closer = _CloseOnThreadExit(connections[self.using])


class _CloseOnThreadExit:
    """Closes a worker thread's database connection when the thread ends.

    Django leaves connections opened in other threads for the garbage collector, which warns.
    """

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self._connection = connection

    def __del__(self) -> None:
        raw = self._connection.connection
        if raw is not None:
            raw.close()


def _keys_q(keys: Iterable[ObjectKey]) -> Q:
    by_model: dict[str, list[str]] = {}
    for key in keys:
        by_model.setdefault(key.model, []).append(key.pk)
    condition = Q(object_pk__in=[])
    for model, pks in by_model.items():
        condition |= Q(model=model, object_pk__in=pks)
    return condition


def _from_db_time(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def _record(row: OutboxRecord) -> ChangeRecord:
    return ChangeRecord(
        id=row.id,
        key=ObjectKey(row.model, row.object_pk),
        operation=Operation(row.operation),
        identifiers=row.identifiers,
        extras=row.extras,
        priority=row.priority,
        state=RecordState(row.state),
        attempts=row.attempts,
        created_at=_from_db_time(row.created_at),
        available_at=_from_db_time(row.available_at),
        last_error=row.last_error,
    )
