"""What every plugin's backfill shares: progress and result types, and where its cursor lives.

A backfill records every existing row of a mapped model at ``Priority.BACKFILL``, walking rows by
primary key, one transaction per batch. Its cursor is a row of the object-state table,
``(model=cursor_model(label), object_pk=CURSOR_PK)``, whose ``payload`` is
``{"after": "<last pk recorded>", "done": false}``: the claim never sees it (it has no records),
and an interrupted run resumes after its last committed batch. The SQLAlchemy and Django plugins
keep the same cursor, so either can resume the other's run on a shared database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = [
    "CURSOR_PK",
    "BackfillCursor",
    "BackfillProgress",
    "BackfillResult",
    "cursor_model",
]

CURSOR_PK = "cursor"


def cursor_model(label: str) -> str:
    """The object-state ``model`` value under which the backfill of ``label`` keeps its cursor."""
    return f"meisa_sync:backfill:{label}"


@dataclass(frozen=True)
class BackfillCursor:
    """How far a model's backfill got: the last primary key recorded, and whether it finished."""

    after: str | None = None
    done: bool = False

    @classmethod
    def from_payload(cls, payload: str | None) -> BackfillCursor | None:
        if payload is None:
            return None
        data = json.loads(payload)
        after = data.get("after")
        return cls(after=None if after is None else str(after), done=bool(data.get("done")))

    def to_payload(self) -> str:
        return json.dumps({"after": self.after, "done": self.done})


@dataclass(frozen=True)
class BackfillProgress:
    """Reported after each committed batch."""

    model: str
    recorded: int
    total: int
    last_pk: object


@dataclass(frozen=True)
class BackfillResult:
    """What one model's backfill did in this run."""

    model: str
    recorded: int
    resumed_after: str | None
    already_complete: bool = False
