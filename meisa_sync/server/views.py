"""The contact as the API shows it (CONTRACT.md §4's contact object)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy.orm import Session

from meisa_sync.server.context import format_time
from meisa_sync.server.models import Contact
from meisa_sync.server.sequences import EnrollmentOut, contact_enrollments
from meisa_sync.server.tags import TagOut, tags_of

__all__ = ["ContactOut", "ContactWithEnrollments", "contact_json"]

CustomValue = str | int | float | bool


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
    data: dict[str, Any] = {
        "id": contact.id,
        "email": contact.email,
        "external_id": contact.external_id,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "custom_fields": contact.custom_fields,
        "tags": tags_of(session, contact.id),
        "status": contact.status,
        "created_at": format_time(contact.created_at),
        "updated_at": format_time(contact.updated_at),
    }
    if with_enrollments:
        data["enrollments"] = contact_enrollments(session, contact.id)
    return data
