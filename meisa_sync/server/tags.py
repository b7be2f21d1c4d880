"""Tags (CONTRACT.md §5): unique case-insensitively, the first spelling kept; contact links."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from meisa_sync.contract import normalize_tag_name
from meisa_sync.exceptions import PayloadError
from meisa_sync.server import idempotency
from meisa_sync.server.auth import Principal, TokenCaller, requires
from meisa_sync.server.body import Body, documented_body
from meisa_sync.server.context import get_context
from meisa_sync.server.documented import TagName
from meisa_sync.server.editor import TAGS_CACHE, get_or_create_tag
from meisa_sync.server.errors import ERROR_RESPONSES, ApiError, checked, from_payload_error
from meisa_sync.server.models import ContactTag, Tag
from meisa_sync.server.routing import route

__all__ = ["find_tag", "router", "tags_of"]


def find_tag(session: Session, name: str) -> Tag | None:
    return session.scalars(select(Tag).where(Tag.name_key == name.lower())).one_or_none()


def tags_of(session: Session, contact_id: str) -> list[dict[str, str]]:
    rows = session.scalars(
        select(Tag)
        .join(ContactTag, ContactTag.tag_id == Tag.id)
        .where(ContactTag.contact_id == contact_id)
    )
    return sorted(
        ({"id": t.id, "name": t.name} for t in rows), key=lambda t: (t["name"].lower(), t["name"])
    )


class TagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: TagName


class TagOut(BaseModel):
    id: str
    name: str


class TagWithCount(TagOut):
    contact_count: int


router = APIRouter(tags=["tags"])


@route(
    router,
    "GET",
    "/tags/",
    response_model=list[TagWithCount],
    responses={**ERROR_RESPONSES["common"], **ERROR_RESPONSES["auth"]},
)
def list_tags(request: Request, _principal: TokenCaller) -> Any:
    """Every tag with how many contacts carry it."""
    context = get_context(request)

    def work(session: Session) -> list[dict[str, Any]]:
        grouped = select(ContactTag.tag_id, func.count()).group_by(ContactTag.tag_id)
        counts = {tag_id: count for tag_id, count in session.execute(grouped)}
        tags = session.scalars(select(Tag).order_by(Tag.name_key))
        return [{"id": t.id, "name": t.name, "contact_count": counts.get(t.id, 0)} for t in tags]

    return context.db.transaction(work)


@route(
    router,
    "POST",
    "/tags/",
    status_code=201,
    response_model=TagOut,
    openapi_extra=documented_body(TagIn),
    responses={
        200: {"model": TagOut, "description": "the tag already existed"},
        **ERROR_RESPONSES["common"],
        **ERROR_RESPONSES["auth"],
        **ERROR_RESPONSES["body"],
        **ERROR_RESPONSES["conflict"],
    },
)
def create_tag(
    request: Request,
    principal: Annotated[Principal, Depends(requires("tags:write"))],
    body: Body,
) -> Response:
    """Create a tag: 201, or 200 with the existing one (names are unique case-insensitively)."""
    context = get_context(request)

    def produce() -> idempotency.Outcome:
        data = body.data
        if not isinstance(data, dict):
            raise ApiError(400, "validation_error", "body: must be a JSON object")
        unknown = [key for key in data if key != "name"]
        if unknown:
            raise from_payload_error(PayloadError(str(unknown[0]), "unknown field; expected name"))
        name = checked(normalize_tag_name, data.get("name"), "name")
        tag, created = context.db.transaction(
            lambda s: get_or_create_tag(s.connection(), name, context.now(), context),
            on_retry=lambda: context.invalidate(TAGS_CACHE),
        )
        return (201 if created else 200), tag

    return idempotency.respond(request, principal, body, produce)


@route(
    router,
    "DELETE",
    "/tags/{tag_id}/",
    status_code=204,
    response_class=Response,
    responses={
        **ERROR_RESPONSES["common"],
        **ERROR_RESPONSES["auth"],
        **ERROR_RESPONSES["not_found"],
    },
)
def delete_tag(tag_id: str, request: Request, _principal: TokenCaller) -> Response:
    """Delete a tag and its links to contacts."""
    context = get_context(request)

    def work(session: Session) -> None:
        tag = session.get(Tag, tag_id)
        if tag is None:
            raise ApiError(404, "not_found", f"no tag with id {tag_id}")
        session.execute(delete(ContactTag).where(ContactTag.tag_id == tag_id))
        session.delete(tag)

    try:
        context.db.transaction(work)
    finally:
        context.invalidate(TAGS_CACHE)
    return Response(status_code=204)
