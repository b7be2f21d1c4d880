"""``POST /contacts/upsert/`` (CONTRACT.md §4): matching, merge, change set, automations.

Everything for one upsert happens in one transaction: find or create the contact, merge the sent
fields, compute the change set, add the sent tags, run the automations on the change set, log it
all. Concurrent upserts of one new identifier collide on a unique index; the loser's transaction
is retried from the start and then finds the winner's contact.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, Select, bindparam, or_, select
from sqlalchemy.orm import Session

from meisa_sync.contract import MAX_CUSTOM_FIELDS
from meisa_sync.server.activity import changes_json
from meisa_sync.server.automations import evaluate
from meisa_sync.server.changes import change_set, merge
from meisa_sync.server.context import ServerContext
from meisa_sync.server.editor import TAGS_CACHE, ContactEditor, links, tags_table
from meisa_sync.server.errors import ApiError, validation_error
from meisa_sync.server.lookup import contacts, identifier_conflict
from meisa_sync.server.rules import apply_firings, current_rules

__all__ = ["upsert"]

_STANDARD_FIELDS = ("email", "external_id", "first_name", "last_name")


def upsert(context: ServerContext, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Apply a validated upsert payload; ``(201 | 200, the contact after automations)``."""
    return context.db.transaction(
        lambda session: _upsert(session, context, payload),
        on_retry=lambda: context.invalidate(TAGS_CACHE),
    )


@functools.cache
def _candidates(by_external_id: bool, by_email: bool, lock: str | None) -> Select[Any]:
    """Both possible targets of an upsert with their tags (a row per tag), in one query."""
    conditions = []
    if by_external_id:
        conditions.append(contacts.c.external_id == bindparam("external_key"))
    if by_email:
        conditions.append(contacts.c.email == bindparam("email_key"))
    query = (
        select(
            contacts,
            tags_table.c.id.label("tag__id"),
            tags_table.c.name.label("tag__name"),
            tags_table.c.name_key.label("tag__key"),
        )
        .select_from(
            contacts.outerjoin(links, links.c.contact_id == contacts.c.id).outerjoin(
                tags_table, tags_table.c.id == links.c.tag_id
            )
        )
        .where(or_(*conditions))
    )
    if lock == "of":  # PostgreSQL cannot lock the nullable side of an outer join
        return query.with_for_update(of=contacts)
    return query.with_for_update() if lock else query


_TAG_COLUMNS = ("tag__id", "tag__name", "tag__key")


def _match(
    connection: Connection, email: str | None, external_id: str | None, *, lock: str | None
) -> tuple[dict[str, Any], dict[str, dict[str, str]]] | None:
    """The target contact per §4's matching rules with its tags, or None to create one; 409 on a
    conflict. One query fetches both candidates (the external id's owner and the e-mail's)."""
    query = _candidates(external_id is not None, email is not None, lock)
    parameters = {"external_key": external_id, "email_key": email}
    found: dict[str, tuple[dict[str, Any], dict[str, dict[str, str]]]] = {}
    for row in connection.execute(query, parameters).mappings():
        _, tags = found.setdefault(
            row["id"], ({k: v for k, v in row.items() if k not in _TAG_COLUMNS}, {})
        )
        if row["tag__id"] is not None:
            tags[row["tag__key"]] = {"id": row["tag__id"], "name": row["tag__name"]}
    candidates = list(found.values())
    by_external = next(
        (c for c in candidates if external_id and c[0]["external_id"] == external_id), None
    )
    by_email = next((c for c in candidates if email and c[0]["email"] == email), None)
    if by_external is not None:
        if by_email is not None and by_email[0]["id"] != by_external[0]["id"]:
            raise identifier_conflict(email or "")
        return by_external
    if by_email is not None:
        if external_id is not None and by_email[0]["external_id"] is not None:
            raise ApiError(
                409,
                "identifier_conflict",
                f"email {email!r} belongs to a contact with another external_id",
                details=[{"field": "external_id", "message": "differs from the contact's"}],
            )
        return by_email
    return None


def _upsert(
    session: Session, context: ServerContext, payload: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    connection = session.connection()
    now = context.now()
    email, external_id = payload.get("email"), payload.get("external_id")
    matched = _match(connection, email, external_id, lock=context.db.lock_style)
    created = matched is None
    stored, stored_tags = matched if matched is not None else (None, {})

    old_fields: dict[str, Any] = stored or {}
    field_changes: dict[str, dict[str, Any]] = {}
    for name in _STANDARD_FIELDS:
        if name in payload and old_fields.get(name) != payload[name]:
            field_changes[name] = {"from": old_fields.get(name), "to": payload[name]}

    stored_custom: dict[str, Any] = old_fields.get("custom_fields") or {}
    merged = merge(stored_custom, payload.get("custom_fields", {}))
    if len(merged) > MAX_CUSTOM_FIELDS:
        raise validation_error(
            "custom_fields",
            f"the contact would hold {len(merged)} custom fields; at most {MAX_CUSTOM_FIELDS}",
        )
    changes = change_set(stored_custom, merged)

    if stored is None:
        values = {name: change["to"] for name, change in field_changes.items()}
        editor = ContactEditor.create(connection, {**values, "custom_fields": merged}, now, context)
    else:
        editor = ContactEditor(
            connection, stored, now, created=False, cache=context, tags=stored_tags
        )
        for name, change in field_changes.items():
            editor.set(name, change["to"])
        if changes:
            editor.set("custom_fields", merged)
    if created or changes or field_changes:
        data = {"fields": field_changes, "changes": changes_json(changes)}
        editor.log("created" if created else "updated", data)

    for name in payload.get("tag_names", []):
        editor.add_tag(name)
    apply_firings(
        context, editor, evaluate(current_rules(context, session), changes, created=created)
    )
    return (201 if created else 200), editor.finish()
