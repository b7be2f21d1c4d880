"""Outbox rows as the core's ``ChangeRecord``s."""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping

from meisa_sync.records import ChangeRecord, ObjectKey, Operation, RecordState
from meisa_sync_sqlalchemy._backend import Backend

__all__ = ["change_record"]


def change_record(row: RowMapping, backend: Backend) -> ChangeRecord:
    """The record an outbox row holds, with aware UTC timestamps."""
    identifiers: Any = row["identifiers"]
    extras: Any = row["extras"]
    return ChangeRecord(
        id=int(row["id"]),
        key=ObjectKey(row["model"], row["object_pk"]),
        operation=Operation(row["operation"]),
        identifiers=identifiers,
        extras=extras,
        priority=int(row["priority"]),
        state=RecordState(row["state"]),
        attempts=int(row["attempts"]),
        created_at=backend.from_db(row["created_at"]),
        available_at=backend.from_db(row["available_at"]),
        last_error=row["last_error"],
    )
