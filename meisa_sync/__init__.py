"""meisa-sync: keep a web app's users in sync with Meisa.

The public API is what ``__all__`` lists; everything else is internal.
"""

from __future__ import annotations

from meisa_sync.app import SyncApp
from meisa_sync.exceptions import (
    AuthenticationFailed,
    BadRequest,
    ConfigurationError,
    Conflict,
    MappingDeclarationError,
    MeisaAPIError,
    MeisaError,
    MeisaSyncError,
    NotFound,
    PayloadError,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    StrictModeError,
    TransportError,
)
from meisa_sync.records import (
    ChangeRecord,
    ClaimedObject,
    NewChange,
    ObjectKey,
    Operation,
    OutboxStats,
    Priority,
    RecordState,
)
from meisa_sync.source import ObjectSource
from meisa_sync.store import OutboxStore

__version__ = "0.1.0"

__all__ = [
    "AuthenticationFailed",
    "BadRequest",
    "ChangeRecord",
    "ClaimedObject",
    "ConfigurationError",
    "Conflict",
    "MappingDeclarationError",
    "MeisaAPIError",
    "MeisaError",
    "MeisaSyncError",
    "NewChange",
    "NotFound",
    "ObjectKey",
    "ObjectSource",
    "Operation",
    "OutboxStats",
    "OutboxStore",
    "PayloadError",
    "PayloadTooLarge",
    "PermissionDenied",
    "Priority",
    "RateLimited",
    "RecordState",
    "ServerError",
    "StrictModeError",
    "SyncApp",
    "TransportError",
]
