"""Between the outbox tables' rows and the core's records: keys, times, querysets, connections.

Shared by the store and its claim. Times go to the database as UTC (aware under ``USE_TZ``, naive
UTC without it) and come back aware in UTC.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable

from django.conf import settings
from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Q

from meisa_sync.records import ChangeRecord, ObjectKey, Operation, RecordState
from meisa_sync_django.models import ObjectState, OutboxRecord

__all__ = [
    "ThreadConnections",
    "change_record",
    "from_db_time",
    "keys_q",
    "outbox",
    "states",
    "to_db_time",
]


def outbox(using: str) -> models.QuerySet[OutboxRecord]:
    """Every outbox record on ``using``."""
    records: models.QuerySet[OutboxRecord] = OutboxRecord.objects.using(using)
    return records


def states(using: str, keys: Iterable[ObjectKey]) -> models.QuerySet[ObjectState]:
    """The state rows of ``keys`` on ``using``."""
    rows: models.QuerySet[ObjectState] = ObjectState.objects.using(using).filter(keys_q(keys))
    return rows


def keys_q(keys: Iterable[ObjectKey]) -> Q:
    """A filter matching the rows (outbox or state) of ``keys``; nothing when there are none."""
    by_model: dict[str, list[str]] = {}
    for key in keys:
        by_model.setdefault(key.model, []).append(key.pk)
    condition = Q(object_pk__in=[])
    for model, pks in by_model.items():
        condition |= Q(model=model, object_pk__in=pks)
    return condition


def to_db_time(value: dt.datetime) -> dt.datetime:
    utc = value.astimezone(dt.timezone.utc)
    return utc if settings.USE_TZ else utc.replace(tzinfo=None)


def from_db_time(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def change_record(row: OutboxRecord) -> ChangeRecord:
    return ChangeRecord(
        id=row.id,
        key=ObjectKey(row.model, row.object_pk),
        operation=Operation(row.operation),
        identifiers=row.identifiers,
        extras=row.extras,
        priority=row.priority,
        state=RecordState(row.state),
        attempts=row.attempts,
        created_at=from_db_time(row.created_at),
        available_at=from_db_time(row.available_at),
        last_error=row.last_error,
    )


class ThreadConnections:
    """Closes the database connection of each worker thread that used ``using`` when it ends.

    Django leaves connections opened outside the main thread to the garbage collector, which warns
    (and leaks them until it runs).
    """

    def __init__(self, using: str) -> None:
        self.using = using
        self._local = threading.local()

    def track(self) -> None:
        """Call before using the connection in the current thread."""
        if threading.current_thread() is threading.main_thread():
            return
        if getattr(self._local, "closer", None) is None:
            self._local.closer = _CloseOnThreadExit(connections[self.using])


class _CloseOnThreadExit:
    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self._connection = connection

    def __del__(self) -> None:
        raw = self._connection.connection
        if raw is not None:
            raw.close()
