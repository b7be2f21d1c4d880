"""Backfill: record every existing row of the mapped models, below live changes' priority.

Rows are walked by primary key (``pk > last ORDER BY pk LIMIT n``, flat however far in); each batch
is one transaction holding the batch's ``Priority.BACKFILL`` records and the move of the cursor. The
cursor is the object-state row ``(model="meisa_sync:backfill:<label>", object_pk="cursor")`` whose
``payload`` is ``{"after": "<last pk recorded>", "done": false}``, as with the SQLAlchemy plugin,
so an interrupted run resumes after its last committed batch and a finished one is not run again
unless restarted. ``manage.py meisa_sync backfill`` drives it through the core's ``backfill``
command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import models, transaction

from meisa_sync.backfill import (
    CURSOR_PK,
    BackfillCursor,
    BackfillProgress,
    BackfillResult,
    cursor_model,
)
from meisa_sync.records import NewChange, ObjectKey, Priority
from meisa_sync_django.conf import sync_settings
from meisa_sync_django.exceptions import ImproperlyConfigured
from meisa_sync_django.models import ObjectState, OutboxRecord
from meisa_sync_django.outbox import db_now
from meisa_sync_django.registry import MappedModel, registry

__all__ = [
    "BackfillProgress",
    "BackfillResult",
    "DjangoBackfill",
    "cursor_model",
    "project_backfill",
]


class DjangoBackfill:
    """Backfills the registered mappings' models on database ``using``."""

    def __init__(self, using: str = "default") -> None:
        self.using = using

    def backfill_models(self) -> list[str]:
        """The labels of the mapped models."""
        return [mapped.label for mapped in registry.mapped_models()]

    def backfill(
        self,
        model: str | None = None,
        *,
        batch_size: int = 1000,
        restart: bool = False,
        progress: Callable[[Any], None] | None = None,
    ) -> list[BackfillResult]:
        """Backfill ``model`` (a label), or every mapped model; one result per model."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        mapped = registry.mapped_models()
        if model is not None:
            mapped = [entry for entry in mapped if entry.label == model]
            if not mapped:
                known = ", ".join(self.backfill_models()) or "none"
                raise ImproperlyConfigured(f"{model!r} is not a mapped model (mapped: {known})")
        return [self._run(entry, batch_size, restart, progress) for entry in mapped]

    def _run(
        self,
        mapped: MappedModel,
        batch_size: int,
        restart: bool,
        progress: Callable[[Any], None] | None,
    ) -> BackfillResult:
        rows = mapped.model._base_manager.using(self.using)
        with transaction.atomic(using=self.using):
            cursor = None if restart else self._read_cursor(mapped.label)
            if cursor is not None and cursor.done:
                return BackfillResult(mapped.label, 0, cursor.after, already_complete=True)
            resumed_after = cursor.after if cursor else None
            after = _pk_value(mapped.model, resumed_after)
            total = _after(rows, after).count()
            self._write_cursor(mapped.label, resumed_after, done=False)
        recorded = 0
        while True:
            with transaction.atomic(using=self.using):
                pks = list(
                    _after(rows, after).order_by("pk").values_list("pk", flat=True)[:batch_size]
                )
                if not pks:
                    self._write_cursor(mapped.label, _text(after), done=True)
                    break
                self._record(mapped, pks)
                after = pks[-1]
                self._write_cursor(mapped.label, _text(after), done=False)
            recorded += len(pks)
            if progress is not None:
                progress(BackfillProgress(mapped.label, recorded, max(total, recorded), after))
        return BackfillResult(mapped.label, recorded, resumed_after)

    def _record(self, mapped: MappedModel, pks: list[Any]) -> None:
        now = db_now()
        changes = [
            NewChange(ObjectKey(mapped.label, str(pk)), priority=Priority.BACKFILL) for pk in pks
        ]
        OutboxRecord.objects.using(self.using).bulk_create(
            [
                OutboxRecord(
                    model=change.key.model,
                    object_pk=change.key.pk,
                    operation=change.operation.value,
                    priority=change.priority,
                    created_at=now,
                    available_at=now,
                )
                for change in changes
            ]
        )

    def _cursor_rows(self, label: str) -> models.QuerySet[ObjectState]:
        rows: models.QuerySet[ObjectState] = ObjectState.objects.using(self.using).filter(
            model=cursor_model(label), object_pk=CURSOR_PK
        )
        return rows

    def _read_cursor(self, label: str) -> BackfillCursor | None:
        payload = self._cursor_rows(label).values_list("payload", flat=True).first()
        return BackfillCursor.from_payload(payload)

    def _write_cursor(self, label: str, after: str | None, *, done: bool) -> None:
        payload = BackfillCursor(after, done).to_payload()
        if not self._cursor_rows(label).update(payload=payload):
            ObjectState.objects.using(self.using).bulk_create(
                [ObjectState(model=cursor_model(label), object_pk=CURSOR_PK, payload=payload)]
            )


def project_backfill() -> DjangoBackfill:
    """The backfill of the running project (``meisa-sync backfill --app`` calls it)."""
    return DjangoBackfill(sync_settings().database)


def _after(rows: models.QuerySet[Any], after: object) -> models.QuerySet[Any]:
    return rows if after is None else rows.filter(pk__gt=after)


def _pk_value(model: type[models.Model], text: str | None) -> object:
    if text is None:
        return None
    pk = model._meta.pk
    assert pk is not None
    return pk.to_python(text)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
