"""The outbox writer: one INSERT compiled per dialect, the same rows as a Core ``execute`` writes.

Runs on SQLite, PostgreSQL and MariaDB (``database_url``); the store reads back what was written, so
a value the fast path got wrong (a JSON ``'null'``, a naive timestamp, a lost extra) shows here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, create_engine, event, select

from meisa_sync.records import NewChange, ObjectKey, Operation, Priority
from meisa_sync_sqlalchemy import SQLAlchemyStore, outbox_tables
from meisa_sync_sqlalchemy.tables import OutboxTables
from meisa_sync_sqlalchemy.writing import OutboxWriter

CHANGES = [
    NewChange(ObjectKey("users", "1")),
    NewChange(ObjectKey("users", "2"), extras={"churn_reason": "price", "seats": 3}),
    NewChange(
        ObjectKey("users", "3"),
        Operation.DELETE,
        identifiers={"email": "gone@example.com", "external_id": "3"},
    ),
    NewChange(ObjectKey("users", "4"), priority=Priority.BACKFILL),
]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def tables(engine: Engine) -> Iterator[OutboxTables]:
    metadata = MetaData()
    tables = outbox_tables(metadata)
    metadata.create_all(engine)
    yield tables
    metadata.drop_all(engine)


def written(engine: Engine, tables: OutboxTables) -> list[dict[str, Any]]:
    outbox = tables.outbox
    with engine.connect() as connection:
        rows = connection.execute(select(outbox).order_by(outbox.c.object_pk, outbox.c.id))
        return [dict(row._mapping) for row in rows]


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("id", "created_at", "available_at")}


@pytest.mark.parametrize("how", ["one statement per record", "one executemany"])
def test_writes_what_core_writes(engine: Engine, tables: OutboxTables, how: str) -> None:
    writer = OutboxWriter(tables.outbox)
    with engine.begin() as connection:
        if how == "one executemany":
            assert writer.write(connection, CHANGES) == len(CHANGES)
        else:
            for change in CHANGES:
                assert writer.write(connection, [change]) == 1
    fast = written(engine, tables)
    with engine.begin() as connection:
        connection.execute(tables.outbox.delete())
        connection.execute(tables.outbox.insert(), writer.rows(CHANGES))
    core = written(engine, tables)
    assert [comparable(row) for row in fast] == [comparable(row) for row in core]
    assert fast[0]["identifiers"] is None and fast[0]["extras"] is None
    assert fast[1]["extras"] == {"churn_reason": "price", "seats": 3}
    assert fast[2]["identifiers"] == {"email": "gone@example.com", "external_id": "3"}
    assert [row["priority"] for row in fast] == [0, 0, 0, int(Priority.BACKFILL)]


def test_null_json_is_sql_null(engine: Engine, tables: OutboxTables) -> None:
    with engine.begin() as connection:
        OutboxWriter(tables.outbox).write(connection, CHANGES[:1])
    outbox = tables.outbox
    with engine.connect() as connection:
        nulls = connection.scalar(
            select(outbox.c.id).where(outbox.c.identifiers.is_(None), outbox.c.extras.is_(None))
        )
    assert nulls is not None


def test_the_store_reads_the_records_back(engine: Engine, tables: OutboxTables) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    with engine.begin() as connection:
        OutboxWriter(tables.outbox).write(connection, CHANGES)
    store = SQLAlchemyStore(engine, metadata=tables.outbox.metadata)
    claimed = store.claim("w", limit=10, lease=timedelta(seconds=30))
    by_pk = {item.key.pk: item for item in claimed}
    assert set(by_pk) == {"1", "2", "3", "4"}
    assert by_pk["2"].records[0].extras == {"churn_reason": "price", "seats": 3}
    assert by_pk["3"].records[0].operation is Operation.DELETE
    assert by_pk["3"].records[0].identifiers == {"email": "gone@example.com", "external_id": "3"}
    created = by_pk["1"].records[0].created_at
    assert created.tzinfo is not None and before <= created <= datetime.now(timezone.utc)


def test_cursor_events_see_the_insert(engine: Engine, tables: OutboxTables) -> None:
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(*args: Any) -> None:
        seen.append(args[2])

    with engine.begin() as connection:
        OutboxWriter(tables.outbox).write(connection, CHANGES[:1])
    assert any(statement.startswith("INSERT INTO meisa_sync_outbox") for statement in seen)


def test_the_engine_json_serializer_is_used(database_url: str) -> None:
    calls: list[object] = []

    def serializer(value: object) -> str:
        calls.append(value)
        return json.dumps(value)

    engine = create_engine(database_url, json_serializer=serializer)
    metadata = MetaData()
    tables = outbox_tables(metadata)
    metadata.create_all(engine)
    try:
        with engine.begin() as connection:
            OutboxWriter(tables.outbox).write(connection, CHANGES[1:2])
        assert calls == [{"churn_reason": "price", "seats": 3}]
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def test_a_schema_translate_map_is_applied(engine: Engine) -> None:
    # The map renames the table's schema at execution time, which only Core's execute does; the
    # writer hands such connections to it. (Same schema both sides: portable across backends.)
    metadata = MetaData()
    tables = outbox_tables(metadata)
    metadata.create_all(engine)
    try:
        with engine.begin() as connection:
            mapped = connection.execution_options(schema_translate_map={None: None})
            assert OutboxWriter(tables.outbox).write(mapped, CHANGES) == len(CHANGES)
        rows = written(engine, tables)
        assert [row["object_pk"] for row in rows] == ["1", "2", "3", "4"]
        assert rows[0]["identifiers"] is None and rows[0]["extras"] is None
    finally:
        metadata.drop_all(engine)
