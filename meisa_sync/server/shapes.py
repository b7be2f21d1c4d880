"""The JSON shapes the API answers with for a contact and an enrollment (CONTRACT.md §4, §5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meisa_sync.server.context import format_time

__all__ = ["contact_view", "enrollment_view"]


def enrollment_view(row: Mapping[str, Any], slug: str) -> dict[str, Any]:
    """An enrollment as the API shows it."""
    exited = row["exited_at"]
    return {
        "id": row["id"],
        "sequence": slug,
        "contact_id": row["contact_id"],
        "status": row["status"],
        "enrolled_at": format_time(row["enrolled_at"]),
        "exited_at": format_time(exited) if exited else None,
    }


def contact_view(row: Mapping[str, Any], tags: list[dict[str, str]]) -> dict[str, Any]:
    """A contact as the API shows it (the seed's shape), tags sorted by name."""
    return {
        "id": row["id"],
        "email": row["email"],
        "external_id": row["external_id"],
        "first_name": row["first_name"],
        "last_name": row["last_name"],
        "custom_fields": row["custom_fields"],
        "tags": sorted(tags, key=lambda tag: (tag["name"].lower(), tag["name"])),
        "status": row["status"],
        "created_at": format_time(row["created_at"]),
        "updated_at": format_time(row["updated_at"]),
    }
