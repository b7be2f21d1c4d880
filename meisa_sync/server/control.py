"""The test control plane (CONTRACT.md §8): reset, chaos, the request log.

Served under ``/_meisa/`` only when the server runs with it on, and never in the OpenAPI document.
:class:`ControlPlaneMiddleware` wraps the whole app: it records every API request and applies the
chaos settings to requests made with an API key (the integration's traffic; dashboard reads stay
reliable so tests can check the outcome). A dropped request gets the start of a response and then
an exception: uvicorn closes the connection mid-body, and in process ``httpx.ASGITransport`` raises
it to the client as the ``httpx.RemoteProtocolError`` a broken connection gives.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meisa_sync.server.body import json_body
from meisa_sync.server.chaos import ChaosSettings
from meisa_sync.server.context import ServerContext, format_time, get_context
from meisa_sync.server.credentials import KEY_PATTERN, display_prefix
from meisa_sync.server.editor import TAGS_CACHE
from meisa_sync.server.errors import error_response, validation_error
from meisa_sync.server.models import (
    Activity,
    Contact,
    ContactTag,
    Enrollment,
    IdempotencyRecord,
    Tag,
)

__all__ = ["ConnectionDropped", "ControlPlaneMiddleware", "DropFilter", "router"]

API_PREFIX = "/api/v1/"
_LOGGED_BODY_CHARS = 10_000
_STATUS_CODES = {500: "internal_error", 502: "bad_gateway", 503: "unavailable", 504: "timeout"}


class ConnectionDropped(httpx.RemoteProtocolError):
    """The control plane broke this request's connection on purpose (chaos ``drop_rate``)."""


class DropFilter(logging.Filter):
    """Silence uvicorn's traceback for connections the chaos settings dropped on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDropped))


def _logged_body(raw: bytes) -> Any:
    if not raw:
        return None
    if len(raw) > _LOGGED_BODY_CHARS:  # keep the log's memory bounded; 1 MiB bodies exist
        return raw[:_LOGGED_BODY_CHARS].decode("utf-8", "replace") + "…(truncated)"
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:_LOGGED_BODY_CHARS].decode("utf-8", "replace")


def _key_prefix(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-api-key":
            key = value.decode("latin-1")
            return display_prefix(key) if KEY_PATTERN.fullmatch(key) else "(malformed)"
    return None


class ControlPlaneMiddleware:
    """Request log and chaos around the whole app."""

    def __init__(self, app: ASGIApp, context: ServerContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(API_PREFIX) or path.rstrip("/").endswith("openapi.json"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        async def drain_body() -> None:
            more = True
            while more:
                message = await recording_receive()
                more = message["type"] == "http.request" and message.get("more_body", False)

        status: int | None = None

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        key_prefix = _key_prefix(scope)
        chaos = self.context.chaos
        verdict = chaos.verdict() if key_prefix is not None else None
        outcome = "answered"
        try:
            if verdict is not None and verdict.latency:
                await asyncio.sleep(verdict.latency)
            if verdict is not None and verdict.fail_status is not None:
                await drain_body()
                outcome = "failed"
                code = _STATUS_CODES.get(verdict.fail_status, "internal_error")
                response = error_response(
                    verdict.fail_status, code, "failure injected by the control plane (chaos)"
                )
                await response(scope, recording_receive, recording_send)
            elif verdict is not None and verdict.drop:
                outcome = "dropped"
                await self._drop(
                    scope, recording_receive, drain_body, verdict.apply_before_drop, send
                )
            else:
                await self.app(scope, recording_receive, recording_send)
        finally:
            self.context.request_log.append(
                {
                    "at": format_time(self.context.now()),
                    "method": scope.get("method"),
                    "path": path,
                    "status": None if outcome == "dropped" else status,
                    "outcome": outcome,
                    "key_prefix": key_prefix,
                    "body": _logged_body(b"".join(chunks)),
                }
            )

    async def _drop(
        self, scope: Scope, receive: Receive, drain_body: Any, apply: bool, send: Send
    ) -> None:
        if apply:

            async def discard(_message: Message) -> None:
                return None

            await self.app(scope, receive, discard)
        else:
            await drain_body()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"id": "', "more_body": True})
        raise ConnectionDropped("connection dropped by the control plane (chaos drop_rate)")


router = APIRouter(prefix="/_meisa", include_in_schema=False)


def _reset(session: Session) -> None:
    for table in (ContactTag, Enrollment, Activity, IdempotencyRecord):
        session.execute(delete(table))
    session.execute(delete(Contact))
    session.execute(delete(Tag))


@router.post("/reset/")
@router.post("/reset")
def reset(request: Request) -> JSONResponse:
    """Forget contacts, tags, enrollments, activity and the request log."""
    context = get_context(request)
    try:
        context.db.transaction(_reset)
    finally:
        context.invalidate(TAGS_CACHE)
    context.request_log.clear()
    return JSONResponse({"reset": True})


@router.post("/chaos/")
@router.post("/chaos")
async def set_chaos(request: Request) -> JSONResponse:
    """Set the failure injection; ``{}`` turns it off."""
    body = await json_body(request)
    if not isinstance(body.data, dict):
        raise validation_error("body", "must be a JSON object")
    try:
        settings = ChaosSettings.parse(body.data)
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        raise validation_error(field, message) from None
    get_context(request).chaos.configure(settings)
    return JSONResponse(settings.as_json())


@router.get("/chaos/")
@router.get("/chaos")
def get_chaos(request: Request) -> JSONResponse:
    return JSONResponse(get_context(request).chaos.settings.as_json())


@router.get("/requests/")
@router.get("/requests")
def requests_log(request: Request) -> JSONResponse:
    """The last API requests, oldest first."""
    return JSONResponse(get_context(request).request_log.entries())
