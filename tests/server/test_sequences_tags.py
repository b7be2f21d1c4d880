"""CONTRACT.md §5: tags and sequences, enrollment and re-enrollment."""

from __future__ import annotations

import httpx

from tests.fixtures.server import key_headers
from tests.server.test_wire import assert_error


async def test_tags(meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    created = await meisa_async_client.post("/tags/", json={"name": "VIP"}, headers=key_headers())
    assert created.status_code == 201
    again = await meisa_async_client.post("/tags/", json={"name": "vip"}, headers=key_headers())
    assert again.status_code == 200 and again.json() == created.json()
    for body, field in (({}, "name"), ({"name": ""}, "name"), ({"name": "x", "y": 1}, "y")):
        bad = await meisa_async_client.post("/tags/", json=body, headers=key_headers())
        assert assert_error(bad, 400, "validation_error")["details"][0]["field"] == field
    await meisa_async_client.post(
        "/contacts/upsert/", json={"email": "t@x.io", "tag_names": ["vip"]}, headers=key_headers()
    )
    listed = (await meisa_async_client.get("/tags/", headers=admin_headers)).json()
    assert {"id": created.json()["id"], "name": "VIP", "contact_count": 1} in listed
    tag_id = created.json()["id"]
    assert (
        await meisa_async_client.delete(f"/tags/{tag_id}/", headers=admin_headers)
    ).status_code == 204
    gone = await meisa_async_client.delete(f"/tags/{tag_id}/", headers=admin_headers)
    assert_error(gone, 404, "not_found")
    contacts = (await meisa_async_client.get("/contacts/", headers=admin_headers)).json()
    assert contacts["results"][0]["tags"] == []


async def test_sequences(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    listed = (await meisa_async_client.get("/sequences/", headers=admin_headers)).json()
    assert [s["slug"] for s in listed] == ["welcome", "welcome-pro", "win-back"]
    assert listed[0]["allow_reenrollment"] is False
    body = {"slug": "nurture", "name": "Nurture", "allow_reenrollment": True}
    created = await meisa_async_client.post("/sequences/", json=body, headers=admin_headers)
    assert created.status_code == 201
    assert created.json()["slug"] == "nurture" and created.json()["created_at"].endswith("Z")
    again = await meisa_async_client.post("/sequences/", json=body, headers=admin_headers)
    assert again.status_code == 200
    for bad_body, field in (
        ({"slug": "Bad Slug", "name": "x"}, "slug"),
        ({"slug": "-x", "name": "x"}, "slug"),
        ({"slug": "ok", "name": ""}, "name"),
        ({"slug": "ok", "name": "x", "allow_reenrollment": "yes"}, "allow_reenrollment"),
    ):
        bad = await meisa_async_client.post("/sequences/", json=bad_body, headers=admin_headers)
        assert assert_error(bad, 400, "validation_error")["details"][0]["field"] == field
    key_post = await meisa_async_client.post("/sequences/", json=body, headers=key_headers())
    assert_error(key_post, 403, "write_only_key")


async def enroll(client: httpx.AsyncClient, slug: str, action: str = "enroll") -> httpx.Response:
    return await client.post(
        f"/sequences/{slug}/{action}/", json={"external_id": "e1"}, headers=key_headers()
    )


async def test_enrollment_rules(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    assert_error(await enroll(meisa_async_client, "welcome"), 404, "not_found")
    await meisa_async_client.post(
        "/contacts/upsert/", json={"external_id": "e1"}, headers=key_headers()
    )
    assert_error(await enroll(meisa_async_client, "nope"), 404, "not_found")

    first = await enroll(meisa_async_client, "welcome")
    assert first.status_code == 201 and first.json()["created"] is True
    enrollment = first.json()["enrollment"]
    assert enrollment["status"] == "active" and enrollment["exited_at"] is None
    same = await enroll(meisa_async_client, "welcome")
    assert same.status_code == 200 and same.json() == {"created": False, "enrollment": enrollment}

    exited = await enroll(meisa_async_client, "welcome", "unenroll")
    assert exited.status_code == 200 and exited.json()["exited"] is True
    assert exited.json()["enrollment"]["status"] == "exited"
    nothing = await enroll(meisa_async_client, "welcome", "unenroll")
    assert nothing.json() == {"exited": False, "enrollment": None}
    refused = await enroll(meisa_async_client, "welcome")
    assert refused.status_code == 200 and refused.json()["created"] is False
    assert refused.json()["enrollment"]["status"] == "exited"

    await meisa_async_client.post(
        "/sequences/", json={"slug": "again", "name": "Again", "allow_reenrollment": True},
        headers=admin_headers,
    )  # fmt: skip
    assert (await enroll(meisa_async_client, "again")).status_code == 201
    await enroll(meisa_async_client, "again", "unenroll")
    second = await enroll(meisa_async_client, "again")
    assert second.status_code == 201 and second.json()["enrollment"]["status"] == "active"
    listed = (
        await meisa_async_client.get("/sequences/again/enrollments/", headers=admin_headers)
    ).json()
    assert [e["status"] for e in listed] == ["exited", "active"]
    missing = await meisa_async_client.get("/sequences/nope/enrollments/", headers=admin_headers)
    assert_error(missing, 404, "not_found")
