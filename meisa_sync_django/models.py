"""The outbox and per-object state as Django models.

Same table names and columns as ``meisa_sync_sqlalchemy.tables``, so the core's
``meisa-sync status --database-url`` (and the SQLAlchemy store) work on a Django database too.
"""

from __future__ import annotations

from typing import ClassVar

import django
from django.db import models

from meisa_sync.records import Operation, RecordState

__all__ = ["HAS_COMPOSITE_PRIMARY_KEY", "ObjectState", "OutboxRecord"]

# Django 5.2 added composite primary keys. On older versions the table still gets its composite
# primary key (the initial migration writes that DDL), but the model names one column as its pk.
HAS_COMPOSITE_PRIMARY_KEY = django.VERSION >= (5, 2)


class OutboxRecord(models.Model):
    """A change record waiting for Meisa to acknowledge it (CONTRACT.md §10).

    Acknowledged records are deleted, so what stays is pending (maybe leased to a worker) or dead.
    """

    id = models.BigAutoField(primary_key=True)
    model = models.CharField(max_length=100, help_text="Model label of the changed object.")
    object_pk = models.CharField("object primary key", max_length=64)
    operation = models.CharField(max_length=10, choices=[(op.value, op.value) for op in Operation])
    identifiers = models.JSONField(
        null=True, blank=True, help_text="The contact's identifiers, captured when it was deleted."
    )
    extras = models.JSONField(null=True, blank=True, help_text="One-off custom fields.")
    priority = models.SmallIntegerField(default=0, help_text="0 live, 100 backfill; lower first.")
    state = models.CharField(
        max_length=10,
        choices=[(state.value, state.value) for state in RecordState],
        default=RecordState.PENDING.value,
    )
    attempts = models.IntegerField(default=0)
    created_at = models.DateTimeField()
    available_at = models.DateTimeField(
        help_text="When a pending record is due; when a dead record died."
    )
    last_error = models.TextField(null=True, blank=True)

    objects: ClassVar[models.Manager[OutboxRecord]] = models.Manager()

    class Meta:
        db_table = "meisa_sync_outbox"
        verbose_name = "outbox record"
        indexes = [  # noqa: RUF012 (Django reads Meta attributes as plain values)
            # The claim walks this index: state = 'pending', one priority at a time, the range due
            # by now in (available_at, id) order; records backing off sit past it, unread.
            models.Index(
                fields=["state", "priority", "available_at", "id"],
                name="meisa_sync_outbox_due_idx",
            ),
            models.Index(fields=["model", "object_pk"], name="meisa_sync_outbox_object_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.operation} {self.model}:{self.object_pk} ({self.state})"


class ObjectState(models.Model):
    """Per-object lease and the last payload Meisa acknowledged; primary key ``(model, object_pk)``.

    The row is the object's lock: a claim locks it (``SELECT ... FOR UPDATE SKIP LOCKED``) and
    writes the lease. Query it through querysets filtering on ``model`` and ``object_pk``.
    """

    if HAS_COMPOSITE_PRIMARY_KEY:
        pk = models.CompositePrimaryKey("model", "object_pk")
        model = models.CharField(max_length=100)
    else:
        # Django < 5.2 has to be told one column is the key. Only querysets filtering on both
        # columns touch this table (never ``instance.save()``/``delete()``), so the fiction is
        # harmless; the table itself has the composite key (see the initial migration).
        model = models.CharField(max_length=100, primary_key=True)
    object_pk = models.CharField("object primary key", max_length=64)
    lease_owner = models.CharField(max_length=100, null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    payload_hash = models.CharField(max_length=64, null=True, blank=True)
    payload = models.TextField(
        null=True, blank=True, help_text="The last acknowledged payload, canonical JSON."
    )
    remote_id = models.CharField("Meisa contact id", max_length=64, null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[models.Manager[ObjectState]] = models.Manager()

    class Meta:
        db_table = "meisa_sync_object_state"
        verbose_name = "object state"

    def __str__(self) -> str:
        return f"{self.model}:{self.object_pk}"
