"""HTTP clients for the Meisa API (CONTRACT.md §1-5): ``MeisaClient`` and ``AsyncMeisaClient``.

Both send JSON over one pooled, kept-alive ``httpx`` client, authenticate with an API key
(``X-API-Key``), and turn every answer into either a ``MeisaResponse`` (2xx) or the typed
exception of ``meisa_sync.exceptions``: ``MeisaAPIError`` subclasses for error statuses
(``RateLimited`` carries ``retry_after`` and the rate-limit headers), ``TransportError`` when no
complete response arrived.

The API key never appears in a ``repr``, a log line or an exception message; only its display prefix
(``meisa_live_ab12…``) does. A ``MeisaClient`` may be shared by the threads of a worker's pool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx

from meisa_sync._request import DEFAULT_BASE_URL, DEFAULT_LIMITS, DEFAULT_TIMEOUT, Call, Settings
from meisa_sync._response import MeisaResponse, read_response, transport_error

__all__ = ["DEFAULT_BASE_URL", "AsyncMeisaClient", "MeisaClient", "MeisaResponse"]

logger = logging.getLogger(__name__)

Identifiers = Mapping[str, Any]


class _ClientBase:
    """Settings, ownership of the httpx client, and the shared ``repr``."""

    _settings: Settings
    _owns_http_client: bool

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    @property
    def key_prefix(self) -> str:
        """The API key's display prefix, safe to show."""
        return self._settings.key_prefix

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key={self.key_prefix!r})"

    def _log(self, call: Call, status: int | str, started: float) -> None:
        logger.debug(
            "POST %s -> %s in %.1f ms (key %s)",
            call.path,
            status,
            (time.perf_counter() - started) * 1000,
            self.key_prefix,
        )


class MeisaClient(_ClientBase):
    """Synchronous Meisa API client.

    ``api_key`` defaults to ``MEISA_API_KEY`` and ``base_url`` to ``MEISA_BASE_URL``, then to
    ``https://api.meisa.io/api/v1``. Pass ``transport=`` (an ``httpx.BaseTransport``) for tests,
    or a ready ``http_client=`` to tune pooling yourself (it is not closed by ``close()``).
    ``timeout`` and ``limits`` configure the client this class creates (connect 5 s, read 30 s
    by default).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        limits: httpx.Limits | None = None,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._settings = Settings.resolve(api_key, base_url)
        if http_client is not None and transport is not None:
            raise ValueError("pass either transport= or http_client=, not both")
        self._owns_http_client = http_client is None
        self._http = http_client or httpx.Client(
            timeout=timeout,
            limits=limits or DEFAULT_LIMITS,
            transport=transport,
        )

    def upsert(
        self, payload: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> MeisaResponse:
        """Create or update a contact (``POST /contacts/upsert/``); ``data`` is the contact.

        ``created`` tells a new contact (201) from an update (200).
        """
        return self._send(Call.upsert(payload, idempotency_key))

    def tag(
        self,
        identifiers: Identifiers,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        *,
        idempotency_key: str | None = None,
    ) -> MeisaResponse:
        """Add and remove tags of the contact with these identifiers (``POST /contacts/tags/``)."""
        return self._send(Call.tag(identifiers, add, remove, idempotency_key))

    def enroll(
        self, sequence: str, identifiers: Identifiers, *, idempotency_key: str | None = None
    ) -> MeisaResponse:
        """Enroll the contact in the sequence; ``created`` is False when already enrolled."""
        return self._send(Call.enrollment("enroll", sequence, identifiers, idempotency_key))

    def unenroll(
        self, sequence: str, identifiers: Identifiers, *, idempotency_key: str | None = None
    ) -> MeisaResponse:
        """End the contact's active enrollment in the sequence."""
        return self._send(Call.enrollment("unenroll", sequence, identifiers, idempotency_key))

    def delete(
        self, identifiers: Identifiers, *, idempotency_key: str | None = None
    ) -> MeisaResponse:
        """Erase the contact (``POST /contacts/delete/``); ``NotFound`` when there is none."""
        return self._send(Call.delete(identifiers, idempotency_key))

    def close(self) -> None:
        """Close the connection pool (unless the httpx client was passed in)."""
        if self._owns_http_client:
            self._http.close()

    def __enter__(self) -> MeisaClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: Call) -> MeisaResponse:
        url = call.url(self._settings)
        started = time.perf_counter()
        try:
            response = self._http.post(url, content=call.body, headers=call.headers(self._settings))
        except httpx.HTTPError as exc:
            self._log(call, type(exc).__name__, started)
            raise transport_error(exc, "POST", url, self._settings) from None
        self._log(call, response.status_code, started)
        return read_response(response, self._settings)


class AsyncMeisaClient(_ClientBase):
    """Asynchronous twin of ``MeisaClient``, with the same arguments and methods (awaitable)."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        limits: httpx.Limits | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._settings = Settings.resolve(api_key, base_url)
        if http_client is not None and transport is not None:
            raise ValueError("pass either transport= or http_client=, not both")
        self._owns_http_client = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=timeout,
            limits=limits or DEFAULT_LIMITS,
            transport=transport,
        )

    async def upsert(
        self, payload: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> MeisaResponse:
        """Create or update a contact (``POST /contacts/upsert/``); ``data`` is the contact."""
        return await self._send(Call.upsert(payload, idempotency_key))

    async def tag(
        self,
        identifiers: Identifiers,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        *,
        idempotency_key: str | None = None,
    ) -> MeisaResponse:
        """Add and remove tags of the contact with these identifiers (``POST /contacts/tags/``)."""
        return await self._send(Call.tag(identifiers, add, remove, idempotency_key))

    async def enroll(
        self, sequence: str, identifiers: Identifiers, *, idempotency_key: str | None = None
    ) -> MeisaResponse:
        """Enroll the contact in the sequence; ``created`` is False when already enrolled."""
        return await self._send(Call.enrollment("enroll", sequence, identifiers, idempotency_key))

    async def unenroll(
        self, sequence: str, identifiers: Identifiers, *, idempotency_key: str | None = None
    ) -> MeisaResponse:
        """End the contact's active enrollment in the sequence."""
        return await self._send(Call.enrollment("unenroll", sequence, identifiers, idempotency_key))

    async def delete(
        self, identifiers: Identifiers, *, idempotency_key: str | None = None
    ) -> MeisaResponse:
        """Erase the contact (``POST /contacts/delete/``); ``NotFound`` when there is none."""
        return await self._send(Call.delete(identifiers, idempotency_key))

    async def aclose(self) -> None:
        """Close the connection pool (unless the httpx client was passed in)."""
        if self._owns_http_client:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncMeisaClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: Call) -> MeisaResponse:
        url = call.url(self._settings)
        started = time.perf_counter()
        try:
            response = await self._http.post(
                url, content=call.body, headers=call.headers(self._settings)
            )
        except httpx.HTTPError as exc:
            self._log(call, type(exc).__name__, started)
            raise transport_error(exc, "POST", url, self._settings) from None
        self._log(call, response.status_code, started)
        return read_response(response, self._settings)
