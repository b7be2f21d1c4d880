"""``POST /contacts/upsert/`` (CONTRACT.md §4): matching, merge, change set, automations.

Everything for one upsert happens in one transaction: find or create the contact, merge the sent
fields, compute the change set, add the sent tags, run the automations on the change set, log it
all. Concurrent upserts of one new identifier collide on a unique index; the loser's transaction
is retried from the start and then finds the winner's contact.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from meisa_sync.contract import MAX_CUSTOM_FIELDS
from meisa_sync.server import activity
from meisa_sync.server.automations import evaluate
from meisa_sync.server.changes import change_set, merge
from meisa_sync.server.context import ServerContext
from meisa_sync.server.errors import ApiError, validation_error
from meisa_sync.server.lookup import find_by, identifier_conflict
from meisa_sync.server.models import Contact, new_id
from meisa_sync.server.rules import apply_firings, load_rules
from meisa_sync.server.tags import add_tag, get_or_create_tag
from meisa_sync.server.views import contact_json

__all__ = ["upsert"]

_STANDARD_FIELDS = ("email", "external_id", "first_name", "last_name")


def upsert(context: ServerContext, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Apply a validated upsert payload; ``(201 | 200, the contact after automations)``."""
    return context.db.transaction(lambda session: _upsert(session, context, payload))


def _match(
    session: Session, email: str | None, external_id: str | None, *, lock: bool
) -> Contact | None:
    """The target contact per §4's matching rules, or None to create one; 409 on a conflict."""
    if external_id is not None:
        owner = find_by(session, "external_id", external_id, lock=lock)
        if owner is not None:
            if email is not None and owner.email != email:
                other = find_by(session, "email", email, lock=lock)
                if other is not None:
                    raise identifier_conflict(email)
            return owner
    if email is not None:
        owner = find_by(session, "email", email, lock=lock)
        if owner is not None:
            if (
                external_id is not None
                and owner.external_id is not None
                and owner.external_id != external_id
            ):
                raise ApiError(
                    409,
                    "identifier_conflict",
                    f"email {email!r} belongs to a contact with another external_id",
                    details=[{"field": "external_id", "message": "differs from the contact's"}],
                )
            return owner
    return None


def _upsert(
    session: Session, context: ServerContext, payload: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    now = context.now()
    email, external_id = payload.get("email"), payload.get("external_id")
    contact = _match(session, email, external_id, lock=context.db.locks_rows)
    created = contact is None
    if contact is None:
        contact = Contact(
            id=new_id(),
            email=email,
            external_id=external_id,
            custom_fields={},
            status="active",
            created_at=now,
            updated_at=now,
        )
        session.add(contact)
        session.flush()  # a concurrent creator makes this fail here; the transaction retries

    field_changes: dict[str, dict[str, Any]] = {}
    for name in _STANDARD_FIELDS:
        if name not in payload:
            continue
        old, new = (None if created else getattr(contact, name)), payload[name]
        if old != new:
            setattr(contact, name, new)
            field_changes[name] = {"from": old, "to": new}

    stored = dict(contact.custom_fields)
    merged = merge(stored, payload.get("custom_fields", {}))
    if len(merged) > MAX_CUSTOM_FIELDS:
        raise validation_error(
            "custom_fields",
            f"the contact would hold {len(merged)} custom fields; at most {MAX_CUSTOM_FIELDS}",
        )
    changes = change_set(stored, merged)
    if changes:
        contact.custom_fields = merged
    if created or changes or field_changes:
        kind = "created" if created else "updated"
        data = {"fields": field_changes, "changes": activity.changes_json(changes)}
        activity.record(session, contact.id, kind, data, now)
    session.flush()

    touched = created or bool(changes or field_changes)
    for name in payload.get("tag_names", []):
        tag, _ = get_or_create_tag(session, name, now)
        if add_tag(session, contact.id, tag, now):
            activity.record(session, contact.id, "tag_added", {"tag": tag.name}, now)
            touched = True

    firings = evaluate(load_rules(session), changes, created=created)
    if apply_firings(session, contact, firings, now):
        touched = True
    if touched and not created:
        contact.updated_at = now
    session.flush()
    return (201 if created else 200), contact_json(session, contact)
