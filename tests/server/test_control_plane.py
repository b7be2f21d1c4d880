"""CONTRACT.md §8 in process: reset, chaos, the request log; off unless asked for."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from meisa_sync.server import create_app
from tests.fixtures.server import SEED_KEY, key_headers, make_meisa_app
from tests.server.test_wire import assert_error


async def upsert(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post("/contacts/upsert/", json={"email": email}, headers=key_headers())


async def control(client: httpx.AsyncClient, path: str, body: Any = None) -> httpx.Response:
    url = f"http://meisa.test/_meisa/{path}/"
    if body is None:
        return await client.get(url)
    return await client.post(url, json=body)


async def count_contacts(client: httpx.AsyncClient, admin: dict[str, str]) -> int:
    response = await client.get("/contacts/", params={"limit": 200}, headers=admin)
    return len(response.json()["results"])


async def test_reset_forgets_contacts_but_keeps_configuration(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await meisa_async_client.post(
        "/contacts/upsert/",
        json={"email": "r@x.io", "custom_fields": {"plan": "free"}, "tag_names": ["x"]},
        headers=key_headers(),
    )
    assert (await control(meisa_async_client, "reset", {})).json() == {"reset": True}
    assert (await control(meisa_async_client, "requests")).json() == []
    assert await count_contacts(meisa_async_client, admin_headers) == 0
    assert (await meisa_async_client.get("/tags/", headers=admin_headers)).json() == []
    enrollments = await meisa_async_client.get(
        "/sequences/welcome/enrollments/", headers=admin_headers
    )
    assert enrollments.json() == []
    rules = (await meisa_async_client.get("/automations/", headers=admin_headers)).json()
    assert len(rules) == 4
    again = await upsert(meisa_async_client, "r@x.io")
    assert again.status_code == 201


async def test_fail_next_fails_without_changing_anything(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    settings = (await control(meisa_async_client, "chaos", {"fail_next": 2, "status": 503})).json()
    assert settings["fail_next"] == 2
    for _ in range(2):
        assert_error(await upsert(meisa_async_client, "f@x.io"), 503, "unavailable")
    # Dashboard reads are never failed, so tests can look at the outcome.
    assert await count_contacts(meisa_async_client, admin_headers) == 0
    assert (await upsert(meisa_async_client, "f@x.io")).status_code == 201
    assert (await control(meisa_async_client, "chaos")).json()["fail_next"] == 0


async def test_error_rate_picks_among_the_statuses(meisa_async_client: httpx.AsyncClient) -> None:
    await control(meisa_async_client, "chaos", {"error_rate": 1, "statuses": [502]})
    response = await upsert(meisa_async_client, "e@x.io")
    assert_error(response, 502, "bad_gateway")
    await control(meisa_async_client, "chaos", {})
    assert (await upsert(meisa_async_client, "e@x.io")).status_code == 201


async def test_dropped_requests_break_and_apply_the_change_half_of_the_time(
    meisa_app: Any, meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    meisa_app.state.meisa.chaos.rng = random.Random(7)
    await control(meisa_async_client, "chaos", {"drop_rate": 1.0, "latency_ms": [0, 1]})
    for i in range(20):
        with pytest.raises(httpx.RemoteProtocolError):
            await upsert(meisa_async_client, f"d{i}@x.io")
    applied = await count_contacts(meisa_async_client, admin_headers)
    assert 0 < applied < 20
    log = (await control(meisa_async_client, "requests")).json()
    dropped = [entry for entry in log if entry["outcome"] == "dropped"]
    assert len(dropped) == 20 and all(entry["status"] is None for entry in dropped)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"error_rate": 2}, "error_rate"),
        ({"drop_rate": -0.1}, "drop_rate"),
        ({"statuses": [404]}, "statuses"),
        ({"status": 200}, "status"),
        ({"fail_next": -1}, "fail_next"),
        ({"latency_ms": [50, 0]}, "latency_ms"),
        ({"explode": True}, "explode"),
    ],
)
async def test_bad_chaos_settings_are_400(
    meisa_async_client: httpx.AsyncClient, settings: dict[str, Any], field: str
) -> None:
    response = await control(meisa_async_client, "chaos", settings)
    assert assert_error(response, 400, "validation_error")["details"][0]["field"] == field


async def test_request_log(meisa_async_client: httpx.AsyncClient) -> None:
    await upsert(meisa_async_client, "log@x.io")
    await meisa_async_client.post("/contacts/upsert/", json={"email": "x"}, headers=key_headers())
    await meisa_async_client.get("/health/")
    log = (await control(meisa_async_client, "requests")).json()
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("POST", "/api/v1/contacts/upsert/", 201),
        ("POST", "/api/v1/contacts/upsert/", 400),
        ("GET", "/api/v1/health/", 200),
    ]
    assert log[0]["body"] == {"email": "log@x.io"}
    assert log[0]["key_prefix"] == SEED_KEY[: len("meisa_test_") + 4]
    assert log[0]["at"].endswith("Z")
    assert log[2]["key_prefix"] is None
    assert SEED_KEY not in str(log)


async def test_request_log_size_is_bounded(tmp_path: Path) -> None:
    app = make_meisa_app(f"sqlite:///{tmp_path / 'log.db'}", request_log_size=2)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
            for i in range(3):
                await client.post(
                    "/contacts/upsert/", json={"email": f"{i}@x.io"}, headers=key_headers()
                )
            log = (await client.get("http://t/_meisa/requests/")).json()
            assert [entry["body"]["email"] for entry in log] == ["1@x.io", "2@x.io"]
    finally:
        app.state.meisa.close()


async def test_control_plane_is_off_unless_asked_for(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path / 'off.db'}", announce=lambda _bootstrap: None)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for path in ("/_meisa/reset/", "/_meisa/chaos/"):
                assert_error(await client.post(path, json={}), 404, "not_found")
            assert_error(await client.get("/_meisa/requests/"), 404, "not_found")
    finally:
        app.state.meisa.close()


async def test_request_log_truncates_large_bodies(meisa_async_client: httpx.AsyncClient) -> None:
    body = {"email": "big@x.io", "custom_fields": {"text": "x" * 9_000, "more": "y" * 9_000}}
    await meisa_async_client.post("/contacts/upsert/", json=body, headers=key_headers())
    [entry] = (await control(meisa_async_client, "requests")).json()
    assert isinstance(entry["body"], str) and entry["body"].endswith("…(truncated)")
    assert len(entry["body"]) < 10_100
