"""CONTRACT.md §1's Idempotency-Key: replay, conflict, scope, expiry."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.fixtures.server import (
    SEED_KEY,
    key_headers,
    make_meisa_app,
    server_config,
)
from tests.server.test_wire import assert_error

OTHER_KEY = "meisa_test_another_key_for_idempotency_000000000001"


async def post(
    client: httpx.AsyncClient, body: dict[str, object], idempotency_key: str, key: str = SEED_KEY
) -> httpx.Response:
    return await client.post(
        "/contacts/upsert/",
        json=body,
        headers={**key_headers(key), "Idempotency-Key": idempotency_key},
    )


async def test_replay_returns_the_first_answer(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    body: dict[str, object] = {"email": "i@x.io", "custom_fields": {"plan": "free"}}
    first = await post(meisa_async_client, body, "42-abc")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    # Same body, other spacing and key order: the same request.
    replay = await meisa_async_client.post(
        "/contacts/upsert/",
        content=b'{"custom_fields": {"plan": "free"},   "email": "i@x.io"}',
        headers={**key_headers(), "Idempotency-Key": "42-abc"},
    )
    assert replay.status_code == 201
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    log = (
        await meisa_async_client.get(
            f"/contacts/{first.json()['id']}/activity/", headers=admin_headers
        )
    ).json()
    assert [e["kind"] for e in log].count("created") == 1


async def test_same_key_other_body_is_409(meisa_async_client: httpx.AsyncClient) -> None:
    await post(meisa_async_client, {"email": "c@x.io"}, "k1")
    conflict = await post(meisa_async_client, {"email": "other@x.io"}, "k1")
    assert_error(conflict, 409, "idempotency_conflict")
    other_endpoint = await meisa_async_client.post(
        "/tags/", json={"email": "c@x.io"}, headers={**key_headers(), "Idempotency-Key": "k1"}
    )
    assert_error(other_endpoint, 409, "idempotency_conflict")


async def test_errors_are_replayed_too(meisa_async_client: httpx.AsyncClient) -> None:
    first = await post(meisa_async_client, {"email": "nope"}, "bad-1")
    assert_error(first, 400, "validation_error")
    replay = await post(meisa_async_client, {"email": "nope"}, "bad-1")
    assert replay.json() == first.json() and replay.headers["Idempotent-Replayed"] == "true"


async def test_idempotency_key_is_at_most_255_chars(meisa_async_client: httpx.AsyncClient) -> None:
    response = await post(meisa_async_client, {"email": "l@x.io"}, "x" * 256)
    error = assert_error(response, 400, "validation_error")
    assert error["details"][0]["field"] == "Idempotency-Key"
    assert (await post(meisa_async_client, {"email": "l@x.io"}, "x" * 255)).status_code == 201


async def test_keys_are_scoped_per_api_key_and_expire_after_24_hours(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    extra = [{"key": OTHER_KEY, "scopes": ["contacts:write"]}]
    app = make_meisa_app(
        f"sqlite:///{tmp_path / 'idem.db'}",
        config=server_config(extra_keys=extra),
        clock=lambda: now[0],
    )
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
            first = await post(client, {"email": "s@x.io"}, "shared")
            assert first.status_code == 201
            other = await post(client, {"email": "s@x.io", "first_name": "S"}, "shared", OTHER_KEY)
            assert other.status_code == 200 and "Idempotent-Replayed" not in other.headers
            now[0] += 24 * 3600 - 1
            replay = await post(client, {"email": "s@x.io"}, "shared")
            assert replay.headers.get("Idempotent-Replayed") == "true"
            assert replay.status_code == 201
            now[0] += 1
            fresh = await post(client, {"email": "s@x.io"}, "shared")
            assert fresh.status_code == 200 and "Idempotent-Replayed" not in fresh.headers
    finally:
        app.state.meisa.close()
