"""``Idempotency-Key`` (CONTRACT.md §1): the first answer to a key is replayed for 24 hours.

A record is scoped to the caller (an API key, or a dashboard user) and remembers the request's
method, path and canonical body: the same key with another request is 409 ``idempotency_conflict``.
Answers the caller may legitimately retry for a different outcome (5xx) are not remembered. Two
requests racing with one new key may both run; the first to finish is the one remembered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from meisa_sync.contract import validate_idempotency_key
from meisa_sync.server.auth import Principal
from meisa_sync.server.body import JsonBody
from meisa_sync.server.context import ServerContext, get_context
from meisa_sync.server.editor import TAGS_CACHE
from meisa_sync.server.errors import ApiError, checked
from meisa_sync.server.models import IdempotencyRecord

__all__ = ["REPLAY_HEADER", "TTL", "Outcome", "respond"]

TTL = timedelta(hours=24)
REPLAY_HEADER = "Idempotent-Replayed"

#: What a handler returns: status code and JSON payload.
Outcome = tuple[int, Any]


def _request_hash(request: Request, body: JsonBody | None) -> str:
    signature = f"{request.method} {request.url.path.rstrip('/')} {body.digest if body else ''}"
    return hashlib.sha256(signature.encode()).hexdigest()


def _run(produce: Callable[[], Outcome]) -> tuple[int, Any, dict[str, str]]:
    try:
        status, payload = produce()
    except ApiError as exc:
        return exc.status_code, exc.body(), exc.headers
    return status, payload, {}


def respond(
    request: Request,
    principal: Principal,
    body: JsonBody | None,
    produce: Callable[[], Outcome],
) -> Response:
    """Run ``produce`` once per idempotency key (when the request has one) and answer with it.

    With a key, the lookup, the work and the record share one transaction: a crash cannot keep
    one without the other, and of two racing requests with one new key the second collides on
    the record's unique index, is retried, and replays the first's answer.
    """
    header = request.headers.get("idempotency-key")
    if header is None:
        status, payload, headers = _run(produce)
        return _response(status, payload, headers)
    key = checked(validate_idempotency_key, header)
    context = get_context(request)
    request_hash = _request_hash(request, body)

    def run(session: Session) -> Response:
        replay = _lookup(session, context, principal.caller, key, request_hash)
        if replay is not None:
            return replay
        with context.db.joined(session):
            status, payload = produce()
        _remember(session, context, principal.caller, key, request_hash, status, payload)
        return _response(status, payload, {})

    try:
        return context.db.transaction(run, on_retry=lambda: context.invalidate(TAGS_CACHE))
    except ApiError as exc:
        if exc.code == "idempotency_conflict" or exc.status_code >= 500:
            raise
        # The work was rolled back; its refusal is remembered on its own.
        refusal = (exc.status_code, exc.body())
        try:
            context.db.transaction(
                lambda session: _remember(
                    session, context, principal.caller, key, request_hash, *refusal
                )
            )
        except IntegrityError:
            pass  # a concurrent request with this key finished first
        return exc.response()


def _response(status: int, payload: Any, headers: dict[str, str]) -> Response:
    if status == 204:
        return Response(status_code=204, headers=headers)
    return JSONResponse(payload, status_code=status, headers=headers)


def _lookup(
    session: Session, context: ServerContext, caller: str, key: str, request_hash: str
) -> Response | None:
    record = session.scalars(
        select(IdempotencyRecord).where(
            IdempotencyRecord.caller == caller, IdempotencyRecord.key == key
        )
    ).one_or_none()
    if record is None:
        return None
    if record.created_at <= context.now() - TTL:
        session.delete(record)
        session.flush()  # before the new record for this key is inserted
        return None
    if record.request_hash != request_hash:
        raise ApiError(
            409,
            "idempotency_conflict",
            "this Idempotency-Key was used with a different request; use a new key",
        )
    response = _response(record.status_code, json.loads(record.body), {})
    response.headers[REPLAY_HEADER] = "true"
    return response


def _remember(
    session: Session,
    context: ServerContext,
    caller: str,
    key: str,
    request_hash: str,
    status: int,
    payload: Any,
) -> None:
    now = context.now()
    if context.due("idempotency-sweep", every=60.0):
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at <= now - TTL))
    session.add(
        IdempotencyRecord(
            caller=caller,
            key=key,
            request_hash=request_hash,
            status_code=status,
            body=json.dumps(payload),
            created_at=now,
        )
    )
    session.flush()
