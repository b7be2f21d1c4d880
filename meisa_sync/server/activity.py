"""The contact activity log (CONTRACT.md §4): what happened to a contact, oldest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from meisa_sync.server.context import format_time
from meisa_sync.server.models import Activity

__all__ = ["KINDS", "changes_json", "entries"]

KINDS = ("created", "updated", "automation", "tag_added", "tag_removed", "enrolled", "unenrolled")


def changes_json(changes: dict[str, tuple[Any, Any]]) -> dict[str, dict[str, Any]]:
    """A change set as JSON: ``{"plan": {"from": "free", "to": "pro"}}``."""
    return {name: {"from": old, "to": new} for name, (old, new) in changes.items()}


def entries(session: Session, contact_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Activity).where(Activity.contact_id == contact_id).order_by(Activity.id)
    )
    return [{"at": format_time(row.at), "kind": row.kind, "data": row.data} for row in rows]
