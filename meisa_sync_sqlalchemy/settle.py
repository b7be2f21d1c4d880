"""Acknowledging many objects in one transaction: ``SQLAlchemyStore.ack_many``.

The drain worker acknowledges objects in groups, so a commit (the expensive part: a WAL flush on
PostgreSQL, the single write lock on SQLite) is paid once per group instead of once per object.
The transaction runs three statements, the first two built and compiled once: a DELETE of the
acknowledged records (500 per execution); an upsert of the objects' state rows, executed for all
of them at once (an executemany: psycopg pipelines it, PyMySQL and SQLAlchemy make multi-row
INSERTs of it); and the UPDATE freeing the leases this worker holds (``release_leases``: a lease
another worker took over is left alone, as ``ack`` does).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Delete, Insert, bindparam, delete, func, tuple_
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection

from meisa_sync.records import Ack
from meisa_sync.store import fold_acks
from meisa_sync_sqlalchemy._backend import Backend
from meisa_sync_sqlalchemy._sql import release_leases
from meisa_sync_sqlalchemy.tables import OutboxTables

__all__ = ["ack_many"]

# Objects (and records) per statement, well under SQLite's limit of 32,766 parameters.
_CHUNK = 500


def ack_many(
    backend: Backend,
    tables: OutboxTables,
    worker_id: str,
    acks: Sequence[Ack],
    *,
    now: datetime,
) -> None:
    """Write ``acks`` (``OutboxStore.ack_many``'s semantics) in one transaction; ``now`` is the
    ``last_sent_at`` as the backend stores it."""
    folded = sorted(fold_acks(acks), key=lambda item: item.key)
    if not folded:
        return
    delete_records, settle_states = _statements(tables, backend.name)
    wanted = [(record_id, a.key.model, a.key.pk) for a in folded for record_id in a.record_ids]
    states = [
        {
            "model": a.key.model,
            "object_pk": a.key.pk,
            "payload_hash": a.payload_hash,
            "payload": a.payload if a.payload_hash is not None else None,
            "remote_id": a.remote_id,
            "last_sent_at": now,
        }
        for a in folded
    ]

    def write(connection: Connection) -> None:
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            ids = [record_id for record_id, _, _ in chunk]
            connection.execute(delete_records, {"ids": ids, "wanted": chunk})
        for start in range(0, len(states), _CHUNK):
            connection.execute(settle_states, states[start : start + _CHUNK])
            keys = [a.key for a in folded[start : start + _CHUNK]]
            release_leases(connection, tables.state, worker_id, keys)

    backend.run(write)


@functools.lru_cache(maxsize=32)
def _statements(tables: OutboxTables, dialect: str) -> tuple[Delete, Insert]:
    """The two statements, built once per set of tables so that SQLAlchemy compiles them once."""
    outbox = tables.outbox
    # ``id IN`` lets every database find the rows by primary key; the row comparison keeps only
    # the ids that belong to the object they were acknowledged for.
    delete_records = delete(outbox).where(
        outbox.c.id.in_(bindparam("ids", expanding=True)),
        tuple_(outbox.c.id, outbox.c.model, outbox.c.object_pk).in_(
            bindparam("wanted", expanding=True)
        ),
    )
    return delete_records, _settle_states(tables, dialect)


def _settle_states(tables: OutboxTables, dialect: str) -> Insert:
    """An INSERT of an object's state row that updates the existing one, run once per object
    (executemany): the acknowledged payload, and the contact id when one is given."""
    state = tables.state
    if dialect == "mysql":
        statement = mysql.insert(state)
        new: Any = statement.inserted
        return statement.on_duplicate_key_update(
            payload_hash=new.payload_hash,
            payload=new.payload,
            remote_id=func.coalesce(new.remote_id, state.c.remote_id),
            last_sent_at=new.last_sent_at,
        )
    upsert: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        upsert = postgresql.insert(state)
    else:
        upsert = sqlite.insert(state)
    excluded = upsert.excluded
    return upsert.on_conflict_do_update(
        index_elements=[state.c.model, state.c.object_pk],
        set_={
            "payload_hash": excluded.payload_hash,
            "payload": excluded.payload,
            "remote_id": func.coalesce(excluded.remote_id, state.c.remote_id),
            "last_sent_at": excluded.last_sent_at,
        },
    )
