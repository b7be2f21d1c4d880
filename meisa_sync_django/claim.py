"""The claim: lease whole objects with due pending records to one worker.

Due records are walked in claim order, (priority, available_at, id), a page at a time, one priority
level at a time along the ``(state, priority, available_at, id)`` index: within a level only the
range due by now is read, so records backing off after failures cost the claim nothing. Their
objects' state rows are the locks. On PostgreSQL and MySQL 8 / MariaDB 10.6+ the free ones are
locked with ``SELECT ... FOR UPDATE SKIP LOCKED``, so concurrent workers split the backlog without
waiting for each other; on SQLite the claim's transaction takes the write lock first, so claims
run one at a time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Min, Q

from meisa_sync.records import ChangeRecord, ClaimedObject, ObjectKey, RecordState
from meisa_sync_django.models import ObjectState
from meisa_sync_django.rows import change_record, keys_q, outbox, states, to_db_time

__all__ = ["claim"]

_PENDING = RecordState.PENDING.value


def claim(
    using: str, worker_id: str, *, limit: int, lease: dt.timedelta, now: dt.datetime
) -> list[ClaimedObject]:
    """Lease up to ``limit`` objects to ``worker_id`` (``OutboxStore.claim``'s semantics)."""
    connection = connections[using]
    if not connection.in_atomic_block:
        # A worker lives for days: a connection broken by a database restart or failover is
        # replaced here, once per claim, instead of failing every call that follows.
        connection.close_if_unusable_or_obsolete()
    claimed: list[ClaimedObject] = []
    seen: set[ObjectKey] = set()
    page = max(4 * limit, 100)
    level = _next_level(using, None)
    after: tuple[dt.datetime, int] | None = None
    while level is not None and len(claimed) < limit:
        rows = _due_page(using, now, level, after, page)
        candidates = []
        for available_at, record_id, model, object_pk in rows:
            after = (available_at, record_id)
            key = ObjectKey(model, object_pk)
            if key not in seen:
                seen.add(key)
                candidates.append(key)
        if candidates:
            claimed += _lease(using, worker_id, candidates, limit - len(claimed), now, lease)
        if len(rows) < page:
            level, after = _next_level(using, level), None
    claimed.sort(key=lambda c: min((r.priority, r.available_at, r.id) for r in c.records))
    return claimed


def _next_level(using: str, level: int | None) -> int | None:
    """The lowest priority with pending records above ``level``: a seek on the claim index."""
    pending = outbox(using).filter(state=_PENDING)
    if level is not None:
        pending = pending.filter(priority__gt=level)
    lowest: int | None = pending.aggregate(lowest=Min("priority"))["lowest"]
    return lowest


def _due_page(
    using: str,
    now: dt.datetime,
    level: int,
    after: tuple[dt.datetime, int] | None,
    page: int,
) -> list[tuple[dt.datetime, int, str, str]]:
    """The next ``page`` due pending records of one priority in claim order, as
    (available_at, id, model, pk)."""
    due = outbox(using).filter(state=_PENDING, priority=level, available_at__lte=to_db_time(now))
    if after is not None:
        available_at, record_id = after
        # The first filter alone bounds the index range; the second finishes the keyset.
        due = due.filter(available_at__gte=available_at).filter(
            Q(available_at__gt=available_at) | Q(id__gt=record_id)
        )
    ordered = due.order_by("available_at", "id").values_list(
        "available_at", "id", "model", "object_pk"
    )
    return list(ordered[:page])


def _lease(
    using: str,
    worker_id: str,
    candidates: list[ObjectKey],
    wanted: int,
    now: dt.datetime,
    lease: dt.timedelta,
) -> list[ClaimedObject]:
    """Lock the candidates' state rows that are free, lease up to ``wanted`` of them."""
    _ensure_states(using, candidates)
    connection = connections[using]
    with transaction.atomic(using=using):
        if connection.vendor == "sqlite":
            _take_sqlite_write_lock(connection)
        db_now = to_db_time(now)
        free = states(using, candidates).filter(
            Q(lease_owner__isnull=True) | Q(lease_expires_at__lte=db_now) | Q(lease_owner=worker_id)
        )
        if connection.features.has_select_for_update_skip_locked:
            free = free.select_for_update(skip_locked=True)
        elif connection.features.has_select_for_update:
            free = free.select_for_update()
        locked = {
            ObjectKey(model, object_pk): (payload_hash, remote_id)
            for model, object_pk, payload_hash, remote_id in free.values_list(
                "model", "object_pk", "payload_hash", "remote_id"
            )
        }
        if not locked:
            return []
        records = _due_records(using, list(locked), db_now)
        chosen = [key for key in candidates if key in records][:wanted]
        if not chosen:
            return []
        states(using, chosen).update(
            lease_owner=worker_id, lease_expires_at=to_db_time(now + lease)
        )
    return [
        ClaimedObject(
            key=key,
            records=tuple(records[key]),
            last_payload_hash=locked[key][0],
            remote_id=locked[key][1],
        )
        for key in chosen
    ]


def _due_records(
    using: str, keys: Sequence[ObjectKey], db_now: dt.datetime
) -> dict[ObjectKey, list[ChangeRecord]]:
    rows = (
        outbox(using).filter(keys_q(keys), state=_PENDING, available_at__lte=db_now).order_by("id")
    )
    records: dict[ObjectKey, list[ChangeRecord]] = {}
    for row in rows:
        record = change_record(row)
        records.setdefault(record.key, []).append(record)
    return records


def _ensure_states(using: str, keys: Sequence[ObjectKey]) -> None:
    """Create the missing state rows, outside the claim's transaction so that no lock taken by the
    insert outlives it (InnoDB keeps shared locks on duplicate keys until commit)."""
    existing = {
        ObjectKey(model, object_pk)
        for model, object_pk in states(using, keys).values_list("model", "object_pk")
    }
    missing = sorted(set(keys) - existing)
    if missing:
        ObjectState.objects.using(using).bulk_create(
            [ObjectState(model=key.model, object_pk=key.pk) for key in missing],
            ignore_conflicts=True,
        )


def _take_sqlite_write_lock(connection: BaseDatabaseWrapper) -> None:
    # A deferred SQLite transaction that reads first and writes later fails with "database is
    # locked" when another one took the write lock in between; writing first makes claims queue
    # on the busy timeout instead, the same as BEGIN IMMEDIATE.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE meisa_sync_object_state SET lease_owner = lease_owner WHERE 1 = 0")
