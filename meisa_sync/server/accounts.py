"""Dashboard login, API keys and health (CONTRACT.md §7)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from meisa_sync.contract import DEFAULT_PER_HOUR, DEFAULT_PER_MINUTE
from meisa_sync.server import idempotency
from meisa_sync.server.auth import KEYS_CACHE, TokenCaller
from meisa_sync.server.body import Body, documented_body, parse_model
from meisa_sync.server.context import ServerContext, format_time, get_context
from meisa_sync.server.credentials import (
    ALL_SCOPES,
    TOKEN_LIFETIME,
    display_prefix,
    generate_api_key,
    hash_api_key,
    issue_token,
    verify_password,
)
from meisa_sync.server.errors import ERROR_RESPONSES, ApiError
from meisa_sync.server.models import ApiKey, User
from meisa_sync.server.routing import route

__all__ = ["create_api_key", "key_json", "router"]

Scope = Literal["contacts:write", "contacts:delete", "tags:write", "sequences:write"]


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str
    password: str


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"]
    expires_in: int


def _default_scopes() -> list[Scope]:
    return ["contacts:write"]


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=255)
    scopes: list[Scope] = Field(default_factory=_default_scopes)
    per_minute: int = Field(DEFAULT_PER_MINUTE, ge=1, le=1_000_000)
    per_hour: int = Field(DEFAULT_PER_HOUR, ge=1, le=100_000_000)
    mode: Literal["live", "test"] = "live"


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    mode: Literal["live", "test"]
    scopes: list[str]
    per_minute: int
    per_hour: int
    created_at: str
    revoked_at: str | None


class NewApiKeyOut(ApiKeyOut):
    key: str


class HealthOut(BaseModel):
    status: Literal["ok"]


def key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "mode": key.mode,
        "scopes": list(key.scopes),
        "per_minute": key.per_minute,
        "per_hour": key.per_hour,
        "created_at": format_time(key.created_at),
        "revoked_at": format_time(key.revoked_at) if key.revoked_at else None,
    }


def create_api_key(
    session: Session,
    *,
    name: str,
    scopes: list[str],
    per_minute: int,
    per_hour: int,
    mode: str,
    now: datetime,
    plaintext: str | None = None,
) -> tuple[ApiKey, str]:
    """Store a key (hashed) and return it with its plaintext, which is never stored."""
    plaintext = plaintext or generate_api_key(mode)
    key = ApiKey(
        name=name,
        key_hash=hash_api_key(plaintext),
        prefix=display_prefix(plaintext),
        mode=mode,
        scopes=[scope for scope in ALL_SCOPES if scope in scopes],
        per_minute=per_minute,
        per_hour=per_hour,
        created_at=now,
        revoked_at=None,
    )
    session.add(key)
    session.flush()
    return key, plaintext


router = APIRouter()
_auth = {**ERROR_RESPONSES["common"], **ERROR_RESPONSES["auth"]}


@route(
    router,
    "POST",
    "/auth/token/",
    tags=["auth"],
    response_model=TokenOut,
    openapi_extra=documented_body(LoginIn),
    responses={**ERROR_RESPONSES["common"], **ERROR_RESPONSES["login"], **ERROR_RESPONSES["body"]},
)
def login(request: Request, body: Body) -> Any:
    """Exchange a dashboard username and password for a bearer token."""
    context = get_context(request)
    credentials: LoginIn = parse_model(LoginIn, body.data)
    with context.db.sessions() as session:
        user = session.scalars(
            select(User).where(User.username == credentials.username)
        ).one_or_none()
    # Verify against a dummy hash when the user is unknown, so timing does not reveal usernames.
    stored = user.password_hash if user else _dummy_hash(context)
    if not verify_password(credentials.password, stored) or user is None:
        raise ApiError(401, "invalid_login", "wrong username or password")
    token = issue_token(user.id, secret=context.jwt_secret, now=context.clock())
    return {"access_token": token, "token_type": "bearer", "expires_in": TOKEN_LIFETIME}


_DUMMY: dict[int, str] = {}


def _dummy_hash(context: ServerContext) -> str:
    from meisa_sync.server.credentials import hash_password

    return _DUMMY.setdefault(0, hash_password("not a password"))


@route(
    router, "GET", "/api-keys/", tags=["api-keys"], response_model=list[ApiKeyOut], responses=_auth
)
def list_api_keys(request: Request, _principal: TokenCaller) -> Any:
    """Every key, revoked ones included; never the plaintext."""
    context = get_context(request)
    return context.db.transaction(
        lambda s: [key_json(k) for k in s.scalars(select(ApiKey).order_by(ApiKey.created_at))]
    )


@route(
    router,
    "POST",
    "/api-keys/",
    tags=["api-keys"],
    status_code=201,
    response_model=NewApiKeyOut,
    openapi_extra=documented_body(ApiKeyIn),
    responses={**_auth, **ERROR_RESPONSES["body"], **ERROR_RESPONSES["conflict"]},
)
def create_key(
    request: Request,
    principal: TokenCaller,
    body: Body,
) -> Response:
    """Create a key; the plaintext ``key`` is in this answer only."""
    context = get_context(request)

    def produce() -> idempotency.Outcome:
        spec: ApiKeyIn = parse_model(ApiKeyIn, body.data)

        def work(session: Session) -> idempotency.Outcome:
            key, plaintext = create_api_key(
                session,
                name=spec.name,
                scopes=list(spec.scopes),
                per_minute=spec.per_minute,
                per_hour=spec.per_hour,
                mode=spec.mode,
                now=context.now(),
            )
            return 201, {**key_json(key), "key": plaintext}

        return context.db.transaction(work)

    return idempotency.respond(request, principal, body, produce)


@route(
    router,
    "DELETE",
    "/api-keys/{key_id}/",
    tags=["api-keys"],
    status_code=204,
    response_class=Response,
    responses={**_auth, **ERROR_RESPONSES["not_found"]},
)
def revoke_key(key_id: str, request: Request, _principal: TokenCaller) -> Response:
    """Revoke a key: from now on it is 401 ``invalid_api_key``."""
    context = get_context(request)

    def work(session: Session) -> None:
        key = session.get(ApiKey, key_id)
        if key is None:
            raise ApiError(404, "not_found", f"no API key with id {key_id}")
        if key.revoked_at is None:
            key.revoked_at = context.now()

    try:
        context.db.transaction(work)
    finally:
        context.invalidate(KEYS_CACHE)
    return Response(status_code=204)


@route(router, "GET", "/health/", tags=["health"], response_model=HealthOut)
def health() -> JSONResponse:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})
