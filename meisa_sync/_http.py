"""What the sync and async clients share: settings, request building, and reading responses.

Nothing here does I/O, so ``MeisaClient`` and ``AsyncMeisaClient`` differ only in how they send.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any
from urllib.parse import quote

import httpx

from meisa_sync.exceptions import (
    AuthenticationFailed,
    BadRequest,
    ConfigurationError,
    Conflict,
    MeisaAPIError,
    NotFound,
    PayloadError,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    TransportError,
)
from meisa_sync.ratelimit import RateLimitInfo

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "Call",
    "MeisaResponse",
    "Settings",
    "api_error",
    "read_response",
    "redact_key",
    "transport_error",
]

DEFAULT_BASE_URL = "https://api.meisa.io/api/v1"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
API_KEY_ENV = "MEISA_API_KEY"
BASE_URL_ENV = "MEISA_BASE_URL"
MAX_IDEMPOTENCY_KEY = 255

_KEY_PREFIX = re.compile(r"^(meisa_(?:live|test)_)(.*)$")
_IDENTIFIERS = frozenset({"email", "external_id"})
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


def _library_version() -> str:
    try:
        return metadata.version("meisa-sync")
    except metadata.PackageNotFoundError:
        return "0+unknown"


USER_AGENT = f"meisa-sync/{_library_version()} httpx/{httpx.__version__}"


def redact_key(key: str) -> str:
    """The displayable prefix of an API key (``meisa_live_ab12…``), as the dashboard shows it."""
    match = _KEY_PREFIX.match(key)
    if match:
        return f"{match.group(1)}{match.group(2)[:4]}…"
    return f"{key[:4]}…"


@dataclass(frozen=True)
class Settings:
    """The resolved API key and base URL; the key is hidden from ``repr``."""

    api_key: str = field(repr=False)
    base_url: str

    @classmethod
    def resolve(cls, api_key: str | None, base_url: str | None) -> Settings:
        """Arguments first, then ``MEISA_API_KEY`` / ``MEISA_BASE_URL``, then the default URL."""
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        key = (key or "").strip()
        if not key:
            raise ConfigurationError(
                f"no Meisa API key: pass api_key=... or set the {API_KEY_ENV} environment variable"
            )
        if not key.isascii() or any(character.isspace() for character in key):
            raise ConfigurationError(
                f"the Meisa API key ({redact_key(key)}) contains spaces or non-ASCII characters; "
                f"check {API_KEY_ENV}"
            )
        url = (base_url if base_url is not None else os.environ.get(BASE_URL_ENV)) or ""
        url = url.strip() or DEFAULT_BASE_URL
        parsed = httpx.URL(url)
        if parsed.scheme not in {"http", "https"} or not parsed.host:
            raise ConfigurationError(
                f"the Meisa base URL {url!r} is not an http(s) URL; check {BASE_URL_ENV} "
                f"(default {DEFAULT_BASE_URL})"
            )
        return cls(api_key=key, base_url=url.rstrip("/"))

    @property
    def key_prefix(self) -> str:
        return redact_key(self.api_key)

    def redact(self, text: str) -> str:
        """``text`` with the key replaced by its prefix: for anything shown or logged."""
        return text.replace(self.api_key, self.key_prefix)


@dataclass(frozen=True)
class Call:
    """One API call, ready for either client to send."""

    path: str
    body: bytes
    idempotency_key: str | None = None

    def url(self, settings: Settings) -> str:
        return f"{settings.base_url}/{self.path}"

    def headers(self, settings: Settings) -> dict[str, str]:
        headers = {
            "X-API-Key": settings.api_key,
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        if self.idempotency_key is not None:
            headers["Idempotency-Key"] = self.idempotency_key
        return headers

    @classmethod
    def upsert(cls, payload: Mapping[str, Any], idempotency_key: str | None) -> Call:
        return cls("contacts/upsert/", _encode(payload), _checked_key(idempotency_key))

    @classmethod
    def tag(
        cls,
        identifiers: Mapping[str, Any],
        add: Iterable[str],
        remove: Iterable[str],
        idempotency_key: str | None,
    ) -> Call:
        body = {**_checked_identifiers(identifiers), "add": list(add), "remove": list(remove)}
        return cls("contacts/tags/", _encode(body), _checked_key(idempotency_key))

    @classmethod
    def enrollment(
        cls,
        action: str,
        sequence: str,
        identifiers: Mapping[str, Any],
        idempotency_key: str | None,
    ) -> Call:
        if not isinstance(sequence, str) or not sequence:
            raise ValueError(f"sequence: must be a non-empty slug, got {sequence!r}")
        path = f"sequences/{quote(sequence, safe='')}/{action}/"
        body = _checked_identifiers(identifiers)
        return cls(path, _encode(body), _checked_key(idempotency_key))

    @classmethod
    def delete(cls, identifiers: Mapping[str, Any], idempotency_key: str | None) -> Call:
        body = _checked_identifiers(identifiers)
        return cls("contacts/delete/", _encode(body), _checked_key(idempotency_key))


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


def _encode(body: Mapping[str, Any]) -> bytes:
    try:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise PayloadError("payload", f"not finite JSON: {exc}") from None
    except TypeError as exc:
        raise PayloadError("payload", f"not JSON serialisable: {exc}") from None
    return text.encode("utf-8")


def _checked_identifiers(identifiers: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(identifiers, Mapping):
        raise PayloadError("identifiers", "must be a mapping with email and/or external_id")
    unknown = sorted(set(identifiers) - _IDENTIFIERS)
    if unknown:
        raise PayloadError(
            f"identifiers.{unknown[0]}", "not an identifier (only email and external_id are)"
        )
    present = {name: value for name, value in identifiers.items() if value is not None}
    if not present:
        raise PayloadError("identifiers", "give email or external_id")
    for name, value in present.items():
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise PayloadError(
                f"identifiers.{name}", f"must be a string, got {type(value).__name__}"
            )
    return present


def _checked_key(idempotency_key: str | None) -> str | None:
    if idempotency_key is None:
        return None
    if not idempotency_key or len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        raise ValueError(
            f"idempotency_key: must be 1-{MAX_IDEMPOTENCY_KEY} characters, "
            f"got {len(idempotency_key)}"
        )
    if not idempotency_key.isascii() or not idempotency_key.isprintable():
        raise ValueError("idempotency_key: must be printable ASCII")
    return idempotency_key
