"""The server on SQLite, PostgreSQL and MariaDB: the same answers, whatever the database."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fixtures.server import async_admin_headers, key_headers, make_meisa_app
from tests.server.test_seed_story import tags


async def test_the_story_and_the_edge_cases_on_every_backend(database_url: str) -> None:
    app = make_meisa_app(database_url)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
            admin = await async_admin_headers(client)

            async def upsert(body: dict[str, Any]) -> dict[str, Any]:
                response = await client.post("/contacts/upsert/", json=body, headers=key_headers())
                assert response.status_code in (200, 201), response.text
                result: dict[str, Any] = response.json()
                return result

            for plan in ("free", "pro", "churned"):
                contact = await upsert({"email": "s@x.io", "custom_fields": {"plan": plan}})
            assert tags(contact) == ["churned", "pro-plan"]
            detail = (await client.get(f"/contacts/{contact['id']}/", headers=admin)).json()
            assert [e["sequence"] for e in detail["enrollments"]] == [
                "welcome", "welcome-pro", "win-back",
            ]  # fmt: skip

            # Exact comparisons: MySQL's default collations would call these equal.
            accented = await upsert({"email": "josé@x.io", "tag_names": ["Café"]})
            plain = await upsert({"email": "jose@x.io", "tag_names": ["cafe", "CAFÉ"]})
            assert accented["id"] != plain["id"]
            assert [t["name"] for t in plain["tags"]] == ["cafe", "Café"]
            assert (await upsert({"external_id": "A "}))["external_id"] == "A"
            assert (await upsert({"external_id": "a"}))["id"] != (
                await upsert({"external_id": "A"})
            )["id"]

            # Timestamps keep their microseconds, so the contacts list keeps its order.
            for i in range(5):
                await upsert({"email": f"order{i}@x.io"})
            emails: list[str] = []
            cursor = None
            while True:
                params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
                page = (await client.get("/contacts/", params=params, headers=admin)).json()
                emails += [c["email"] for c in page["results"] if c["email"]]
                if (cursor := page["next_cursor"]) is None:
                    break
            assert [e for e in emails if e.startswith("order")] == [
                f"order{i}@x.io" for i in range(5)
            ]
            big = {"email": "big@x.io", "custom_fields": {"text": "é" * 10_000}}
            assert (await upsert(big))["custom_fields"]["text"] == "é" * 10_000
    finally:
        app.state.meisa.close()
