"""Change records: what the outbox holds (CONTRACT.md §10).

A change record says *which object changed* and *how*, never what the payload is: the worker builds
the payload from the committed state at send time.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "Ack",
    "ChangeRecord",
    "ClaimedObject",
    "NewChange",
    "ObjectKey",
    "Operation",
    "OutboxStats",
    "Priority",
    "RecordState",
]


class Operation(str, enum.Enum):
    """What happened to the object."""

    UPSERT = "upsert"
    DELETE = "delete"


class RecordState(str, enum.Enum):
    """Delivery state of a record. Acknowledged records leave the outbox, so there is no "sent"."""

    PENDING = "pending"
    DEAD = "dead"


class Priority(enum.IntEnum):
    """Lower values are claimed first, so a backfill never delays a live change."""

    LIVE = 0
    BACKFILL = 100


@dataclass(frozen=True, order=True)
class ObjectKey:
    """Identity of a synced object: the plugin's model label and the primary key as a string."""

    model: str
    pk: str

    def __str__(self) -> str:
        return f"{self.model}:{self.pk}"


@dataclass(frozen=True)
class NewChange:
    """A change record about to be enqueued.

    ``identifiers`` is set for deletes (the contact's identifiers captured at delete time).
    ``extras`` are one-off custom fields, already serialised to JSON values.
    """

    key: ObjectKey
    operation: Operation = Operation.UPSERT
    identifiers: Mapping[str, str] | None = None
    extras: Mapping[str, Any] | None = None
    priority: int = Priority.LIVE


@dataclass(frozen=True)
class ChangeRecord:
    """A change record as stored in the outbox."""

    id: int
    key: ObjectKey
    operation: Operation
    identifiers: Mapping[str, str] | None
    extras: Mapping[str, Any] | None
    priority: int
    state: RecordState
    attempts: int
    created_at: datetime
    available_at: datetime
    last_error: str | None = None


@dataclass(frozen=True)
class ClaimedObject:
    """One object leased to one worker, with its due pending records (oldest first).

    ``last_payload_hash`` and ``remote_id`` come from the object's state: the hash of the last
    acknowledged payload (for no-op suppression) and the Meisa contact id.
    """

    key: ObjectKey
    records: tuple[ChangeRecord, ...]
    last_payload_hash: str | None = None
    remote_id: str | None = None

    @property
    def newest(self) -> ChangeRecord:
        return self.records[-1]

    @property
    def record_ids(self) -> tuple[int, ...]:
        return tuple(record.id for record in self.records)


@dataclass(frozen=True)
class Ack:
    """One object's acknowledgement, for ``OutboxStore.ack_many``: the arguments of one ``ack``.

    ``record_ids`` leave the outbox; ``payload_hash`` and the canonical ``payload`` JSON become
    the object's last acknowledged payload (``None`` forgets it, e.g. after a delete);
    ``remote_id``, when given, is remembered as the Meisa contact id.
    """

    key: ObjectKey
    record_ids: tuple[int, ...]
    payload_hash: str | None
    payload: str | None = None
    remote_id: str | None = None

    def __post_init__(self) -> None:
        # A list is accepted (and frozen) as readily as a tuple.
        object.__setattr__(self, "record_ids", tuple(self.record_ids))


@dataclass(frozen=True)
class OutboxStats:
    """What ``meisa-sync status`` shows."""

    pending: int
    in_flight: int
    dead: int
    oldest_pending_age: timedelta | None
    last_errors: tuple[ChangeRecord, ...] = field(default=())
