"""The contact as the API shows it (CONTRACT.md §4's contact object)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy.orm import Session

from meisa_sync.server.models import Contact
from meisa_sync.server.sequences import EnrollmentOut, contact_enrollments
from meisa_sync.server.shapes import contact_view
from meisa_sync.server.tags import TagOut, tags_of

__all__ = ["ContactOut", "ContactWithEnrollments", "contact_json"]

CustomValue = str | int | float | bool
_COLUMNS = (
    "id", "email", "external_id", "first_name", "last_name", "custom_fields", "status",
    "created_at", "updated_at",
)  # fmt: skip


class ContactOut(BaseModel):
    id: str
    email: str | None
    external_id: str | None
    first_name: str | None
    last_name: str | None
    custom_fields: dict[str, CustomValue]
    tags: list[TagOut]
    status: Literal["active", "unsubscribed"]
    created_at: str
    updated_at: str


class ContactWithEnrollments(ContactOut):
    enrollments: list[EnrollmentOut]


def contact_json(
    session: Session, contact: Contact, *, with_enrollments: bool = False
) -> dict[str, Any]:
    """A stored contact as the API shows it (reads its tags, and enrollments if asked)."""
    data = contact_view(
        {column: getattr(contact, column) for column in _COLUMNS}, tags_of(session, contact.id)
    )
    if with_enrollments:
        data["enrollments"] = contact_enrollments(session, contact.id)
    return data
