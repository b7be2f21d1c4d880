"""Who is calling: the route dependencies that enforce CONTRACT.md §2 and §3.

Each protected route declares ``Depends(requires("contacts:write"))`` (an API key with that scope,
or a dashboard token) or ``Depends(requires_token)`` (a token only). The order of checks is fixed:
both credentials → 400; none → 401; an unknown or revoked key → 401, then the key's rate limit (429,
headers on every key-authenticated answer), then a token-only route → 403 ``write_only_key``, then a
missing scope → 403 naming it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from meisa_sync.server.context import ServerContext, get_context
from meisa_sync.server.credentials import KEY_PATTERN, TokenError, decode_token, hash_api_key
from meisa_sync.server.errors import ApiError
from meisa_sync.server.models import ApiKey, User

__all__ = ["RATE_LIMIT_HEADERS_STATE", "Principal", "TokenCaller", "requires", "requires_token"]

RATE_LIMIT_HEADERS_STATE = "rate_limit_headers"
KEYS_CACHE = "api_key"

# Declared for the OpenAPI document only; the headers are read by hand so that a malformed
# Authorization header is 401 invalid_token rather than "missing".
_api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")
_bearer_scheme = HTTPBearer(auto_error=False, scheme_name="Bearer")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: an API key (with scopes) or a dashboard user (allowed anything)."""

    kind: str  # "key" | "user"
    id: str
    key_prefix: str | None = None
    scopes: frozenset[str] = frozenset()

    @property
    def caller(self) -> str:
        """A stable name for the caller, what idempotency records are scoped to."""
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class _KeyInfo:
    id: str
    prefix: str
    scopes: frozenset[str]
    per_minute: int
    per_hour: int
    revoked: bool


def _key_by_hash(context: ServerContext, key_hash: str) -> _KeyInfo | None:
    """The key's settings, cached per key (revocation invalidates the cache)."""

    def load() -> _KeyInfo | None:
        with context.db.sessions() as session:
            key = session.scalars(select(ApiKey).where(ApiKey.key_hash == key_hash)).one_or_none()
            if key is None:
                return None
            return _KeyInfo(
                key.id,
                key.prefix,
                frozenset(key.scopes),
                key.per_minute,
                key.per_hour,
                key.revoked_at is not None,
            )

    return context.cached(f"{KEYS_CACHE}:{key_hash}", load)


def _authenticate_key(request: Request, context: ServerContext, plaintext: str) -> Principal:
    invalid = ApiError(401, "invalid_api_key", "the API key is unknown or revoked")
    if not KEY_PATTERN.fullmatch(plaintext):
        raise invalid
    key = _key_by_hash(context, hash_api_key(plaintext))
    if key is None or key.revoked:
        raise invalid
    decision = context.limiter.admit(key.id, [(key.per_minute, 60), (key.per_hour, 3600)])
    setattr(request.state, RATE_LIMIT_HEADERS_STATE, decision.headers())
    if not decision.admitted:
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit exceeded for this API key; retry in {decision.retry_after} s",
        )
    return Principal("key", key.id, key_prefix=key.prefix, scopes=key.scopes)


def _authenticate_token(context: ServerContext, authorization: str) -> Principal:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "invalid_token", "the Authorization header must be 'Bearer <token>'")
    try:
        subject = decode_token(token.strip(), secret=context.jwt_secret, clock=context.clock)
    except TokenError as exc:
        raise ApiError(401, "invalid_token", str(exc)) from None
    with context.db.sessions() as session:
        user = session.get(User, subject)
    if user is None:
        raise ApiError(401, "invalid_token", "the token's user no longer exists")
    return Principal("user", user.id)


def _authenticate(request: Request, scope: str | None, token_only: bool) -> Principal:
    context = get_context(request)
    api_key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization")
    if api_key is not None and authorization is not None:
        raise ApiError(
            400, "ambiguous_credentials", "send either X-API-Key or Authorization, not both"
        )
    if api_key is None and authorization is None:
        needed = "a dashboard token" if token_only else "an X-API-Key or a dashboard token"
        raise ApiError(401, "missing_credentials", f"this endpoint needs {needed}")
    if authorization is not None:
        return _authenticate_token(context, authorization)
    assert api_key is not None
    principal = _authenticate_key(request, context, api_key)
    if token_only:
        raise ApiError(
            403,
            "write_only_key",
            "API keys are write-only; reading needs a dashboard token (POST /auth/token/)",
        )
    if scope is not None and scope not in principal.scopes:
        raise ApiError(403, "insufficient_scope", f"this API key lacks the scope {scope}")
    return principal


async def _authenticate_request(
    request: Request, scope: str | None, *, token_only: bool
) -> Principal:
    # A cached key needs no I/O: check it on the event loop, saving a thread hop on the hot path.
    # Anything that may touch the database runs in the thread pool.
    api_key = request.headers.get("x-api-key")
    if api_key is not None and "authorization" not in request.headers:
        if get_context(request).is_cached(f"{KEYS_CACHE}:{hash_api_key(api_key)}"):
            return _authenticate(request, scope, token_only)
    return await run_in_threadpool(_authenticate, request, scope, token_only)


def requires(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting an API key holding ``scope``, or a dashboard token."""

    async def dependency(
        request: Request,
        _key: Annotated[str | None, Security(_api_key_scheme)],
        _token: Annotated[object, Security(_bearer_scheme)],
    ) -> Principal:
        return await _authenticate_request(request, scope, token_only=False)

    return dependency


async def requires_token(
    request: Request,
    _key: Annotated[str | None, Security(_api_key_scheme)],
    _token: Annotated[object, Security(_bearer_scheme)],
) -> Principal:
    """A dependency admitting a dashboard token only (an API key gets 403 ``write_only_key``)."""
    return await _authenticate_request(request, None, token_only=True)


#: A route parameter admitting a dashboard token only.
TokenCaller = Annotated[Principal, Depends(requires_token)]
