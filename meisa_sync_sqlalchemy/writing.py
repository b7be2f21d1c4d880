"""Writing change records into the outbox table through a caller's connection.

The capture listeners, ``record_change``/``record_select`` and the backfill all write through here,
so every record has the same shape whichever path produced it. Writes go through the connection the
caller hands in, which is what puts them in the caller's transaction (CONTRACT.md §10.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Insert, Table, null

from meisa_sync.records import NewChange, RecordState

__all__ = ["OutboxWriter"]


class OutboxWriter:
    """Inserts ``NewChange`` values into one outbox table, as one statement per call."""

    def __init__(self, outbox: Table) -> None:
        self.outbox = outbox
        self._insert: Insert = outbox.insert()

    def rows(
        self, changes: Sequence[NewChange], *, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """The parameter dicts for ``changes``; every dict has the same keys (one executemany)."""
        moment = now or datetime.now(timezone.utc)
        pending = RecordState.PENDING.value
        return [
            {
                "model": change.key.model,
                "object_pk": change.key.pk,
                "operation": change.operation.value,
                # null() is SQL NULL; a bare None would be stored as the JSON text 'null'.
                "identifiers": null() if change.identifiers is None else dict(change.identifiers),
                "extras": dict(change.extras) if change.extras else null(),
                "priority": int(change.priority),
                "state": pending,
                "attempts": 0,
                "created_at": moment,
                "available_at": moment,
                "last_error": None,
            }
            for change in changes
        ]

    def write(self, connection: Connection, changes: Sequence[NewChange]) -> int:
        """Insert ``changes`` with one (executemany) statement; return how many were written."""
        if not changes:
            return 0
        now = datetime.now(timezone.utc)
        if connection.dialect.name != "postgresql":
            # As the store keeps them: naive UTC wherever the column has no zone (tables.py).
            now = now.replace(tzinfo=None)
        connection.execute(self._insert, self.rows(changes, now=now))
        return len(changes)
