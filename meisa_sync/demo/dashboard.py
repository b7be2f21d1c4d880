"""Reading what Meisa holds, as the dashboard does: a bearer token and the read endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["ContactView", "Dashboard"]


@dataclass(frozen=True)
class ContactView:
    """One contact as the demo prints it."""

    email: str
    custom_fields: dict[str, Any]
    tags: list[str]
    enrollments: list[tuple[str, str]]  # (sequence, status)
    activity: list[dict[str, Any]]


class Dashboard:
    """The token endpoints of a Meisa server (CONTRACT.md §4, §7)."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=10)
        login = self._http.post("/auth/token/", json={"username": username, "password": password})
        login.raise_for_status()
        self._http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def contact(self, email: str) -> ContactView | None:
        """The contact with ``email``, with its enrollments and activity, or None."""
        found = self._get("/contacts/", params={"email": email})["results"]
        if not found:
            return None
        contact = self._get(f"/contacts/{found[0]['id']}/")
        return ContactView(
            email=contact["email"],
            custom_fields=contact["custom_fields"],
            tags=[tag["name"] for tag in contact["tags"]],
            enrollments=[(e["sequence"], e["status"]) for e in contact.get("enrollments", [])],
            activity=self._get(f"/contacts/{contact['id']}/activity/"),
        )

    def count_contacts(self) -> int:
        """How many contacts the server holds (walking the pages)."""
        count, cursor = 0, None
        while True:
            params: dict[str, Any] = {"limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = self._get("/contacts/", params=params)
            count += len(page["results"])
            cursor = page["next_cursor"]
            if not cursor:
                return count

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        response = self._http.get(path, params=params)
        response.raise_for_status()
        return response.json()
