"""Building requests to Meisa: settings (API key, base URL), request bodies and headers.

Shared by ``MeisaClient`` and ``AsyncMeisaClient``; nothing here does I/O. Bad input is refused
here, before anything is sent, with an error naming the field.
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

from meisa_sync.exceptions import ConfigurationError, PayloadError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "USER_AGENT",
    "Call",
    "Settings",
    "redact_key",
]

DEFAULT_BASE_URL = "https://api.meisa.io/api/v1"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
API_KEY_ENV = "MEISA_API_KEY"
BASE_URL_ENV = "MEISA_BASE_URL"
MAX_IDEMPOTENCY_KEY = 255

_KEY_PREFIX = re.compile(r"^(meisa_(?:live|test)_)(.*)$")
_IDENTIFIERS = frozenset({"email", "external_id"})


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
