"""The ``/contacts/`` endpoints (CONTRACT.md §4): upsert, list, read, activity, tags, delete."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from meisa_sync.contract import (
    normalize_email,
    normalize_external_id,
    normalize_identifiers,
    normalize_tag_name,
    normalize_tag_names,
    validate_upsert,
)
from meisa_sync.server import activity, idempotency
from meisa_sync.server.auth import Principal, TokenCaller, requires
from meisa_sync.server.body import Body, documented_body
from meisa_sync.server.context import get_context
from meisa_sync.server.documented import (
    CustomFields,
    Email,
    ExternalId,
    Name,
    TagNames,
    identified,
    optional,
)
from meisa_sync.server.editor import TAGS_CACHE, ContactEditor
from meisa_sync.server.errors import ERROR_RESPONSES, ApiError, checked, validation_error
from meisa_sync.server.lookup import IdentifiersIn, find_contact_or_404
from meisa_sync.server.models import Activity, Contact, ContactTag, Enrollment
from meisa_sync.server.routing import route
from meisa_sync.server.tags import find_tag
from meisa_sync.server.upsert import upsert
from meisa_sync.server.views import ContactOut, ContactWithEnrollments, contact_json

__all__ = ["router"]

router = APIRouter(tags=["contacts"])
_auth = {**ERROR_RESPONSES["common"], **ERROR_RESPONSES["auth"]}
_write = {**_auth, **ERROR_RESPONSES["body"], **ERROR_RESPONSES["conflict"]}


class UpsertIn(BaseModel):
    """An upsert body: at least one of email and external_id."""

    model_config = identified(extra="forbid")
    email: Email = optional()
    external_id: ExternalId = optional()
    first_name: Name = optional()
    last_name: Name = optional()
    custom_fields: CustomFields = optional(additionalProperties=False)
    tag_names: TagNames = optional()


class TagsIn(IdentifiersIn):
    model_config = identified(extra="forbid")
    add: TagNames = Field(default_factory=list)
    remove: TagNames = Field(default_factory=list)


class ContactPage(BaseModel):
    results: list[ContactOut]
    next_cursor: str | None


class ActivityOut(BaseModel):
    at: str
    kind: str
    data: dict[str, Any]


class DeletedOut(BaseModel):
    deleted: bool
    id: str


@route(
    router,
    "POST",
    "/contacts/upsert/",
    response_model=ContactOut,
    openapi_extra=documented_body(UpsertIn),
    responses={201: {"model": ContactOut, "description": "the contact was created"}, **_write},
)
def upsert_contact(
    request: Request,
    principal: Annotated[Principal, Depends(requires("contacts:write"))],
    body: Body,
) -> Response:
    """Create or update a contact by external_id or email; automations run on the change set."""
    context = get_context(request)

    def produce() -> idempotency.Outcome:
        return upsert(context, checked(validate_upsert, body.data))

    return idempotency.respond(request, principal, body, produce)


def _encode_cursor(contact: Contact) -> str:
    raw = json.dumps([contact.created_at.isoformat(), contact.id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, contact_id = json.loads(raw)
        return datetime.fromisoformat(created), str(contact_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise validation_error("cursor", "not a cursor this server returned") from None


@route(router, "GET", "/contacts/", response_model=ContactPage, responses=_auth)
def list_contacts(
    request: Request,
    _principal: TokenCaller,
    email: str | None = None,
    external_id: str | None = None,
    tag: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Any:
    """Contacts, oldest first, filtered by email, external_id or tag; paginated by cursor."""
    context = get_context(request)
    query = select(Contact)
    if email is not None:
        query = query.where(Contact.email == checked(normalize_email, email))
    if external_id is not None:
        query = query.where(Contact.external_id == checked(normalize_external_id, external_id))
    if cursor is not None:
        after, after_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                Contact.created_at > after,
                and_(Contact.created_at == after, Contact.id > after_id),
            )
        )
    tag_name = checked(normalize_tag_name, tag, "tag") if tag is not None else None

    def work(session: Session) -> dict[str, Any]:
        filtered = query
        if tag_name is not None:
            found = find_tag(session, tag_name)
            if found is None:
                return {"results": [], "next_cursor": None}
            filtered = filtered.join(ContactTag, ContactTag.contact_id == Contact.id).where(
                ContactTag.tag_id == found.id
            )
        rows = list(
            session.scalars(filtered.order_by(Contact.created_at, Contact.id).limit(limit + 1))
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "results": [contact_json(session, row) for row in rows],
            "next_cursor": _encode_cursor(rows[-1]) if more else None,
        }

    return context.db.transaction(work)


def _contact_or_404(session: Session, contact_id: str) -> Contact:
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise ApiError(404, "not_found", f"no contact with id {contact_id}")
    return contact


@route(
    router,
    "GET",
    "/contacts/{contact_id}/",
    response_model=ContactWithEnrollments,
    responses={**_auth, **ERROR_RESPONSES["not_found"]},
)
def get_contact(contact_id: str, request: Request, _principal: TokenCaller) -> Any:
    """One contact with its enrollments."""
    context = get_context(request)
    return context.db.transaction(
        lambda s: contact_json(s, _contact_or_404(s, contact_id), with_enrollments=True)
    )


@route(
    router,
    "GET",
    "/contacts/{contact_id}/activity/",
    response_model=list[ActivityOut],
    responses={**_auth, **ERROR_RESPONSES["not_found"]},
)
def get_activity(contact_id: str, request: Request, _principal: TokenCaller) -> Any:
    """What happened to the contact, oldest first."""
    context = get_context(request)

    def work(session: Session) -> list[dict[str, Any]]:
        _contact_or_404(session, contact_id)
        return activity.entries(session, contact_id)

    return context.db.transaction(work)


@route(
    router,
    "POST",
    "/contacts/tags/",
    response_model=ContactOut,
    openapi_extra=documented_body(TagsIn),
    responses={**_write, **ERROR_RESPONSES["not_found"]},
)
def change_tags(
    request: Request,
    principal: Annotated[Principal, Depends(requires("tags:write"))],
    body: Body,
) -> Response:
    """Add and remove a contact's tags; no automations fire."""
    context = get_context(request)

    def produce() -> idempotency.Outcome:
        data = body.data
        identifiers = checked(normalize_identifiers, data)
        for name in data:
            if name not in {"email", "external_id", "add", "remove"}:
                raise validation_error(
                    str(name), "unknown field; expected email, external_id, add, remove"
                )
        add = _tag_list(data, "add")
        remove = _tag_list(data, "remove")

        def work(session: Session) -> idempotency.Outcome:
            connection = session.connection()
            contact = find_contact_or_404(connection, identifiers, lock=context.db.locks_rows)
            editor = ContactEditor(connection, contact, context.now(), created=False, cache=context)
            for name in add:
                editor.add_tag(name)
            for name in remove:
                editor.remove_tag(name)
            return 200, editor.finish()

        return context.db.transaction(work, on_retry=lambda: context.invalidate(TAGS_CACHE))

    return idempotency.respond(request, principal, body, produce)


def _tag_list(data: dict[str, Any], field: str) -> list[str]:
    names: list[str] = checked(normalize_tag_names, data.get(field, []), field)
    return names


@route(
    router,
    "POST",
    "/contacts/delete/",
    response_model=DeletedOut,
    openapi_extra=documented_body(IdentifiersIn),
    responses={**_write, **ERROR_RESPONSES["not_found"]},
)
def delete_contact(
    request: Request,
    principal: Annotated[Principal, Depends(requires("contacts:delete"))],
    body: Body,
) -> Response:
    """Erase a contact with its tag links, enrollments and activity."""
    context = get_context(request)

    def produce() -> idempotency.Outcome:
        identifiers = checked(normalize_identifiers, body.data)

        def work(session: Session) -> idempotency.Outcome:
            connection = session.connection()
            contact = find_contact_or_404(connection, identifiers, lock=context.db.locks_rows)
            for table in (ContactTag, Enrollment, Activity):
                connection.execute(delete(table).where(table.contact_id == contact["id"]))
            connection.execute(delete(Contact).where(Contact.id == contact["id"]))
            return 200, {"deleted": True, "id": contact["id"]}

        return context.db.transaction(work)

    return idempotency.respond(request, principal, body, produce)
