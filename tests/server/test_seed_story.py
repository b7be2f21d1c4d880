"""The seed's story on the server with the four automations of CONTRACT.md §6's table.

Signup (plan free), upgrade to pro, churn: after each step the tags, the enrollments and the
activity are exactly what the seed documentation says.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.fixtures.server import key_headers


async def step(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any], status: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    response = await client.post("/contacts/upsert/", json=body, headers=key_headers())
    assert response.status_code == status, response.text
    contact_id = response.json()["id"]
    contact = (await client.get(f"/contacts/{contact_id}/", headers=admin)).json()
    activity = (await client.get(f"/contacts/{contact_id}/activity/", headers=admin)).json()
    return contact, activity


def tags(contact: dict[str, Any]) -> list[str]:
    return [tag["name"] for tag in contact["tags"]]


def enrollments(contact: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["sequence"], e["status"]) for e in contact["enrollments"]]


def summary(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Each entry as a readable tuple: the kind and what it names."""
    rows: list[tuple[Any, ...]] = []
    for entry in entries:
        kind, data = entry["kind"], entry["data"]
        if kind == "automation":
            actions = [
                (a["type"], a.get("tag") or a.get("sequence"), a["result"]) for a in data["actions"]
            ]
            rows.append(
                (kind, data["rule_name"], data["trigger"]["from"], data["trigger"]["to"], actions)
            )
        elif kind in {"tag_added", "tag_removed"}:
            rows.append((kind, data["tag"], data.get("rule_name")))
        elif kind in {"enrolled", "unenrolled"}:
            rows.append((kind, data["sequence"], data.get("rule_name")))
        else:
            rows.append((kind, data["changes"]))
    return rows


async def test_signup_upgrade_churn(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    signup: dict[str, Any] = {
        "email": "jane@example.com",
        "external_id": "usr_123",
        "first_name": "Jane",
        "custom_fields": {
            "plan": "free",
            "signup_source": "website",
            "signup_date": "2024-01-15T10:30:00Z",
        },
    }
    contact, log = await step(meisa_async_client, admin_headers, signup, 201)
    assert tags(contact) == ["free-plan"]
    assert enrollments(contact) == [("welcome", "active")]
    assert summary(log) == [
        ("created", {name: {"from": None, "to": v} for name, v in signup["custom_fields"].items()}),
        ("automation", "signup", None, "free", [
            ("add_tag", "free-plan", "applied"), ("enroll", "welcome", "applied"),
        ]),
        ("tag_added", "free-plan", "signup"),
        ("enrolled", "welcome", "signup"),
    ]  # fmt: skip

    upgrade = {
        "email": "jane@example.com",
        "custom_fields": {
            "plan": "pro",
            "billing_cycle": "annual",
            "mrr": 99,
            "upgraded_at": "2024-02-01T09:00:00Z",
        },
    }
    contact, log = await step(meisa_async_client, admin_headers, upgrade, 200)
    # "Remove free-plan, Add pro-plan, Add paying-customer", and welcome-pro per the table.
    assert tags(contact) == ["paying-customer", "pro-plan"]
    assert enrollments(contact) == [("welcome", "active"), ("welcome-pro", "active")]
    assert summary(log)[4:] == [
        ("updated", {
            "plan": {"from": "free", "to": "pro"},
            "billing_cycle": {"from": None, "to": "annual"},
            "mrr": {"from": None, "to": 99},
            "upgraded_at": {"from": None, "to": "2024-02-01T09:00:00Z"},
        }),
        ("automation", "to pro", "free", "pro", [
            ("add_tag", "pro-plan", "applied"), ("remove_tag", "free-plan", "applied"),
        ]),
        ("tag_added", "pro-plan", "to pro"),
        ("tag_removed", "free-plan", "to pro"),
        ("automation", "free to paid", "free", "pro", [
            ("add_tag", "paying-customer", "applied"), ("enroll", "welcome-pro", "applied"),
        ]),
        ("tag_added", "paying-customer", "free to paid"),
        ("enrolled", "welcome-pro", "free to paid"),
    ]  # fmt: skip

    churn = {
        "email": "jane@example.com",
        "custom_fields": {
            "plan": "churned",
            "previous_plan": "pro",
            "churned_at": "2024-06-01T12:00:00Z",
            "churn_reason": "too_expensive",
        },
    }
    contact, log = await step(meisa_async_client, admin_headers, churn, 200)
    # "Remove paying-customer, Add churned, Enroll in win-back sequence".
    assert tags(contact) == ["churned", "pro-plan"]
    assert enrollments(contact) == [
        ("welcome", "active"), ("welcome-pro", "active"), ("win-back", "active"),
    ]  # fmt: skip
    assert summary(log)[11:] == [
        ("updated", {
            "plan": {"from": "pro", "to": "churned"},
            "previous_plan": {"from": None, "to": "pro"},
            "churned_at": {"from": None, "to": "2024-06-01T12:00:00Z"},
            "churn_reason": {"from": None, "to": "too_expensive"},
        }),
        ("automation", "churn", "pro", "churned", [
            ("add_tag", "churned", "applied"),
            ("remove_tag", "paying-customer", "applied"),
            ("enroll", "win-back", "applied"),
        ]),
        ("tag_added", "churned", "churn"),
        ("tag_removed", "paying-customer", "churn"),
        ("enrolled", "win-back", "churn"),
    ]  # fmt: skip
    assert contact["custom_fields"]["plan"] == "churned"
    assert contact["custom_fields"]["mrr"] == 99

    # Re-sending the current state changes nothing and fires nothing.
    contact, again = await step(meisa_async_client, admin_headers, churn, 200)
    assert again == log
    assert tags(contact) == ["churned", "pro-plan"]


async def test_a_signup_straight_to_pro_is_not_free_to_paid(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = {"email": "direct@example.com", "custom_fields": {"plan": "pro"}}
    contact, log = await step(meisa_async_client, admin_headers, body, 201)
    assert tags(contact) == ["pro-plan"]
    assert enrollments(contact) == []
    fired = [entry["data"]["rule_name"] for entry in log if entry["kind"] == "automation"]
    assert fired == ["to pro"]
    [to_pro] = [entry for entry in log if entry["kind"] == "automation"]
    assert to_pro["data"]["actions"][1] == {
        "type": "remove_tag", "tag": "free-plan", "result": "no_op",
    }  # fmt: skip
