"""Acknowledging many objects in one transaction: ``SQLAlchemyStore.ack_many``.

The drain worker acknowledges objects in groups, so a commit (the expensive part: a WAL flush on
PostgreSQL, the single write lock on SQLite) is paid once per group instead of once per object.
Whatever the group's size, the transaction runs two statements per 500 objects: a DELETE of the
acknowledged records, and one upsert of the objects' state rows that also frees the leases this
worker holds (a lease another worker took over is left alone, as ``ack`` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Insert, case, delete, func, literal, null, tuple_
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection

from meisa_sync.records import Ack
from meisa_sync.store import fold_acks
from meisa_sync_sqlalchemy._backend import Backend
from meisa_sync_sqlalchemy.tables import OutboxTables

__all__ = ["ack_many"]

# Objects per statement: the DELETE binds four parameters per record, the upsert eight per
# object, well under SQLite's limit of 32,766 parameters per statement.
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

    def write(connection: Connection) -> None:
        for start in range(0, len(folded), _CHUNK):
            chunk = folded[start : start + _CHUNK]
            _delete_records(connection, tables, chunk)
            connection.execute(_settle_states(backend, tables, worker_id, chunk, now))

    backend.run(write)


def _delete_records(connection: Connection, tables: OutboxTables, acks: Sequence[Ack]) -> None:
    """Delete each ack's records, only those of its own object (ids of other objects stay)."""
    outbox = tables.outbox
    wanted = [(record_id, a.key.model, a.key.pk) for a in acks for record_id in a.record_ids]
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        # ``id IN`` lets every database find the rows by primary key; the row comparison keeps
        # only the ids that belong to the object they were acknowledged for.
        connection.execute(
            delete(outbox).where(
                outbox.c.id.in_([record_id for record_id, _, _ in chunk]),
                tuple_(outbox.c.id, outbox.c.model, outbox.c.object_pk).in_(chunk),
            )
        )


def _settle_states(
    backend: Backend,
    tables: OutboxTables,
    worker_id: str,
    acks: Sequence[Ack],
    now: datetime,
) -> Insert:
    """One INSERT of the objects' state rows that updates the existing ones: the acknowledged
    payload, the contact id when one is given, and the lease freed when ``worker_id`` holds it."""
    state = tables.state
    rows = [
        {
            "model": a.key.model,
            "object_pk": a.key.pk,
            "payload_hash": a.payload_hash,
            "payload": a.payload if a.payload_hash is not None else None,
            "remote_id": a.remote_id,
            "last_sent_at": now,
        }
        for a in acks
    ]
    ours: ColumnElement[bool] = state.c.lease_owner == literal(worker_id)
    if backend.name == "mysql":
        statement = mysql.insert(state).values(rows)
        new: Any = statement.inserted
        # MySQL applies the assignments left to right, each seeing the ones before it: the
        # expiry is cleared while lease_owner still names the holder.
        return statement.on_duplicate_key_update(
            [
                ("payload_hash", new.payload_hash),
                ("payload", new.payload),
                ("remote_id", func.coalesce(new.remote_id, state.c.remote_id)),
                ("last_sent_at", new.last_sent_at),
                ("lease_expires_at", case((ours, null()), else_=state.c.lease_expires_at)),
                ("lease_owner", case((ours, null()), else_=state.c.lease_owner)),
            ]
        )
    upsert: postgresql.Insert | sqlite.Insert
    if backend.name == "postgresql":
        upsert = postgresql.insert(state).values(rows)
    else:
        upsert = sqlite.insert(state).values(rows)
    excluded = upsert.excluded
    return upsert.on_conflict_do_update(
        index_elements=[state.c.model, state.c.object_pk],
        set_={
            "payload_hash": excluded.payload_hash,
            "payload": excluded.payload,
            "remote_id": func.coalesce(excluded.remote_id, state.c.remote_id),
            "last_sent_at": excluded.last_sent_at,
            "lease_expires_at": case((ours, null()), else_=state.c.lease_expires_at),
            "lease_owner": case((ours, null()), else_=state.c.lease_owner),
        },
    )
