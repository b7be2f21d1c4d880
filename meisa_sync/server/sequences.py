"""Sequences and enrollments (CONTRACT.md §5).

A contact has at most one active enrollment per sequence. Enrolling again while active changes
nothing; after an exited or completed enrollment, a new one starts only if the sequence allows
re-enrollment. The same rules serve the API and the automations' ``enroll`` action.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from meisa_sync.contract import SEQUENCE_SLUG_RE, normalize_identifiers
from meisa_sync.exceptions import PayloadError
from meisa_sync.server import activity, idempotency
from meisa_sync.server.auth import Principal, TokenCaller, requires
from meisa_sync.server.body import Body, documented_body, parse_model
from meisa_sync.server.context import format_time, get_context
from meisa_sync.server.errors import ERROR_RESPONSES, ApiError, from_payload_error
from meisa_sync.server.lookup import IdentifiersIn, find_contact_or_404
from meisa_sync.server.models import Contact, Enrollment, Sequence
from meisa_sync.server.routing import route

__all__ = ["enroll", "enrollment_json", "router", "sequence_json", "unenroll"]


def enrollment_json(enrollment: Enrollment, slug: str) -> dict[str, Any]:
    return {
        "id": enrollment.id,
        "sequence": slug,
        "contact_id": enrollment.contact_id,
        "status": enrollment.status,
        "enrolled_at": format_time(enrollment.enrolled_at),
        "exited_at": format_time(enrollment.exited_at) if enrollment.exited_at else None,
    }


def sequence_json(sequence: Sequence) -> dict[str, Any]:
    return {
        "slug": sequence.slug,
        "name": sequence.name,
        "allow_reenrollment": sequence.allow_reenrollment,
        "created_at": format_time(sequence.created_at),
    }


def _enrollments(session: Session, contact_id: str, sequence_id: str) -> list[Enrollment]:
    return list(
        session.scalars(
            select(Enrollment)
            .where(Enrollment.contact_id == contact_id, Enrollment.sequence_id == sequence_id)
            .order_by(Enrollment.seq)
        )
    )


def enroll(
    session: Session,
    contact: Contact,
    sequence: Sequence,
    now: datetime,
    via: Mapping[str, Any] | None = None,
) -> tuple[bool, Enrollment]:
    """Enroll per §5: ``(True, new)``, or ``(False, the active or latest one)`` when refused.

    ``via`` is added to the activity entry (the automation that enrolled the contact).
    """
    history = _enrollments(session, contact.id, sequence.id)
    active = [e for e in history if e.status == "active"]
    if active:
        return False, active[-1]
    if history and not sequence.allow_reenrollment:
        return False, history[-1]
    enrollment = Enrollment(
        sequence_id=sequence.id,
        contact_id=contact.id,
        status="active",
        enrolled_at=now,
        exited_at=None,
        seq=len(history) + 1,
    )
    session.add(enrollment)
    session.flush()
    activity.record(
        session, contact.id, "enrolled", {"sequence": sequence.slug, **(via or {})}, now
    )
    return True, enrollment


def unenroll(
    session: Session,
    contact: Contact,
    sequence: Sequence,
    now: datetime,
    via: Mapping[str, Any] | None = None,
) -> Enrollment | None:
    """End the active enrollment (it becomes ``exited``); None when there was none."""
    active = [e for e in _enrollments(session, contact.id, sequence.id) if e.status == "active"]
    if not active:
        return None
    enrollment = active[-1]
    enrollment.status = "exited"
    enrollment.exited_at = now
    data = {"sequence": sequence.slug, **(via or {})}
    activity.record(session, contact.id, "unenrolled", data, now)
    return enrollment


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


def _sequence_or_404(session: Session, slug: str) -> Sequence:
    sequence = find_sequence(session, slug)
    if sequence is None:
        raise ApiError(404, "not_found", f"no sequence with slug {slug!r}")
    return sequence


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

        return context.db.transaction(work)

    return idempotency.respond(request, principal, body, produce)


def _identifiers(data: Any) -> dict[str, str]:
    try:
        return normalize_identifiers(data)
    except PayloadError as exc:
        raise from_payload_error(exc) from None


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
        identifiers = _identifiers(body.data)

        def work(session: Session) -> idempotency.Outcome:
            sequence = _sequence_or_404(session, slug)
            contact = find_contact_or_404(session, identifiers, lock=context.db.locks_rows)
            created, enrollment = enroll(session, contact, sequence, context.now())
            payload = {"created": created, "enrollment": enrollment_json(enrollment, slug)}
            return (201 if created else 200), payload

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
        identifiers = _identifiers(body.data)

        def work(session: Session) -> idempotency.Outcome:
            sequence = _sequence_or_404(session, slug)
            contact = find_contact_or_404(session, identifiers, lock=context.db.locks_rows)
            enrollment = unenroll(session, contact, sequence, context.now())
            return 200, {
                "exited": enrollment is not None,
                "enrollment": enrollment_json(enrollment, slug) if enrollment else None,
            }

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
