"""Reading Meisa's answers: a ``MeisaResponse`` for a 2xx, the typed exception otherwise.

Shared by ``MeisaClient`` and ``AsyncMeisaClient``. Error bodies come from a remote server (or a
proxy in front of it), so anything that is not CONTRACT.md §1's error shape is tolerated; the API
key is redacted from whatever the answer echoes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from meisa_sync._request import Settings
from meisa_sync.exceptions import (
    AuthenticationFailed,
    BadRequest,
    Conflict,
    MeisaAPIError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    TransportError,
)
from meisa_sync.ratelimit import RateLimitInfo

__all__ = ["MeisaResponse", "api_error", "read_response", "transport_error"]

_ERROR_CLASSES: dict[int, type[MeisaAPIError]] = {
    400: BadRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
}
_DEFAULT_CODES = {413: "payload_too_large", 429: "rate_limited", 500: "internal_error"}
_RATE_LIMIT_HEADERS = (
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "ratelimit-policy",
)
_MAX_MESSAGE = 500


@dataclass(frozen=True)
class MeisaResponse:
    """A successful (2xx) answer: the parsed JSON body and the key's rate-limit state."""

    status_code: int
    data: Any
    rate_limit: RateLimitInfo = field(default_factory=RateLimitInfo)

    @property
    def created(self) -> bool:
        """Whether the call created something (201): a new contact or enrollment."""
        return self.status_code == 201

    @property
    def contact_id(self) -> str | None:
        """The Meisa contact id of an upsert or delete answer, when the body has one."""
        if isinstance(self.data, Mapping):
            value = self.data.get("id")
            return value if isinstance(value, str) else None
        return None


def read_response(response: httpx.Response, settings: Settings) -> MeisaResponse:
    """The ``MeisaResponse`` of a 2xx, or the typed ``MeisaAPIError`` for anything else."""
    if not 200 <= response.status_code < 300:
        raise api_error(response, settings)
    rate_limit = RateLimitInfo.from_headers(response.headers)
    if not response.content:
        return MeisaResponse(response.status_code, None, rate_limit)
    try:
        data = json.loads(response.content)
    except ValueError as exc:
        # A 2xx we cannot read may be a truncated body from a proxy: the change may or may not have
        # been applied, which is exactly the situation of a broken connection.
        raise TransportError(
            f"{response.request.method} {settings.redact(str(response.request.url))}: "
            f"{response.status_code} answer is not JSON ({exc})"
        ) from None
    return MeisaResponse(response.status_code, data, rate_limit)


def api_error(response: httpx.Response, settings: Settings) -> MeisaAPIError:
    """The exception for an error answer; tolerates bodies that are not §1's error shape."""
    status = response.status_code
    code, message, details = _error_body(response)
    code = code or _DEFAULT_CODES.get(status) or f"http_{status}"
    message = settings.redact(message or response.reason_phrase or "no message")[:_MAX_MESSAGE]
    details = [
        {
            key: settings.redact(value) if isinstance(value, str) else value
            for key, value in d.items()
        }
        for d in details
    ]
    headers = {
        name: response.headers[name] for name in _RATE_LIMIT_HEADERS if name in response.headers
    }
    if status == 429:
        info = RateLimitInfo.from_headers(response.headers)
        retry_after = info.retry_after if info.retry_after is not None else info.reset
        return RateLimited(
            status,
            code,
            message,
            retry_after=max(1.0, retry_after or 0.0),
            details=details,
            headers=headers,
        )
    cls = ServerError if status >= 500 else _ERROR_CLASSES.get(status, MeisaAPIError)
    return cls(status, code, message, details=details, headers=headers)


def transport_error(
    exc: httpx.HTTPError, method: str, url: str, settings: Settings
) -> TransportError:
    """A ``TransportError`` for a request that got no complete response."""
    kind = type(exc).__name__
    reason = settings.redact(str(exc)) or "no details"
    return TransportError(f"{method} {settings.redact(url)}: {kind}: {reason}")


def _error_body(response: httpx.Response) -> tuple[str | None, str | None, list[dict[str, Any]]]:
    try:
        body = json.loads(response.content)
    except ValueError:
        text = response.content.decode("utf-8", errors="replace").strip()
        return None, " ".join(text.split())[:200] or None, []
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        # Some proxies answer {"message": ...} or {"detail": ...}; keep whatever explains it.
        if isinstance(body, dict):
            for name in ("message", "detail"):
                if isinstance(body.get(name), str):
                    return None, body[name], []
        return None, None, []
    code = error.get("code")
    message = error.get("message")
    raw_details = error.get("details")
    details = (
        [d for d in raw_details if isinstance(d, dict)] if isinstance(raw_details, list) else []
    )
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
        details,
    )
