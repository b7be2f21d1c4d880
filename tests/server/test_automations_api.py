"""CONTRACT.md §6 over HTTP: the rules' CRUD, validation, and firing inside upserts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.server import key_headers
from tests.server.test_wire import assert_error


async def create_rule(
    client: httpx.AsyncClient, admin: dict[str, str], rule: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post("/automations/", json=rule, headers=admin)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def fired(
    client: httpx.AsyncClient, admin: dict[str, str], contact_id: str
) -> list[tuple[str, list[str]]]:
    log = (await client.get(f"/contacts/{contact_id}/activity/", headers=admin)).json()
    return [
        (e["data"]["rule_name"], [a["result"] for a in e["data"]["actions"]])
        for e in log
        if e["kind"] == "automation"
    ]


async def test_seed_rules_are_listed_in_run_order(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    rules = (await meisa_async_client.get("/automations/", headers=admin_headers)).json()
    assert [r["name"] for r in rules] == ["signup", "to pro", "free to paid", "churn"]
    assert rules[2]["trigger"] == {
        "field": "plan", "from": "free", "to": {"not_in": ["free", "churned"]},
    }  # fmt: skip


async def test_crud(meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    rule = await create_rule(
        meisa_async_client,
        admin_headers,
        {
            "name": "vip",
            "position": 5,
            "trigger": {"field": "mrr", "to": {"gte": 1000}},
            "actions": [{"type": "add_tag", "tag": "vip"}],
        },
    )
    assert rule["enabled"] is True
    path = f"/automations/{rule['id']}/"
    assert (await meisa_async_client.get(path, headers=admin_headers)).json() == rule
    patched = await meisa_async_client.patch(path, json={"enabled": False}, headers=admin_headers)
    assert patched.status_code == 200
    assert patched.json() == {**rule, "enabled": False}
    bad_patch = await meisa_async_client.patch(
        path, json={"trigger": {"field": "mrr", "to": {"gte": "x"}}}, headers=admin_headers
    )
    assert assert_error(bad_patch, 400, "validation_error")["details"][0]["field"].startswith(
        "trigger.to"
    )
    assert (await meisa_async_client.delete(path, headers=admin_headers)).status_code == 204
    for method in ("GET", "DELETE"):
        gone = await meisa_async_client.request(method, path, headers=admin_headers)
        assert_error(gone, 404, "not_found")
    gone = await meisa_async_client.patch(path, json={}, headers=admin_headers)
    assert_error(gone, 404, "not_found")


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"trigger": {"field": "plan"}, "actions": []}, "name"),
        (
            {
                "name": "x",
                "trigger": {"field": "plan"},
                "actions": [{"type": "enroll", "sequence": "nope"}],
            },
            "actions[0].sequence",
        ),
        (
            {"name": "x", "trigger": {"field": "p", "to": {"gt": "1"}}, "actions": []},
            "trigger.to.gt",
        ),
        ({"name": "x", "trigger": {"event": "contact_deleted"}, "actions": []}, "trigger.event"),
        (
            {"name": "x", "trigger": {"field": "p"}, "actions": [{"type": "boom"}]},
            "actions[0].type",
        ),
        ({"name": "x", "trigger": {"field": "plan"}, "actions": [], "colour": 1}, "colour"),
    ],
)
async def test_malformed_rules_are_400_naming_the_field(
    meisa_async_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    rule: dict[str, Any],
    field: str,
) -> None:
    response = await meisa_async_client.post("/automations/", json=rule, headers=admin_headers)
    error = assert_error(response, 400, "validation_error")
    assert error["details"][0]["field"] == field, error


async def test_rules_and_actions_run_in_order_and_disabled_rules_never_fire(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    common = {"trigger": {"field": "score", "to": {"gt": 10}}}
    await create_rule(
        meisa_async_client,
        admin_headers,
        {
            **common,
            "name": "late",
            "position": 100,
            "actions": [{"type": "remove_tag", "tag": "t"}],
        },
    )
    await create_rule(
        meisa_async_client,
        admin_headers,
        {**common, "name": "early", "position": 1, "actions": [
            {"type": "add_tag", "tag": "t"}, {"type": "add_tag", "tag": "t"},
        ]},
    )  # fmt: skip
    await create_rule(
        meisa_async_client,
        admin_headers,
        {**common, "name": "off", "enabled": False, "actions": [{"type": "add_tag", "tag": "off"}]},
    )
    await create_rule(
        meisa_async_client,
        admin_headers,
        {"name": "hello", "position": 1, "trigger": {"event": "contact_created"},
         "actions": [{"type": "add_tag", "tag": "new"}]},
    )  # fmt: skip
    response = await meisa_async_client.post(
        "/contacts/upsert/",
        json={"email": "o@x.io", "custom_fields": {"score": 11}},
        headers=key_headers(),
    )
    contact = response.json()
    assert [t["name"] for t in contact["tags"]] == ["new"]
    assert await fired(meisa_async_client, admin_headers, contact["id"]) == [
        ("early", ["applied", "no_op"]),
        ("hello", ["applied"]),
        ("late", ["applied"]),
    ]
    # No change, no firing; contact_created fires only once.
    await meisa_async_client.post(
        "/contacts/upsert/",
        json={"email": "o@x.io", "custom_fields": {"score": 11.0}},
        headers=key_headers(),
    )
    assert len(await fired(meisa_async_client, admin_headers, contact["id"])) == 3


async def test_enroll_action_follows_reenrollment_rules(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    async def send(plan: str) -> dict[str, Any]:
        response = await meisa_async_client.post(
            "/contacts/upsert/",
            json={"external_id": "re", "custom_fields": {"plan": plan}},
            headers=key_headers(),
        )
        result: dict[str, Any] = response.json()
        return result

    contact = await send("free")
    unenroll = await meisa_async_client.post(
        "/sequences/welcome/unenroll/", json={"external_id": "re"}, headers=key_headers()
    )
    assert unenroll.json()["exited"] is True
    await send("trial")
    await send("free")  # signup fires again: welcome was exited and forbids re-enrollment
    got = (
        await meisa_async_client.get(f"/contacts/{contact['id']}/", headers=admin_headers)
    ).json()
    welcome = [e["status"] for e in got["enrollments"] if e["sequence"] == "welcome"]
    assert welcome == ["exited"]
    assert (await fired(meisa_async_client, admin_headers, contact["id"]))[-1] == (
        "signup",
        ["no_op", "no_op"],  # the contact kept free-plan, and welcome is not re-entered
    )


async def test_unenroll_action_and_contact_created_event(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await create_rule(
        meisa_async_client,
        admin_headers,
        {
            "name": "stop welcome on churn",
            "position": 50,
            "trigger": {"field": "plan", "from": {"exists": True}, "to": "churned"},
            "actions": [{"type": "unenroll", "sequence": "welcome"}],
        },
    )

    async def send(plan: str) -> dict[str, Any]:
        response = await meisa_async_client.post(
            "/contacts/upsert/",
            json={"email": "u@x.io", "custom_fields": {"plan": plan}},
            headers=key_headers(),
        )
        result: dict[str, Any] = response.json()
        return result

    contact = await send("free")
    await send("churned")
    got = (
        await meisa_async_client.get(f"/contacts/{contact['id']}/", headers=admin_headers)
    ).json()
    statuses = {e["sequence"]: e["status"] for e in got["enrollments"]}
    assert statuses == {"welcome": "exited", "win-back": "active"}
    assert (await fired(meisa_async_client, admin_headers, contact["id"]))[-1] == (
        "stop welcome on churn",
        ["applied"],
    )
    log = (
        await meisa_async_client.get(f"/contacts/{contact['id']}/activity/", headers=admin_headers)
    ).json()
    assert log[-1]["kind"] == "unenrolled"
    assert log[-1]["data"] == {
        "sequence": "welcome",
        "rule_id": log[-2]["data"]["rule_id"],
        "rule_name": "stop welcome on churn",
    }
