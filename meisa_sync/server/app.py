"""``create_app``: the reference Meisa server as an ASGI app (CONTRACT.md §1-9)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meisa_sync.server import accounts, contacts, control, rules, sequences, tags
from meisa_sync.server.auth import RATE_LIMIT_HEADERS_STATE
from meisa_sync.server.config import Bootstrap, apply_config, load_config, resolve_jwt_secret
from meisa_sync.server.context import RequestLog, ServerContext
from meisa_sync.server.db import Database
from meisa_sync.server.errors import InternalErrorMiddleware, install_error_handlers
from meisa_sync.server.ratelimit import SlidingWindowLimiter

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"


class RateLimitHeadersMiddleware:
    """Put the key's rate-limit headers on every answer to a key-authenticated request, errors
    included (the auth dependency leaves them in the request state)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = scope.get("state", {}).get(RATE_LIMIT_HEADERS_STATE)
                if headers:
                    message = {
                        **message,
                        "headers": [
                            *message.get("headers", []),
                            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
                        ],
                    }
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document, saying 400 where FastAPI would say 422 (the contract's status)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            for path_item in document.get("paths", {}).values():
                for operation in path_item.values():
                    responses = operation.get("responses", {})
                    responses.pop("422", None)
            schemas = document.get("components", {}).get("schemas", {})
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            app.openapi_schema = document
        return app.openapi_schema

    return build


def create_app(
    database_url: str = "sqlite:///meisa-server.db",
    *,
    config: str | Path | Mapping[str, Any] | None = None,
    control_plane: bool = False,
    request_log_size: int = 1000,
    clock: Callable[[], float] | None = None,
    jwt_secret: str | None = None,
    announce: Callable[[Bootstrap], None] | None = None,
) -> FastAPI:
    """Build the server: create its tables, apply ``config``, return the ASGI app.

    ``config`` is a path to the TOML file of CONTRACT.md §9 or the same data as a mapping. ``clock``
    (seconds, like ``time.time``) drives timestamps, token expiry and the rate limiter, for tests.
    The app's :class:`ServerContext` is ``app.state.meisa``; ``app.state.meisa.close()`` releases
    the database (the lifespan does it when a server such as uvicorn runs one). Credentials
    generated for an empty database without config are passed to ``announce`` (default: printed).
    """
    db = Database(database_url)
    try:
        db.create_tables()
        loaded = load_config(config)
        secret = resolve_jwt_secret(db, jwt_secret, loaded)
        context = ServerContext(
            db=db,
            jwt_secret=secret,
            control_plane=control_plane,
            clock=clock or time.time,
            limiter=SlidingWindowLimiter(clock=clock or time.monotonic),
            request_log=RequestLog(request_log_size),
        )
        bootstrap = db.transaction(lambda session: apply_config(session, loaded, context.now()))
    except BaseException:
        db.close()
        raise
    if bootstrap is not None:
        (announce or _print_bootstrap)(bootstrap)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        context.close()

    app = FastAPI(
        title="Meisa (reference server)",
        version="1",
        description="The reference implementation of the Meisa API contract, by meisa-sync.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        redirect_slashes=False,
        lifespan=lifespan,
    )
    app.state.meisa = context
    app.state.bootstrap = bootstrap
    install_error_handlers(app)
    for module in (contacts, tags, sequences, rules, accounts):
        app.include_router(module.router, prefix=API_PREFIX)
    if control_plane:
        app.include_router(control.router)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(RateLimitHeadersMiddleware)
    app.add_middleware(InternalErrorMiddleware)
    if control_plane:
        app.add_middleware(control.ControlPlaneMiddleware, context=context)
    return app


def _print_bootstrap(bootstrap: Bootstrap) -> None:
    print(
        "meisa server: created an API key with every scope and a dashboard user "
        "(shown once, store them now):\n"
        f"  X-API-Key: {bootstrap.api_key}\n"
        f"  dashboard: {bootstrap.username} / {bootstrap.password}",
        flush=True,
    )
