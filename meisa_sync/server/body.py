"""Request bodies: at most 1 MiB (413), JSON or 400 ``invalid_json``, and how routes document them.

Bodies are parsed by hand rather than by FastAPI so that every route validates with the contract's
own rules (``meisa_sync.contract``) and answers in the contract's error shape; the pydantic models
routes pass to :func:`documented_body` only describe the body in the OpenAPI document.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from meisa_sync.contract import MAX_BODY_BYTES
from meisa_sync.server.errors import ApiError, from_validation

__all__ = ["Body", "JsonBody", "documented_body", "json_body", "parse_model"]


@dataclass(frozen=True)
class JsonBody:
    data: Any

    @functools.cached_property
    def digest(self) -> str:
        """SHA-256 of the body's canonical JSON: equal bodies, whatever their spacing, compare
        equal (computed only for requests that carry an Idempotency-Key)."""
        canonical = json.dumps(self.data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_large() -> ApiError:
    return ApiError(
        413, "payload_too_large", f"the request body is over {MAX_BODY_BYTES} bytes (1 MiB)"
    )


async def json_body(request: Request) -> JsonBody:
    """The request's JSON body (dependency): 413 over 1 MiB, 400 ``invalid_json`` otherwise bad."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        reason = "the body is empty" if not raw.strip() else f"the body is not JSON ({exc})"
        raise ApiError(400, "invalid_json", reason) from None
    return JsonBody(data)


def parse_model(model: type[BaseModel], data: Any) -> Any:
    """Validate ``data`` strictly against ``model``; 400 ``validation_error`` naming the field."""
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise from_validation(exc) from None


def documented_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` describing a JSON request body shaped like ``model``."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


#: A route parameter holding the parsed JSON body.
Body = Annotated[JsonBody, Depends(json_body)]
