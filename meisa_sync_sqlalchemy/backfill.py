"""Backfill: record every existing row of a mapped model, in bulk, below live changes' priority.

Rows are walked by primary key (keyset pagination: ``WHERE pk > :last ORDER BY pk LIMIT n``, flat
however far in), and each batch is one transaction holding one multi-row INSERT of
``Priority.BACKFILL`` records plus the move of the backfill's cursor. The cursor lives in the
object-state table, in the row ``(model="meisa_sync:backfill:<table>", object_pk="cursor")``, its
``payload`` a JSON object ``{"after": "<last pk recorded>", "done": false}``. An interrupted run
therefore resumes after the last committed batch: nothing is recorded twice and nothing skipped. A
finished backfill is not run again unless ``restart=True``, which starts over from the first row.

Rows created while a backfill runs are recorded by the live capture anyway, at a higher priority.
Run one backfill per model at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from meisa_sync.backfill import (
    CURSOR_PK,
    BackfillCursor,
    BackfillProgress,
    BackfillResult,
    cursor_model,
)
from meisa_sync.records import NewChange, Operation, Priority
from meisa_sync_sqlalchemy.tables import OutboxTables
from meisa_sync_sqlalchemy.watching import WatchedModel
from meisa_sync_sqlalchemy.writing import OutboxWriter

__all__ = ["Backfill", "BackfillProgress", "BackfillResult", "cursor_model"]


class Backfill:
    """The backfill of one mapped model."""

    def __init__(self, engine: Engine, watched: WatchedModel, tables: OutboxTables) -> None:
        self.engine = engine
        self.watched = watched
        self.tables = tables
        self.writer = OutboxWriter(tables.outbox)
        self._pk = watched.mapper.primary_key[0]

    def batches(self, *, batch_size: int = 1000, after: object = None) -> Iterator[list[object]]:
        """Primary keys in ascending order, ``batch_size`` per list, starting after ``after``."""
        while True:
            with self.engine.connect() as connection:
                pks = self._page(connection, after, batch_size)
            if not pks:
                return
            yield pks
            after = pks[-1]

    def run(
        self,
        *,
        batch_size: int = 1000,
        restart: bool = False,
        progress: Callable[[BackfillProgress], None] | None = None,
    ) -> BackfillResult:
        """Record every row not yet backfilled; see the module's docstring for resuming."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        label = self.watched.label
        with self.engine.begin() as connection:
            cursor = None if restart else self._read_cursor(connection)
            if cursor is not None and cursor.done:
                return BackfillResult(label, 0, cursor.after, already_complete=True)
            resumed_after = cursor.after if cursor else None
            after = self._pk_value(resumed_after) if resumed_after is not None else None
            total = self._remaining(connection, after)
            self._write_cursor(connection, after, done=False)
        recorded = 0
        while True:
            with self.engine.begin() as connection:
                pks = self._page(connection, after, batch_size)
                if not pks:
                    self._write_cursor(connection, after, done=True)
                    break
                self.writer.write(connection, [self._change(pk) for pk in pks])
                after = pks[-1]
                self._write_cursor(connection, after, done=False)
            recorded += len(pks)
            if progress is not None:
                progress(BackfillProgress(label, recorded, max(total, recorded), after))
        return BackfillResult(label, recorded, resumed_after)

    def _change(self, pk: object) -> NewChange:
        return NewChange(self.watched.key_for_pk(pk), Operation.UPSERT, priority=Priority.BACKFILL)

    def _page(self, connection: Connection, after: object, limit: int) -> list[object]:
        query = select(self._pk).order_by(self._pk).limit(limit)
        if after is not None:
            query = query.where(self._pk > after)
        return list(connection.scalars(query))

    def _remaining(self, connection: Connection, after: object) -> int:
        query = select(func.count()).select_from(self._pk.table)
        if after is not None:
            query = query.where(self._pk > after)
        return int(connection.scalar(query) or 0)

    def _pk_value(self, text: str) -> object:
        try:
            python_type: type[Any] = self._pk.type.python_type
        except NotImplementedError:
            return text
        return text if python_type is str else python_type(text)

    def _read_cursor(self, connection: Connection) -> BackfillCursor | None:
        state = self.tables.state
        payload = connection.scalar(
            select(state.c.payload).where(
                state.c.model == cursor_model(self.watched.label), state.c.object_pk == CURSOR_PK
            )
        )
        return BackfillCursor.from_payload(payload)

    def _write_cursor(self, connection: Connection, after: object, *, done: bool) -> None:
        state = self.tables.state
        payload = BackfillCursor(None if after is None else str(after), done).to_payload()
        where = (state.c.model == cursor_model(self.watched.label), state.c.object_pk == CURSOR_PK)
        updated = connection.execute(state.update().where(*where).values(payload=payload))
        if updated.rowcount == 0:
            connection.execute(
                state.insert().values(
                    model=cursor_model(self.watched.label), object_pk=CURSOR_PK, payload=payload
                )
            )
