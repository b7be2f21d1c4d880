"""Sequences and enrollments (CONTRACT.md §5).

A contact has at most one active enrollment per sequence. Enrolling again while active changes
nothing; after an exited or completed enrollment, a new one starts only if the sequence allows
re-enrollment. The same rules serve the API and the automations' ``enroll`` action.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from meisa_sync.contract import SEQUENCE_SLUG_RE, normalize_identifiers
from meisa_sync.server import idempotency
from meisa_sync.server.auth import Principal, TokenCaller, requires
from meisa_sync.server.body import Body, documented_body, parse_model
from meisa_sync.server.context import ServerContext, format_time, get_context
from meisa_sync.server.editor import ContactEditor, SequenceInfo
from meisa_sync.server.editor import find_sequence as find_sequence_info
from meisa_sync.server.errors import ERROR_RESPONSES, ApiError, checked
from meisa_sync.server.lookup import IdentifiersIn, find_contact_or_404
from meisa_sync.server.models import Enrollment, Sequence
from meisa_sync.server.routing import route
from meisa_sync.server.shapes import enrollment_view

__all__ = ["contact_enrollments", "enrollment_json", "router", "sequence_json"]


def enrollment_json(enrollment: Enrollment, slug: str) -> dict[str, Any]:
    columns = ("id", "contact_id", "status", "enrolled_at", "exited_at")
    return enrollment_view({column: getattr(enrollment, column) for column in columns}, slug)


def sequence_json(sequence: Sequence) -> dict[str, Any]:
    return {
        "slug": sequence.slug,
        "name": sequence.name,
        "allow_reenrollment": sequence.allow_reenrollment,
        "created_at": format_time(sequence.created_at),
    }


def contact_enrollments(session: Session, contact_id: str) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Enrollment, Sequence.slug)
        .join(Sequence, Sequence.id == Enrollment.sequence_id)
        .where(Enrollment.contact_id == contact_id)
        .order_by(Enrollment.enrolled_at, Sequence.slug, Enrollment.seq)
    )
    return [enrollment_json(enrollment, slug) for enrollment, slug in rows]


def find_sequence(session: Session, slug: str) -> Sequence | None:
    return session.scalars(select(Sequence).where(Sequence.slug == slug)).one_or_none()


def _sequence_or_404(session: Session, slug: str) -> SequenceInfo:
    sequence = find_sequence_info(session.connection(), slug)
    if sequence is None:
        raise ApiError(404, "not_found", f"no sequence with slug {slug!r}")
    return sequence


def _editor(
    session: Session, context: ServerContext, slug: str, identifiers: dict[str, str]
) -> ContactEditor:
    _sequence_or_404(session, slug)  # an unknown sequence is 404 before an unknown contact
    connection = session.connection()
    contact = find_contact_or_404(connection, identifiers, lock=context.db.locks_rows)
    return ContactEditor(connection, contact, context.now(), created=False)


class SequenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: str = Field(pattern=f"^{SEQUENCE_SLUG_RE.pattern}$", max_length=64)
    name: str = Field(min_length=1, max_length=255)
    allow_reenrollment: bool = False


class SequenceOut(BaseModel):
    slug: str
    name: str
    allow_reenrollment: bool
    created_at: str


class EnrollmentOut(BaseModel):
    id: str
    sequence: str
    contact_id: str
    status: Literal["active", "exited", "completed"]
    enrolled_at: str
    exited_at: str | None


class EnrollOut(BaseModel):
    created: bool
    enrollment: EnrollmentOut


class UnenrollOut(BaseModel):
    exited: bool
    enrollment: EnrollmentOut | None


router = APIRouter(tags=["sequences"])
_auth = {**ERROR_RESPONSES["common"], **ERROR_RESPONSES["auth"]}


@route(router, "GET", "/sequences/", response_model=list[SequenceOut], responses=_auth)
def list_sequences(request: Request, _principal: TokenCaller) -> Any:
    """Every sequence, by slug."""
    context = get_context(request)
    return context.db.transaction(
        lambda s: [sequence_json(q) for q in s.scalars(select(Sequence).order_by(Sequence.slug))]
    )


@route(
    router,
    "POST",
    "/sequences/",
    status_code=201,
    response_model=SequenceOut,
    openapi_extra=documented_body(SequenceIn),
    responses={
        200: {"model": SequenceOut, "description": "a sequence with this slug already existed"},
        **_auth,
        **ERROR_RESPONSES["body"],
        **ERROR_RESPONSES["conflict"],
    },
)
def create_sequence(
    request: Request,
    principal: TokenCaller,
    body: Body,
) -> Response:
    """Create a sequence: 201, or 200 with the existing one when the slug is taken (unchanged)."""
    context = get_context(request)

    def produce() -> idempotency.Outcome:
        spec: SequenceIn = parse_model(SequenceIn, body.data)

        def work(session: Session) -> idempotency.Outcome:
            existing = find_sequence(session, spec.slug)
            if existing is not None:
                return 200, sequence_json(existing)
            sequence = Sequence(
                slug=spec.slug,
                name=spec.name,
                allow_reenrollment=spec.allow_reenrollment,
                created_at=context.now(),
            )
            session.add(sequence)
            session.flush()
            return 201, sequence_json(sequence)

        try:
            return context.db.transaction(work)
        finally:
            context.invalidate("sequences")

    return idempotency.respond(request, principal, body, produce)


@route(
    router,
    "POST",
    "/sequences/{slug}/enroll/",
    status_code=201,
    response_model=EnrollOut,
    openapi_extra=documented_body(IdentifiersIn),
    responses={
        200: {"model": EnrollOut, "description": "already enrolled, or re-enrollment refused"},
        **_auth,
        **ERROR_RESPONSES["body"],
        **ERROR_RESPONSES["not_found"],
        **ERROR_RESPONSES["conflict"],
    },
)
def enroll_contact(
    slug: str,
    request: Request,
    principal: Annotated[Principal, Depends(requires("sequences:write"))],
    body: Body,
) -> Response:
    """Enroll a contact: 201 when a new enrollment starts, else 200 with ``created: false``."""
    context = get_context(request)

    def produce() -> idempotency.Outcome:
        identifiers = checked(normalize_identifiers, body.data)

        def work(session: Session) -> idempotency.Outcome:
            editor = _editor(session, context, slug, identifiers)
            created, enrollment = editor.enroll(_sequence_or_404(session, slug))
            editor.finish()
            return (201 if created else 200), {"created": created, "enrollment": enrollment}

        return context.db.transaction(work)

    return idempotency.respond(request, principal, body, produce)


@route(
    router,
    "POST",
    "/sequences/{slug}/unenroll/",
    response_model=UnenrollOut,
    openapi_extra=documented_body(IdentifiersIn),
    responses={
        **_auth,
        **ERROR_RESPONSES["body"],
        **ERROR_RESPONSES["not_found"],
        **ERROR_RESPONSES["conflict"],
    },
)
def unenroll_contact(
    slug: str,
    request: Request,
    principal: Annotated[Principal, Depends(requires("sequences:write"))],
    body: Body,
) -> Response:
    """End the contact's active enrollment: ``exited: true`` with it, or ``false`` and null."""
    context = get_context(request)

    def produce() -> idempotency.Outcome:
        identifiers = checked(normalize_identifiers, body.data)

        def work(session: Session) -> idempotency.Outcome:
            editor = _editor(session, context, slug, identifiers)
            enrollment = editor.unenroll(_sequence_or_404(session, slug))
            editor.finish()
            return 200, {"exited": enrollment is not None, "enrollment": enrollment}

        return context.db.transaction(work)

    return idempotency.respond(request, principal, body, produce)


@route(
    router,
    "GET",
    "/sequences/{slug}/enrollments/",
    response_model=list[EnrollmentOut],
    responses={**_auth, **ERROR_RESPONSES["not_found"]},
)
def list_enrollments(slug: str, request: Request, _principal: TokenCaller) -> Any:
    """The sequence's enrollments, oldest first."""
    context = get_context(request)

    def work(session: Session) -> list[dict[str, Any]]:
        sequence = _sequence_or_404(session, slug)
        rows = session.scalars(
            select(Enrollment)
            .where(Enrollment.sequence_id == sequence.id)
            .order_by(Enrollment.enrolled_at, Enrollment.contact_id, Enrollment.seq)
        )
        return [enrollment_json(e, slug) for e in rows]

    return context.db.transaction(work)
