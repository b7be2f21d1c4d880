"""SQL the store and the claim share: picking objects by key, records by id, freeing leases."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Column, ColumnElement, Delete, String, Table, Update, and_, tuple_, update
from sqlalchemy.engine import Connection

from meisa_sync.records import ObjectKey

__all__ = ["check_fits", "key_in", "release_leases", "run_by_ids"]

# SQLite takes at most 32,766 parameters per statement, and an object that changed for days may
# have more records than that: long id lists go in chunks of this many.
_IDS_PER_STATEMENT = 500


def key_in(
    model: ColumnElement[str], object_pk: ColumnElement[str], keys: Sequence[ObjectKey]
) -> ColumnElement[bool]:
    """``(model, object_pk) IN (...)`` for ``keys``."""
    if len(keys) == 1:
        # MariaDB scans the whole table for an UPDATE whose row IN list has one row.
        (key,) = keys
        return and_(model == key.model, object_pk == key.pk)
    return tuple_(model, object_pk).in_([(key.model, key.pk) for key in keys])


def run_by_ids(
    connection: Connection,
    statement: Update | Delete,
    id_column: ColumnElement[int],
    ids: Sequence[int] | None,
) -> int:
    """Run ``statement`` on the rows among ``ids`` (all rows when None); return the row count."""
    if ids is None:
        return connection.execute(statement).rowcount
    unique = list(dict.fromkeys(ids))
    return sum(
        connection.execute(
            statement.where(id_column.in_(unique[start : start + _IDS_PER_STATEMENT]))
        ).rowcount
        for start in range(0, len(unique), _IDS_PER_STATEMENT)
    )


def release_leases(
    connection: Connection, state: Table, worker_id: str, keys: Sequence[ObjectKey]
) -> None:
    """Free the leases ``worker_id`` holds on ``keys``.

    Only the holder frees a lease: a worker whose lease ran out and was taken over must not free
    the new holder's.
    """
    if not keys:
        return
    connection.execute(
        update(state)
        .where(key_in(state.c.model, state.c.object_pk, keys), state.c.lease_owner == worker_id)
        .values(lease_owner=None, lease_expires_at=None)
    )


def check_fits(column: Column[str], value: str, name: str) -> None:
    """Refuse, naming it, a string the column cannot hold (databases differ in what they do)."""
    length = column.type.length if isinstance(column.type, String) else None
    if not value or (length is not None and len(value) > length):
        raise ValueError(f"{name}: must be 1 to {length} characters, got {value!r}")
