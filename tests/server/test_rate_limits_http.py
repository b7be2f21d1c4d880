"""CONTRACT.md §3 over HTTP, with a fake clock: exact windows, headers, Retry-After."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.server import key_headers, make_meisa_app, server_config
from tests.server.test_wire import assert_error

START = 1_800_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def limited(tmp_path: Path, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    """A server whose fixture key has the default limits: 60 a minute, 1000 an hour... or 100."""
    extra = [
        {
            "key": "meisa_test_small_hourly_budget_key_0000000000000001",
            "scopes": ["contacts:write"],
            "per_minute": 60,
            "per_hour": 100,
        }
    ]
    config = server_config(per_minute=60, per_hour=1000, extra_keys=extra)
    app = make_meisa_app(f"sqlite:///{tmp_path / 'rl.db'}", config=config, clock=clock)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
            yield client
    finally:
        app.state.meisa.close()


HOURLY_KEY = "meisa_test_small_hourly_budget_key_0000000000000001"


async def send(client: httpx.AsyncClient, key: str | None = None, **body: Any) -> httpx.Response:
    return await client.post(
        "/contacts/upsert/",
        json={"email": "rl@example.com", **body},
        headers=key_headers(key) if key else key_headers(),
    )


async def test_sixty_a_minute_then_429_with_the_exact_wait(
    limited: httpx.AsyncClient, clock: FakeClock
) -> None:
    for i in range(60):
        response = await send(limited)
        assert response.status_code in (200, 201)
        assert response.headers["X-RateLimit-Limit"] == "60"
        assert response.headers["X-RateLimit-Remaining"] == str(59 - i)
        assert response.headers["RateLimit-Policy"] == "60;w=60, 1000;w=3600"
        clock.now += 0.5  # 60 requests over 30 s
    refused = await send(limited)
    error = assert_error(refused, 429, "rate_limited")
    assert "retry" in error["message"]
    # The first admitted request (at START) leaves the window at START + 60.
    assert refused.headers["Retry-After"] == "30"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["X-RateLimit-Reset"] == "30"
    # Refused requests do not count: the wait does not grow.
    for _ in range(5):
        assert (await send(limited)).headers["Retry-After"] == "30"
    clock.now = START + 60 - 0.001
    assert (await send(limited)).status_code == 429
    clock.now = START + 60
    admitted = await send(limited)
    assert admitted.status_code == 200
    assert admitted.headers["X-RateLimit-Remaining"] == "0"


async def test_key_errors_carry_the_headers_too(limited: httpx.AsyncClient) -> None:
    response = await limited.post(
        "/contacts/upsert/", json={"email": "broken"}, headers=key_headers()
    )
    assert_error(response, 400, "validation_error")
    assert response.headers["X-RateLimit-Remaining"] == "59"
    read = await limited.get("/contacts/", headers=key_headers())
    assert_error(read, 403, "write_only_key")
    assert read.headers["X-RateLimit-Remaining"] == "58"


async def test_the_hour_window(limited: httpx.AsyncClient, clock: FakeClock) -> None:
    for minute in range(2):
        for _ in range(50):
            assert (await send(limited, HOURLY_KEY)).status_code in (200, 201)
        clock.now = START + 60 * (minute + 1)
    # 100 admitted within the hour; the minute window is fresh but the hour is spent.
    refused = await send(limited, HOURLY_KEY)
    assert_error(refused, 429, "rate_limited")
    assert refused.headers["X-RateLimit-Limit"] == "100"
    assert refused.headers["RateLimit-Policy"] == "60;w=60, 100;w=3600"
    assert refused.headers["Retry-After"] == str(3600 - 120)
    clock.now = START + 3600
    assert (await send(limited, HOURLY_KEY)).status_code == 200


async def test_keys_are_limited_independently(limited: httpx.AsyncClient) -> None:
    for _ in range(60):
        await send(limited)
    assert (await send(limited)).status_code == 429
    assert (await send(limited, HOURLY_KEY)).status_code == 200
