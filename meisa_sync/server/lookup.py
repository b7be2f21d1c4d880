"""Finding the contact a request names by ``email`` and/or ``external_id``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, select

from meisa_sync.server.documented import Email, ExternalId, identified, optional
from meisa_sync.server.errors import ApiError
from meisa_sync.server.models import Contact

__all__ = ["IdentifiersIn", "find_by", "find_contact", "find_contact_or_404", "identifier_conflict"]

contacts = Contact.__table__


class IdentifiersIn(BaseModel):
    """Names a contact: its ``email``, its ``external_id`` (string or integer), or both."""

    model_config = identified(extra="allow")
    email: Email = optional()
    external_id: ExternalId = optional()


def identifier_conflict(email: str) -> ApiError:
    return ApiError(
        409,
        "identifier_conflict",
        f"email {email!r} belongs to another contact than this external_id",
        details=[{"field": "email", "message": "belongs to another contact"}],
    )


def find_by(
    connection: Connection, column: str, value: str, *, lock: bool
) -> dict[str, Any] | None:
    """The contact row whose ``column`` is ``value`` (locked for the transaction if ``lock``)."""
    query = select(contacts).where(contacts.c[column] == value)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).mappings().first()
    return None if row is None else dict(row)


def find_contact(
    connection: Connection, identifiers: Mapping[str, str], *, lock: bool = False
) -> dict[str, Any] | None:
    """The contact with the ``external_id``, else the one with the ``email``.

    When both are given and name two different contacts: 409 ``identifier_conflict``.
    """
    by_external = (
        find_by(connection, "external_id", identifiers["external_id"], lock=lock)
        if "external_id" in identifiers
        else None
    )
    by_email = (
        find_by(connection, "email", identifiers["email"], lock=lock)
        if "email" in identifiers
        else None
    )
    if by_external is not None and by_email is not None and by_external["id"] != by_email["id"]:
        raise identifier_conflict(identifiers["email"])
    return by_external or by_email


def find_contact_or_404(
    connection: Connection, identifiers: Mapping[str, str], *, lock: bool = False
) -> dict[str, Any]:
    contact = find_contact(connection, identifiers, lock=lock)
    if contact is None:
        named = ", ".join(f"{name} {value!r}" for name, value in identifiers.items())
        raise ApiError(404, "not_found", f"no contact with {named}")
    return contact
