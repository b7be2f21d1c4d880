"""The save side: writing change records in the caller's transaction.

``write_changes`` is the one small INSERT the signal handlers run on every watched save.
``record_change`` (one object, optionally with one-off extra fields) and ``record_queryset``
(after a ``QuerySet.update()``, which sends no signals) are the public helpers. All of them write
on the database alias of the object or queryset, so the record commits or rolls back with the
change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.conf import settings
from django.db import connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper

from meisa_sync import signals
from meisa_sync.contract import check_custom_field_name, check_custom_value
from meisa_sync.records import NewChange, ObjectKey, Operation, Priority
from meisa_sync.serialization import to_json_value
from meisa_sync_django.exceptions import ImproperlyConfigured
from meisa_sync_django.registry import registry

__all__ = ["db_now", "record_change", "record_queryset", "write_changes"]

_COLUMNS = (
    "model",
    "object_pk",
    "operation",
    "identifiers",
    "extras",
    "priority",
    "state",
    "attempts",
    "created_at",
    "available_at",
)
_QUERYSET_CHUNK = 1000
_insert_sql: dict[str, str] = {}


def db_now() -> dt.datetime:
    """The current UTC time as the ORM stores it: aware under ``USE_TZ``, else naive UTC."""
    now = dt.datetime.now(dt.timezone.utc)
    return now if settings.USE_TZ else now.replace(tzinfo=None)


def write_changes(
    using: str, changes: Sequence[NewChange], *, now: dt.datetime | None = None
) -> list[int]:
    """INSERT the records on ``using`` in its current transaction; return their ids.

    ``now`` (as ``db_now()`` gives it) is the records' creation time, the current time by default.
    """
    connection = connections[using]
    sql = _insert_sql.get(connection.alias)
    if sql is None:
        sql = _insert_sql[connection.alias] = _build_insert_sql(connection)
    timestamp = connection.ops.adapt_datetimefield_value(now or db_now())
    ids: list[int] = []
    with connection.cursor() as cursor:
        for change in changes:
            cursor.execute(
                sql,
                (
                    change.key.model,
                    change.key.pk,
                    change.operation.value,
                    _json(connection, change.identifiers),
                    _json(connection, change.extras),
                    int(change.priority),
                    "pending",
                    0,
                    timestamp,
                    timestamp,
                ),
            )
            if connection.features.can_return_columns_from_insert:
                row = cursor.fetchone()
                assert row is not None
                ids.append(int(row[0]))
            else:
                ids.append(int(cursor.lastrowid))
    if signals.enqueued.receivers:
        signals.send_safely(signals.enqueued, registry, changes=list(changes), record_ids=ids)
    return ids


def record_change(
    obj: models.Model,
    extras: Mapping[str, Any] | None = None,
    *,
    using: str | None = None,
    priority: int = Priority.LIVE,
) -> list[int]:
    """Record that ``obj`` changed, with one-off custom fields in ``extras``.

    Call it inside the transaction that changes ``obj``: the record commits with it. ``obj`` is an
    instance of a mapped model, or of a watched related model (then its contact is recorded).
    ``extras`` (``{"churn_reason": "too_expensive"}``) are serialised now, so a bad value fails
    here, naming the field; the worker merges them over the mapping's custom fields, later calls
    winning.
    Returns the ids of the records written.
    """
    mapped, related = registry.for_sender(type(obj))
    keys: list[ObjectKey] = []
    if mapped is not None:
        keys.append(ObjectKey(mapped.label, str(obj.pk)))
    for watch in related:
        target_pk = watch.target_pk(obj)
        if target_pk is not None:
            keys.append(ObjectKey(watch.target.label, str(target_pk)))
    if mapped is None and not related:
        raise ImproperlyConfigured(
            f"{type(obj)._meta.label} is neither mapped nor watched: register a ContactMapping "
            "whose model (or related) is it"
        )
    if obj.pk is None:
        raise ValueError(
            f"cannot record a change of an unsaved {type(obj).__name__}; save it first"
        )
    serialised = _serialise_extras(extras)
    alias = using or obj._state.db or router.db_for_write(type(obj), instance=obj)
    changes = [NewChange(key, extras=serialised, priority=priority) for key in keys]
    return write_changes(alias, changes)


def record_queryset(queryset: models.QuerySet[Any], *, priority: int = Priority.LIVE) -> int:
    """Record a change for every object of ``queryset``; return how many records were written.

    ``QuerySet.update()`` sends no signals, so follow it with this in the same transaction::

        with transaction.atomic():
            users = User.objects.filter(plan="trial")
            users.update(plan="free")
            record_queryset(users)

    A queryset of a watched related model records the contacts its rows belong to.
    """
    model = queryset.model
    mapped, related = registry.for_sender(model)
    if mapped is None and not related:
        raise ImproperlyConfigured(
            f"{model._meta.label} is neither mapped nor watched: register a ContactMapping "
            "whose model (or related) is it"
        )
    alias = queryset.db
    keys: Iterable[ObjectKey]
    if mapped is not None:
        keys = (
            ObjectKey(mapped.label, str(pk))
            for pk in queryset.values_list("pk", flat=True).iterator(chunk_size=_QUERYSET_CHUNK)
        )
    else:
        keys = _related_keys(queryset, related)
    return _write_in_chunks(alias, keys, priority)


def _related_keys(queryset: models.QuerySet[Any], related: Sequence[Any]) -> Iterable[ObjectKey]:
    for watch in related:
        lookup = "__".join(watch.path) + "__pk"
        pks = (
            queryset.exclude(**{f"{lookup}__isnull": True})
            .values_list(lookup, flat=True)
            .distinct()
        )
        for pk in pks.iterator(chunk_size=_QUERYSET_CHUNK):
            yield ObjectKey(watch.target.label, str(pk))


def _write_in_chunks(alias: str, keys: Iterable[ObjectKey], priority: int) -> int:
    from meisa_sync_django.models import OutboxRecord

    now = db_now()
    written = 0
    batch: list[OutboxRecord] = []
    for key in keys:
        batch.append(
            OutboxRecord(
                model=key.model,
                object_pk=key.pk,
                operation=Operation.UPSERT.value,
                priority=priority,
                created_at=now,
                available_at=now,
            )
        )
        if len(batch) >= _QUERYSET_CHUNK:
            OutboxRecord.objects.using(alias).bulk_create(batch)
            written += len(batch)
            batch = []
    if batch:
        OutboxRecord.objects.using(alias).bulk_create(batch)
        written += len(batch)
    return written


def _serialise_extras(extras: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not extras:
        return None
    if not isinstance(extras, Mapping):
        raise TypeError(f"extras must be a dict of custom field names to values, not {extras!r}")
    serialised: dict[str, Any] = {}
    for name, value in extras.items():
        check_custom_field_name(name)
        field = f"custom_fields.{name}"
        serialised[name] = check_custom_value(to_json_value(value, field), field)
    return serialised


def _json(connection: BaseDatabaseWrapper, value: Mapping[str, Any] | None) -> object:
    if value is None:
        return None
    from meisa_sync_django.models import OutboxRecord

    field = OutboxRecord._meta.get_field("extras")
    assert isinstance(field, models.JSONField)
    return field.get_db_prep_save(dict(value), connection)


def _build_insert_sql(connection: BaseDatabaseWrapper) -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(column) for column in _COLUMNS)
    placeholders = ", ".join(["%s"] * len(_COLUMNS))
    sql = f"INSERT INTO {quote('meisa_sync_outbox')} ({columns}) VALUES ({placeholders})"
    if connection.features.can_return_columns_from_insert:
        sql += f" RETURNING {quote('id')}"
    return sql
