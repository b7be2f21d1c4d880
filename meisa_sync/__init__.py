"""meisa-sync: keep a web app's users in sync with Meisa.

The public API is what ``__all__`` lists; everything else is internal.
"""

from __future__ import annotations

from meisa_sync import signals
from meisa_sync.app import SyncApp
from meisa_sync.client import AsyncMeisaClient, MeisaClient, MeisaResponse
from meisa_sync.contract import validate_upsert
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
from meisa_sync.mapping import ContactMapping, CustomField, Field, Tags
from meisa_sync.memory import InMemorySource, InMemoryStore
from meisa_sync.pacing import Pacer
from meisa_sync.payload import canonical_json, payload_hash
from meisa_sync.ratelimit import RateLimitInfo, RateLimitWindow
from meisa_sync.records import (
    Ack,
    ChangeRecord,
    ClaimedObject,
    NewChange,
    ObjectKey,
    Operation,
    OutboxStats,
    Priority,
    RecordState,
)
from meisa_sync.report import DrainReport
from meisa_sync.retry import RetryPolicy
from meisa_sync.source import ObjectSource
from meisa_sync.store import OutboxStore
from meisa_sync.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "Ack",
    "AsyncMeisaClient",
    "AuthenticationFailed",
    "BadRequest",
    "ChangeRecord",
    "ClaimedObject",
    "ConfigurationError",
    "Conflict",
    "ContactMapping",
    "CustomField",
    "DrainReport",
    "Field",
    "InMemorySource",
    "InMemoryStore",
    "MappingDeclarationError",
    "MeisaAPIError",
    "MeisaClient",
    "MeisaError",
    "MeisaResponse",
    "MeisaSyncError",
    "NewChange",
    "NotFound",
    "ObjectKey",
    "ObjectSource",
    "Operation",
    "OutboxStats",
    "OutboxStore",
    "Pacer",
    "PayloadError",
    "PayloadTooLarge",
    "PermissionDenied",
    "Priority",
    "RateLimitInfo",
    "RateLimitWindow",
    "RateLimited",
    "RecordState",
    "RetryPolicy",
    "ServerError",
    "StrictModeError",
    "SyncApp",
    "Tags",
    "TransportError",
    "Worker",
    "canonical_json",
    "payload_hash",
    "signals",
    "validate_upsert",
]
