"""The outbox and object-state tables, attached to the application's ``MetaData``.

Because they live on the user's ``MetaData``, Alembic autogenerate sees them like any other table.
The Django app creates tables of the same names and columns, so the SQLAlchemy store (and
``meisa-sync status --database-url``) can work on either.

Timestamps are UTC. PostgreSQL stores them as ``timestamptz``; MySQL/MariaDB (``DATETIME(6)``) and
SQLite store naive UTC, which the store turns back into aware datetimes when it reads them. Plain
column types (no custom ``TypeDecorator``) keep Alembic's generated migrations importable as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import mysql

__all__ = ["OUTBOX_TABLE", "STATE_TABLE", "OutboxTables", "outbox_tables"]

OUTBOX_TABLE = "meisa_sync_outbox"
STATE_TABLE = "meisa_sync_object_state"

# BIGINT on PostgreSQL/MySQL, but SQLite only autoincrements a column declared INTEGER.
_BigId = BigInteger().with_variant(Integer(), "sqlite")
# MySQL's DATETIME keeps whole seconds unless told otherwise, and rounds: leases and due times need
# microseconds (Django's DateTimeField makes the same DATETIME(6)).
_Timestamp = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class OutboxTables:
    outbox: Table
    state: Table


def outbox_tables(metadata: MetaData) -> OutboxTables:
    """Return the two tables on ``metadata``, defining them on first use."""
    key = f"{metadata.schema}.{OUTBOX_TABLE}" if metadata.schema else OUTBOX_TABLE
    if key in metadata.tables:
        state_key = f"{metadata.schema}.{STATE_TABLE}" if metadata.schema else STATE_TABLE
        return OutboxTables(metadata.tables[key], metadata.tables[state_key])
    outbox = Table(
        OUTBOX_TABLE,
        metadata,
        Column("id", _BigId, primary_key=True, autoincrement=True),
        Column("model", String(100), nullable=False),
        Column("object_pk", String(64), nullable=False),
        Column("operation", String(10), nullable=False),
        Column("identifiers", JSON, nullable=True),
        Column("extras", JSON, nullable=True),
        Column("priority", SmallInteger, nullable=False, default=0),
        Column("state", String(10), nullable=False, default="pending"),
        Column("attempts", Integer, nullable=False, default=0),
        Column("created_at", _Timestamp, nullable=False, default=_utc_now),
        Column("available_at", _Timestamp, nullable=False, default=_utc_now),
        Column("last_error", Text, nullable=True),
        # The claim walks this index: state = 'pending', one priority at a time, the range due by
        # now in (available_at, id) order; records backing off sit past that range, unread.
        Index("meisa_sync_outbox_due_idx", "state", "priority", "available_at", "id"),
        Index("meisa_sync_outbox_object_idx", "model", "object_pk"),
    )
    state = Table(
        STATE_TABLE,
        metadata,
        Column("model", String(100), primary_key=True),
        Column("object_pk", String(64), primary_key=True),
        Column("lease_owner", String(100), nullable=True),
        Column("lease_expires_at", _Timestamp, nullable=True),
        Column("payload_hash", String(64), nullable=True),
        Column("payload", Text, nullable=True),
        Column("remote_id", String(64), nullable=True),
        Column("last_sent_at", _Timestamp, nullable=True),
    )
    return OutboxTables(outbox, state)
