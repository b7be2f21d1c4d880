"""Every exception meisa-sync raises.

::

    MeisaSyncError
    ├── ConfigurationError            a setting or registration is missing or wrong
    │   └── MappingDeclarationError   a ContactMapping subclass is declared wrongly
    ├── PayloadError                  a value cannot become a valid upsert payload; names the field
    ├── StrictModeError               strict mode (tests) refused a change at save time
    └── MeisaError                    talking to Meisa failed
        ├── TransportError            no complete HTTP response: timeout, refused, reset
        └── MeisaAPIError             Meisa answered with an error status
            ├── BadRequest            400 (validation_error, invalid_json, ...)
            ├── AuthenticationFailed  401
            ├── PermissionDenied      403
            ├── NotFound              404
            ├── Conflict              409 (identifier_conflict, idempotency_conflict)
            ├── PayloadTooLarge       413
            ├── RateLimited           429, carries ``retry_after`` and the rate-limit headers
            └── ServerError           5xx
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "AuthenticationFailed",
    "BadRequest",
    "ConfigurationError",
    "Conflict",
    "MappingDeclarationError",
    "MeisaAPIError",
    "MeisaError",
    "MeisaSyncError",
    "NotFound",
    "PayloadError",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "StrictModeError",
    "TransportError",
]


class MeisaSyncError(Exception):
    """Base class of every error raised by meisa-sync."""


class ConfigurationError(MeisaSyncError):
    """A setting, registration or environment variable is missing or invalid."""


class MappingDeclarationError(ConfigurationError, TypeError):
    """A ``ContactMapping`` subclass is declared wrongly.

    Raised when the class statement runs, with a message that says how to fix the declaration.
    """


class PayloadError(MeisaSyncError, ValueError):
    """A value cannot be turned into a valid upsert payload.

    ``field`` is the payload path of the offending value (``"email"``, ``"custom_fields.mrr"``,
    ``"tag_names[3]"``); the message always starts with it.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")


class StrictModeError(MeisaSyncError):
    """Strict mode built the payload at save time and it failed; the save is refused."""


class MeisaError(MeisaSyncError):
    """Base class of failures talking to a Meisa server."""


class TransportError(MeisaError):
    """No complete HTTP response arrived: a timeout, a refused or broken connection."""


class MeisaAPIError(MeisaError):
    """Meisa answered with an error status (CONTRACT.md §1's error shape)."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        details: Sequence[Mapping[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})
        super().__init__(f"{status_code} {code}: {message}")


class BadRequest(MeisaAPIError):
    """400: the request was refused as invalid; retrying it unchanged cannot succeed."""


class AuthenticationFailed(MeisaAPIError):
    """401: missing, unknown or revoked credentials."""


class PermissionDenied(MeisaAPIError):
    """403: the key lacks a scope, or a write-only key called a read endpoint."""


class NotFound(MeisaAPIError):
    """404: no such contact, sequence or resource."""


class Conflict(MeisaAPIError):
    """409: the identifiers belong to different contacts, or an idempotency key was reused."""


class PayloadTooLarge(MeisaAPIError):
    """413: the body is over the server's limit."""


class RateLimited(MeisaAPIError):
    """429: wait ``retry_after`` seconds before the key is admitted again."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        retry_after: float,
        details: Sequence[Mapping[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, code, message, details=details, headers=headers)
        self.retry_after = retry_after


class ServerError(MeisaAPIError):
    """5xx: the server failed; the request may be retried."""
