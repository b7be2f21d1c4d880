"""CONTRACT.md §4: upsert matching, merge, validation, and the other contact endpoints."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.server import key_headers
from tests.server.test_wire import assert_error


async def upsert(client: httpx.AsyncClient, body: dict[str, Any], status: int | None = None) -> Any:
    response = await client.post("/contacts/upsert/", json=body, headers=key_headers())
    if status is not None:
        assert response.status_code == status, response.text
    return response


async def test_create_then_update_returns_the_seed_shape(
    meisa_async_client: httpx.AsyncClient,
) -> None:
    created = await upsert(
        meisa_async_client,
        {
            "email": "  John@Example.COM ",
            "external_id": 12345,
            "first_name": "John",
            "last_name": "Doe",
            "custom_fields": {"mrr": 99.0, "signup_date": "2024-01-15"},
            "tag_names": ["pro-plan", "Paying-Customer"],
        },
        201,
    )
    contact = created.json()
    assert set(contact) == {
        "id", "email", "external_id", "first_name", "last_name", "custom_fields", "tags",
        "status", "created_at", "updated_at",
    }  # fmt: skip
    assert contact["email"] == "john@example.com"
    assert contact["external_id"] == "12345"
    assert contact["custom_fields"] == {"mrr": 99.0, "signup_date": "2024-01-15"}
    assert [t["name"] for t in contact["tags"]] == ["Paying-Customer", "pro-plan"]
    assert contact["status"] == "active"
    assert contact["created_at"].endswith("Z") and contact["created_at"] == contact["updated_at"]
    updated = await upsert(meisa_async_client, {"external_id": "12345", "last_name": None}, 200)
    assert updated.json()["id"] == contact["id"]
    assert updated.json()["last_name"] is None
    assert updated.json()["first_name"] == "John"


async def test_matching_rules(meisa_async_client: httpx.AsyncClient) -> None:
    a = (await upsert(meisa_async_client, {"email": "a@x.io", "external_id": "A"}, 201)).json()
    b = (await upsert(meisa_async_client, {"email": "b@x.io"}, 201)).json()
    # 1. external_id owned by A wins; an email owned by another contact is a conflict.
    conflict = await upsert(meisa_async_client, {"external_id": "A", "email": "b@x.io"})
    assert_error(conflict, 409, "identifier_conflict")
    # 1. an unowned email moves to A.
    moved = (await upsert(meisa_async_client, {"external_id": "A", "email": "a2@x.io"}, 200)).json()
    assert moved["id"] == a["id"] and moved["email"] == "a2@x.io"
    # 2. email owned by B, B has no external_id: it is set.
    got = (await upsert(meisa_async_client, {"email": "b@x.io", "external_id": "B"}, 200)).json()
    assert got["id"] == b["id"] and got["external_id"] == "B"
    # 2. B has another external_id now: conflict.
    clash = await upsert(meisa_async_client, {"email": "b@x.io", "external_id": "C"})
    assert_error(clash, 409, "identifier_conflict")
    # 2. email alone still finds B.
    same = (await upsert(meisa_async_client, {"email": "B@X.io"}, 200)).json()
    assert same["id"] == b["id"]
    # 3. nothing matches: created.
    await upsert(meisa_async_client, {"external_id": "D"}, 201)


async def test_custom_field_merge(meisa_async_client: httpx.AsyncClient) -> None:
    first = {"plan_x": "free", "mrr": 0, "beta": False, "note": "", "gone": "soon"}
    await upsert(meisa_async_client, {"email": "m@x.io", "custom_fields": first}, 201)
    response = await upsert(
        meisa_async_client,
        {"email": "m@x.io", "custom_fields": {"mrr": 99, "gone": None, "new": 1.5}},
        200,
    )
    assert response.json()["custom_fields"] == {
        "plan_x": "free", "mrr": 99, "beta": False, "note": "", "new": 1.5,
    }  # fmt: skip


async def test_at_most_200_custom_fields_per_contact(meisa_async_client: httpx.AsyncClient) -> None:
    fields = {f"f{i}": i for i in range(150)}
    await upsert(meisa_async_client, {"email": "f@x.io", "custom_fields": fields}, 201)
    more = {f"g{i}": i for i in range(51)}
    response = await upsert(meisa_async_client, {"email": "f@x.io", "custom_fields": more})
    error = assert_error(response, 400, "validation_error")
    assert error["details"][0]["field"] == "custom_fields"
    fifty = {f"g{i}": i for i in range(50)}
    await upsert(meisa_async_client, {"email": "f@x.io", "custom_fields": fifty}, 200)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "email"),
        ({"first_name": "x"}, "email"),
        ({"email": "a@b.co", "custom_field": {}}, "custom_field"),
        ({"email": "a@b"}, "email"),
        ({"email": "@b.co"}, "email"),
        ({"email": "a@@b.co"}, "email"),
        ({"email": "a" * 250 + "@b.co"}, "email"),
        ({"external_id": ""}, "external_id"),
        ({"external_id": True}, "external_id"),
        ({"external_id": "x" * 256}, "external_id"),
        ({"email": "a@b.co", "first_name": 3}, "first_name"),
        ({"email": "a@b.co", "last_name": "x" * 256}, "last_name"),
        ({"email": "a@b.co", "custom_fields": []}, "custom_fields"),
        ({"email": "a@b.co", "custom_fields": {"9lives": 1}}, "custom_fields.9lives"),
        ({"email": "a@b.co", "custom_fields": {"a": {"b": 1}}}, "custom_fields.a"),
        ({"email": "a@b.co", "custom_fields": {"a": [1]}}, "custom_fields.a"),
        ({"email": "a@b.co", "custom_fields": {"a": "x" * 10_001}}, "custom_fields.a"),
        ({"email": "a@b.co", "tag_names": "vip"}, "tag_names"),
        ({"email": "a@b.co", "tag_names": ["ok", ""]}, "tag_names[1]"),
        ({"email": "a@b.co", "tag_names": ["x" * 101]}, "tag_names[0]"),
        ({"email": "a@b.co", "tag_names": [str(i) for i in range(51)]}, "tag_names"),
        ([], "body"),
    ],
)
async def test_invalid_upserts_are_400_naming_the_field(
    meisa_async_client: httpx.AsyncClient, body: Any, field: str
) -> None:
    response = await meisa_async_client.post("/contacts/upsert/", json=body, headers=key_headers())
    error = assert_error(response, 400, "validation_error")
    assert error["details"][0]["field"] == field
    assert error["message"].startswith(field)


async def test_values_that_look_empty_are_values(meisa_async_client: httpx.AsyncClient) -> None:
    fields = {"zero": 0, "no": False, "empty": ""}
    contact = (
        await upsert(meisa_async_client, {"email": "z@x.io", "custom_fields": fields}, 201)
    ).json()
    assert contact["custom_fields"] == fields


async def test_tag_names_are_unique_case_insensitively_first_spelling_kept(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await upsert(meisa_async_client, {"email": "t1@x.io", "tag_names": ["VIP"]}, 201)
    second = await upsert(
        meisa_async_client, {"email": "t2@x.io", "tag_names": ["vip", "Vip"]}, 201
    )
    assert [t["name"] for t in second.json()["tags"]] == ["VIP"]
    tags = (await meisa_async_client.get("/tags/", headers=admin_headers)).json()
    assert [(t["name"], t["contact_count"]) for t in tags if t["name"] == "VIP"] == [("VIP", 2)]


async def test_list_filters_and_pagination(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for i in range(7):
        tags = ["even"] if i % 2 == 0 else []
        await upsert(
            meisa_async_client, {"email": f"p{i}@x.io", "external_id": i, "tag_names": tags}
        )
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (
            await meisa_async_client.get("/contacts/", params=params, headers=admin_headers)
        ).json()
        seen.extend(c["email"] for c in page["results"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"p{i}@x.io" for i in range(7)]

    async def emails(**params: Any) -> list[str]:
        response = await meisa_async_client.get("/contacts/", params=params, headers=admin_headers)
        assert response.status_code == 200, response.text
        return [c["email"] for c in response.json()["results"]]

    assert await emails(email="P3@X.io") == ["p3@x.io"]
    assert await emails(external_id="4") == ["p4@x.io"]
    assert await emails(tag="EVEN") == ["p0@x.io", "p2@x.io", "p4@x.io", "p6@x.io"]
    assert await emails(tag="unknown") == []
    bad = await meisa_async_client.get(
        "/contacts/", params={"cursor": "%%%"}, headers=admin_headers
    )
    assert assert_error(bad, 400, "validation_error")["details"][0]["field"] == "cursor"


async def test_get_contact_and_activity(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    contact = (await upsert(meisa_async_client, {"email": "g@x.io", "first_name": "G"}, 201)).json()
    await upsert(meisa_async_client, {"email": "g@x.io", "first_name": "G"}, 200)  # no change
    await upsert(meisa_async_client, {"email": "g@x.io", "custom_fields": {"n": 1}}, 200)
    got = await meisa_async_client.get(f"/contacts/{contact['id']}/", headers=admin_headers)
    assert got.status_code == 200
    assert got.json()["enrollments"] == []
    log = (
        await meisa_async_client.get(f"/contacts/{contact['id']}/activity/", headers=admin_headers)
    ).json()
    assert [entry["kind"] for entry in log] == ["created", "updated"]
    assert log[1]["data"] == {"fields": {}, "changes": {"n": {"from": None, "to": 1}}}
    for path in ("/contacts/nope/", "/contacts/nope/activity/"):
        assert_error(await meisa_async_client.get(path, headers=admin_headers), 404, "not_found")


async def test_tags_endpoint_adds_and_removes_without_automations(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    contact = (await upsert(meisa_async_client, {"external_id": "u1"}, 201)).json()
    response = await meisa_async_client.post(
        "/contacts/tags/",
        json={"external_id": "u1", "add": ["a", "b"], "remove": ["missing"]},
        headers=key_headers(),
    )
    assert response.status_code == 200, response.text
    assert [t["name"] for t in response.json()["tags"]] == ["a", "b"]
    response = await meisa_async_client.post(
        "/contacts/tags/", json={"external_id": "u1", "remove": ["A"]}, headers=key_headers()
    )
    assert [t["name"] for t in response.json()["tags"]] == ["b"]
    log = (
        await meisa_async_client.get(f"/contacts/{contact['id']}/activity/", headers=admin_headers)
    ).json()
    assert [(e["kind"], e["data"].get("tag")) for e in log] == [
        ("created", None), ("tag_added", "a"), ("tag_added", "b"), ("tag_removed", "a"),
    ]  # fmt: skip
    missing = await meisa_async_client.post(
        "/contacts/tags/", json={"external_id": "nobody", "add": ["a"]}, headers=key_headers()
    )
    assert_error(missing, 404, "not_found")
    bad = await meisa_async_client.post(
        "/contacts/tags/", json={"external_id": "u1", "add": "a"}, headers=key_headers()
    )
    assert assert_error(bad, 400, "validation_error")["details"][0]["field"] == "add"


async def test_delete_erases_the_contact_and_its_traces(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = {"email": "d@x.io", "custom_fields": {"plan": "free"}, "tag_names": ["x"]}
    contact = (await upsert(meisa_async_client, body, 201)).json()
    response = await meisa_async_client.post(
        "/contacts/delete/", json={"email": "d@x.io"}, headers=key_headers()
    )
    assert response.status_code == 200
    assert response.json() == {"deleted": True, "id": contact["id"]}
    got = await meisa_async_client.get(f"/contacts/{contact['id']}/", headers=admin_headers)
    assert_error(got, 404, "not_found")
    again = await meisa_async_client.post(
        "/contacts/delete/", json={"email": "d@x.io"}, headers=key_headers()
    )
    assert_error(again, 404, "not_found")
    enrollments = await meisa_async_client.get(
        "/sequences/welcome/enrollments/", headers=admin_headers
    )
    assert enrollments.json() == []
    recreated = await upsert(meisa_async_client, body, 201)
    assert recreated.json()["id"] != contact["id"]
