"""The outbox and object-state tables (the same as ``meisa_sync_sqlalchemy.tables``)."""

from __future__ import annotations

from typing import Any, ClassVar

import django
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

HAS_COMPOSITE_PRIMARY_KEY = django.VERSION >= (5, 2)

_STATE_COLUMNS: list[tuple[str, models.Field[Any, Any]]] = [
    ("object_pk", models.CharField(max_length=64, verbose_name="object primary key")),
    ("lease_owner", models.CharField(blank=True, max_length=100, null=True)),
    ("lease_expires_at", models.DateTimeField(blank=True, null=True)),
    ("payload_hash", models.CharField(blank=True, max_length=64, null=True)),
    (
        "payload",
        models.TextField(
            blank=True, help_text="The last acknowledged payload, canonical JSON.", null=True
        ),
    ),
    (
        "remote_id",
        models.CharField(blank=True, max_length=64, null=True, verbose_name="Meisa contact id"),
    ),
    ("last_sent_at", models.DateTimeField(blank=True, null=True)),
]
_STATE_OPTIONS = {"db_table": "meisa_sync_object_state", "verbose_name": "object state"}


def _create_state_table(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Django < 5.2 cannot declare a composite primary key, so write the table's DDL directly."""
    connection = schema_editor.connection
    quote = schema_editor.quote_name
    columns = [f"{quote('model')} {models.CharField(max_length=100).db_type(connection)} NOT NULL"]
    for name, field in _STATE_COLUMNS:
        null = "NULL" if field.null else "NOT NULL"
        columns.append(f"{quote(name)} {field.db_type(connection)} {null}")
    columns.append(f"PRIMARY KEY ({quote('model')}, {quote('object_pk')})")
    schema_editor.execute(f"CREATE TABLE {quote('meisa_sync_object_state')} ({', '.join(columns)})")


def _drop_state_table(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(f"DROP TABLE {schema_editor.quote_name('meisa_sync_object_state')}")


def _object_state_operations() -> list[migrations.operations.base.Operation]:
    if HAS_COMPOSITE_PRIMARY_KEY:
        return [
            migrations.CreateModel(
                name="ObjectState",
                fields=[
                    ("pk", models.CompositePrimaryKey("model", "object_pk", serialize=False)),
                    ("model", models.CharField(max_length=100)),
                    *_STATE_COLUMNS,
                ],
                options=_STATE_OPTIONS,
            )
        ]
    return [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ObjectState",
                    fields=[
                        (
                            "model",
                            models.CharField(max_length=100, primary_key=True, serialize=False),
                        ),
                        *_STATE_COLUMNS,
                    ],
                    options=_STATE_OPTIONS,
                )
            ],
            database_operations=[migrations.RunPython(_create_state_table, _drop_state_table)],
        )
    ]


class Migration(migrations.Migration):
    initial = True

    dependencies: ClassVar[list[tuple[str, str]]] = []

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        migrations.CreateModel(
            name="OutboxRecord",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                (
                    "model",
                    models.CharField(
                        help_text="Model label of the changed object.", max_length=100
                    ),
                ),
                ("object_pk", models.CharField(max_length=64, verbose_name="object primary key")),
                (
                    "operation",
                    models.CharField(
                        choices=[("upsert", "upsert"), ("delete", "delete")], max_length=10
                    ),
                ),
                (
                    "identifiers",
                    models.JSONField(
                        blank=True,
                        help_text="The contact's identifiers, captured when it was deleted.",
                        null=True,
                    ),
                ),
                (
                    "extras",
                    models.JSONField(blank=True, help_text="One-off custom fields.", null=True),
                ),
                (
                    "priority",
                    models.SmallIntegerField(
                        default=0, help_text="0 live, 100 backfill; lower first."
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[("pending", "pending"), ("dead", "dead")],
                        default="pending",
                        max_length=10,
                    ),
                ),
                ("attempts", models.IntegerField(default=0)),
                ("created_at", models.DateTimeField()),
                (
                    "available_at",
                    models.DateTimeField(
                        help_text="When a pending record is due; when a dead record died."
                    ),
                ),
                ("last_error", models.TextField(blank=True, null=True)),
            ],
            options={
                "verbose_name": "outbox record",
                "db_table": "meisa_sync_outbox",
                "indexes": [
                    models.Index(
                        fields=["state", "priority", "id"], name="meisa_sync_outbox_claim_idx"
                    ),
                    models.Index(
                        fields=["model", "object_pk"], name="meisa_sync_outbox_object_idx"
                    ),
                ],
            },
        ),
        *_object_state_operations(),
    ]
