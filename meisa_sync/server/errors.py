"""The one error shape of CONTRACT.md §1, and how every failure becomes it.

Handlers raise :class:`ApiError`; FastAPI's own validation errors (query and path parameters) become
400 ``validation_error`` instead of 422; anything unexpected becomes 500 ``internal_error`` with the
traceback in the log, never in the response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meisa_sync.exceptions import PayloadError

__all__ = [
    "ERROR_RESPONSES",
    "ApiError",
    "ErrorBody",
    "ErrorDetail",
    "ErrorResponse",
    "InternalErrorMiddleware",
    "checked",
    "error_response",
    "install_error_handlers",
    "validation_error",
]

logger = logging.getLogger("meisa_sync.server")

T = TypeVar("T")

_STATUS_CODES = {
    400: "validation_error",
    401: "missing_credentials",
    403: "insufficient_scope",
    404: "not_found",
    405: "method_not_allowed",
    409: "identifier_conflict",
    413: "payload_too_large",
    429: "rate_limited",
    500: "internal_error",
}


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorResponse(BaseModel):
    """Every error the server answers with."""

    error: ErrorBody


def _documented(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


#: OpenAPI ``responses`` entries for routes, by what can go wrong.
ERROR_RESPONSES: dict[str, dict[int | str, dict[str, Any]]] = {
    "common": {
        400: _documented("validation_error, invalid_json or ambiguous_credentials"),
        500: _documented("internal_error"),
    },
    "auth": {
        401: _documented("missing_credentials, invalid_api_key or invalid_token"),
        403: _documented("write_only_key or insufficient_scope"),
        429: _documented("rate_limited (API keys only)"),
    },
    "body": {413: _documented("payload_too_large")},
    "not_found": {404: _documented("not_found")},
    "conflict": {409: _documented("identifier_conflict or idempotency_conflict")},
    "login": {401: _documented("invalid_login")},
}


class ApiError(Exception):
    """An error answer: status, code, message, details, extra headers."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        details: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = [dict(detail) for detail in details]
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status_code, headers=self.headers)


def validation_error(field: str, message: str) -> ApiError:
    """400 ``validation_error`` naming ``field``."""
    return ApiError(
        400,
        "validation_error",
        f"{field}: {message}",
        details=[{"field": field, "message": message}],
    )


def from_payload_error(exc: PayloadError) -> ApiError:
    return validation_error(exc.field, exc.reason)


def checked(check: Callable[..., T], *args: Any) -> T:
    """``check(*args)`` (a contract validator), its ``PayloadError`` as a 400 naming the field."""
    try:
        return check(*args)
    except PayloadError as exc:
        raise from_payload_error(exc) from None


def _location(loc: Sequence[Any]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part in {"body", "query", "path", "header"} and not parts:
            continue
        else:
            parts.append(f".{part}" if parts else str(part))
    return "".join(parts) or "body"


def from_pydantic(errors: Sequence[Any]) -> ApiError:
    """400 ``validation_error`` from pydantic's error list, first error in the message."""
    details = [{"field": _location(e["loc"]), "message": str(e["msg"])} for e in errors]
    if not details:
        return validation_error("body", "invalid")
    first = details[0]
    return ApiError(
        400, "validation_error", f"{first['field']}: {first['message']}", details=details
    )


def from_validation(exc: ValidationError) -> ApiError:
    return from_pydantic(exc.errors(include_url=False))


def error_response(
    status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return ApiError(status_code, code, message, headers=headers).response()


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _request_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return from_pydantic(list(exc.errors())).response()


async def _http_exception(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404:
        message = "no such resource"
    return error_response(exc.status_code, code, message, exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)


class InternalErrorMiddleware:
    """Turn an exception escaping a handler into 500 ``internal_error``; log the traceback.

    Starlette's own server-error middleware re-raises after answering, which uvicorn then logs as an
    unhandled error and ``httpx.ASGITransport`` raises in the client; the contract wants an answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:
                raise
            logger.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            response = error_response(500, "internal_error", "the server failed; retry later")
            await response(scope, receive, send)
