"""meisa-sync for SQLAlchemy 2 applications.

Register your mappings once and every session commit records its users' changes in the outbox::

    from meisa_sync_sqlalchemy import SQLAlchemySync

    sync = SQLAlchemySync(engine, [UserMapping()])

See ``docs/sqlalchemy.md``.
"""

from __future__ import annotations

try:
    import sqlalchemy  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "meisa_sync_sqlalchemy needs SQLAlchemy 2: pip install 'meisa-sync[sqlalchemy]'"
    ) from exc

from meisa_sync_sqlalchemy.app import SQLAlchemySync
from meisa_sync_sqlalchemy.backfill import BackfillProgress, BackfillResult
from meisa_sync_sqlalchemy.exceptions import (
    MissingTablesError,
    UnknownModelError,
    UnsupportedDatabaseError,
    UnsupportedPrimaryKeyError,
)
from meisa_sync_sqlalchemy.recording import record_change, record_select
from meisa_sync_sqlalchemy.source import SessionSource
from meisa_sync_sqlalchemy.store import SQLAlchemyStore
from meisa_sync_sqlalchemy.tables import OutboxTables, outbox_tables

__all__ = [
    "BackfillProgress",
    "BackfillResult",
    "MissingTablesError",
    "OutboxTables",
    "SQLAlchemyStore",
    "SQLAlchemySync",
    "SessionSource",
    "UnknownModelError",
    "UnsupportedDatabaseError",
    "UnsupportedPrimaryKeyError",
    "outbox_tables",
    "record_change",
    "record_select",
]
