"""The errors ``meisa_sync_sqlalchemy`` adds to the core's tree (``meisa_sync.exceptions``).

::

    MeisaSyncError
    └── ConfigurationError
        ├── UnsupportedDatabaseError     the database cannot run the outbox safely (no SKIP LOCKED)
        ├── MissingTablesError           the outbox tables are not in the database
        ├── UnknownModelError            a change record names a model the source was not given
        └── UnsupportedPrimaryKeyError   a model whose primary key is not one column

Catching ``meisa_sync.ConfigurationError`` catches all of them.
"""

from __future__ import annotations

from meisa_sync.exceptions import ConfigurationError

__all__ = [
    "MissingTablesError",
    "UnknownModelError",
    "UnsupportedDatabaseError",
    "UnsupportedPrimaryKeyError",
]


class UnsupportedDatabaseError(ConfigurationError):
    """The database cannot lease objects safely.

    The claim needs ``FOR UPDATE SKIP LOCKED`` (PostgreSQL, MySQL 8.0.1+, MariaDB 10.6+) or SQLite's
    single writer; other databases and older versions are refused rather than run unsafely.
    """


class MissingTablesError(ConfigurationError):
    """``meisa_sync_outbox`` or ``meisa_sync_object_state`` does not exist in the database."""


class UnknownModelError(ConfigurationError):
    """A change record names a model label that no mapped class was registered under."""


class UnsupportedPrimaryKeyError(ConfigurationError):
    """A synced model's primary key is not a single column (composite keys are not supported)."""
