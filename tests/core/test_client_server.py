"""The clients against the real reference server: in process for ``AsyncMeisaClient``
(``httpx.ASGITransport``), over a socket (uvicorn) for ``MeisaClient``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from meisa_sync.client import AsyncMeisaClient, MeisaClient
from meisa_sync.exceptions import (
    AuthenticationFailed,
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    TransportError,
)
from meisa_sync.pacing import Pacer
from meisa_sync.ratelimit import RateLimitWindow
from tests.fixtures.server import SEED_KEY, LiveMeisa, make_meisa_app, server_config

IN_PROCESS = "http://meisa.test"
NARROW_KEY = "meisa_test_contacts_write_only_key_000000000001"
UNKNOWN_KEY = "meisa_live_this_key_was_never_issued_0000000000001"


def client_for(app: Any, key: str = SEED_KEY) -> AsyncMeisaClient:
    return AsyncMeisaClient(
        key, base_url=f"{IN_PROCESS}/api/v1", transport=httpx.ASGITransport(app=app)
    )


@pytest.fixture
async def meisa(meisa_app: Any) -> AsyncIterator[AsyncMeisaClient]:
    async with client_for(meisa_app) as client:
        yield client


@pytest.fixture
def limited_app(tmp_path: Path) -> Iterator[Any]:
    """A server whose fixture key admits 3 requests a minute, plus a key with one scope."""
    narrow = {
        "key": NARROW_KEY,
        "name": "contacts only",
        "scopes": ["contacts:write"],
        "per_minute": 1000,
        "per_hour": 1000,
    }
    config = server_config(per_minute=3, per_hour=100, extra_keys=[narrow])
    app = make_meisa_app(f"sqlite:///{tmp_path / 'limited.db'}", config=config)
    yield app
    app.state.meisa.close()


async def chaos(app: Any, **settings: Any) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport) as control:
        response = await control.post(f"{IN_PROCESS}/_meisa/chaos/", json=settings)
        response.raise_for_status()


async def test_upsert_creates_then_updates(meisa: AsyncMeisaClient) -> None:
    created = await meisa.upsert(
        {"email": "Ada@Example.com ", "external_id": 7, "custom_fields": {"plan": "free"}}
    )
    assert created.created
    assert created.data["email"] == "ada@example.com"
    assert created.data["external_id"] == "7"
    assert [tag["name"] for tag in created.data["tags"]] == ["free-plan"]
    updated = await meisa.upsert({"external_id": "7", "custom_fields": {"plan": "pro"}})
    assert not updated.created
    assert updated.contact_id == created.contact_id
    assert [tag["name"] for tag in updated.data["tags"]] == ["paying-customer", "pro-plan"]


async def test_rate_limit_headers_are_read(meisa: AsyncMeisaClient) -> None:
    response = await meisa.upsert({"email": "a@example.com"})
    info = response.rate_limit
    assert info.limit is not None
    assert info.remaining == info.limit - 1
    assert info.reset == 0
    assert RateLimitWindow(1_000_000, 60.0) in info.policy


async def test_idempotency_key_replays_and_conflicts(meisa: AsyncMeisaClient) -> None:
    first = await meisa.upsert({"email": "a@example.com"}, idempotency_key="17-abc")
    replay = await meisa.upsert({"email": "a@example.com"}, idempotency_key="17-abc")
    assert (replay.status_code, replay.data) == (first.status_code, first.data)
    with pytest.raises(Conflict) as caught:
        await meisa.upsert({"email": "b@example.com"}, idempotency_key="17-abc")
    assert caught.value.code == "idempotency_conflict"


async def test_validation_error_names_the_field(meisa: AsyncMeisaClient) -> None:
    with pytest.raises(BadRequest) as caught:
        await meisa.upsert({"email": "not-an-address"})
    assert caught.value.code == "validation_error"
    assert caught.value.message.startswith("email")
    assert caught.value.details[0]["field"] == "email"
    with pytest.raises(BadRequest, match="custom_field"):
        await meisa.upsert({"email": "a@example.com", "custom_field": {"plan": "x"}})


async def test_identifier_conflict(meisa: AsyncMeisaClient) -> None:
    await meisa.upsert({"email": "a@example.com", "external_id": "1"})
    await meisa.upsert({"email": "b@example.com", "external_id": "2"})
    with pytest.raises(Conflict) as caught:
        await meisa.upsert({"email": "b@example.com", "external_id": "1"})
    assert caught.value.code == "identifier_conflict"


async def test_body_over_a_mebibyte(meisa: AsyncMeisaClient) -> None:
    fields = {f"field_{n}": "x" * 10_000 for n in range(120)}
    with pytest.raises(PayloadTooLarge) as caught:
        await meisa.upsert({"email": "a@example.com", "custom_fields": fields})
    assert caught.value.code == "payload_too_large"


async def test_tags(meisa: AsyncMeisaClient) -> None:
    await meisa.upsert({"email": "a@example.com", "tag_names": ["old"]})
    response = await meisa.tag({"email": "a@example.com"}, add=["vip", "beta"], remove=["old"])
    assert [tag["name"] for tag in response.data["tags"]] == ["beta", "vip"]
    with pytest.raises(NotFound):
        await meisa.tag({"email": "nobody@example.com"}, add=["vip"])


async def test_enroll_and_unenroll(meisa: AsyncMeisaClient) -> None:
    who = {"external_id": "42"}
    await meisa.upsert(who)
    first = await meisa.enroll("welcome-pro", who)
    again = await meisa.enroll("welcome-pro", who)
    assert (first.created, again.created) == (True, False)
    assert first.data["enrollment"]["status"] == "active"
    left = await meisa.unenroll("welcome-pro", who)
    assert left.data["enrollment"]["status"] == "exited"
    with pytest.raises(NotFound):
        await meisa.enroll("no-such-sequence", who)


async def test_delete(meisa: AsyncMeisaClient) -> None:
    created = await meisa.upsert({"email": "a@example.com"})
    deleted = await meisa.delete({"email": "a@example.com"})
    assert deleted.data == {"deleted": True, "id": created.contact_id}
    with pytest.raises(NotFound):
        await meisa.delete({"email": "a@example.com"})


async def test_unknown_key_is_refused_without_echoing_it(meisa_app: Any) -> None:
    async with client_for(meisa_app, UNKNOWN_KEY) as client:
        with pytest.raises(AuthenticationFailed) as caught:
            await client.upsert({"email": "a@example.com"})
    assert caught.value.code == "invalid_api_key"
    assert UNKNOWN_KEY not in str(caught.value)


async def test_missing_scope_names_it(limited_app: Any) -> None:
    async with client_for(limited_app, NARROW_KEY) as client:
        await client.upsert({"email": "a@example.com"})
        with pytest.raises(PermissionDenied) as caught:
            await client.delete({"email": "a@example.com"})
    assert caught.value.code == "insufficient_scope"
    assert "contacts:delete" in caught.value.message


async def test_rate_limited_with_retry_after(limited_app: Any) -> None:
    async with client_for(limited_app) as client:
        answers = [await client.upsert({"email": f"u{n}@example.com"}) for n in range(3)]
        with pytest.raises(RateLimited) as caught:
            await client.upsert({"email": "u3@example.com"})
    assert [answer.rate_limit.remaining for answer in answers] == [2, 1, 0]
    assert answers[-1].rate_limit.reset is not None and answers[-1].rate_limit.reset >= 59
    assert 59 <= caught.value.retry_after <= 61
    assert caught.value.headers["x-ratelimit-remaining"] == "0"
    assert caught.value.headers["ratelimit-policy"] == "3;w=60, 100;w=3600"


async def test_a_pacer_fed_the_answers_holds_before_the_limit(limited_app: Any) -> None:
    pacer = Pacer()
    async with client_for(limited_app) as client:
        sent = 0
        while pacer.try_acquire() == 0.0:
            response = await client.upsert({"email": f"u{sent}@example.com"})
            pacer.observe(response.rate_limit)
            sent += 1
    assert sent == 3
    assert pacer.windows == (RateLimitWindow(3, 60.0), RateLimitWindow(100, 3600.0))
    assert pacer.wait_time() > 55


async def test_chaos_failures_and_drops(meisa_app: Any, meisa: AsyncMeisaClient) -> None:
    await chaos(meisa_app, fail_next=1, status=503)
    with pytest.raises(ServerError) as caught:
        await meisa.upsert({"email": "a@example.com"})
    assert caught.value.status_code == 503
    await chaos(meisa_app, drop_rate=1.0)
    with pytest.raises(TransportError, match=r"RemoteProtocolError|ConnectionDropped"):
        await meisa.upsert({"email": "a@example.com"})
    await chaos(meisa_app)
    assert (await meisa.upsert({"email": "a@example.com"})).status_code in {200, 201}


def contacts(live: LiveMeisa, email: str) -> list[dict[str, Any]]:
    found = httpx.get(
        f"{live.base_url}/contacts/", params={"email": email}, headers=live.admin_headers()
    )
    found.raise_for_status()
    results: list[dict[str, Any]] = found.json()["results"]
    return results


def test_sync_client_over_a_socket(live_meisa: LiveMeisa) -> None:
    with MeisaClient(live_meisa.api_key, base_url=live_meisa.base_url) as client:
        created = client.upsert({"email": "ada@example.com", "custom_fields": {"plan": "free"}})
        assert created.created
        tagged = client.tag({"email": "ada@example.com"}, add=["vip"])
        assert [tag["name"] for tag in tagged.data["tags"]] == ["free-plan", "vip"]
        assert client.enroll("welcome-pro", {"email": "ada@example.com"}).created
        assert client.unenroll("welcome-pro", {"email": "ada@example.com"}).status_code == 200
        assert len(contacts(live_meisa, "ada@example.com")) == 1
        live_meisa.control.chaos(fail_next=1, status=502)
        with pytest.raises(ServerError):
            client.upsert({"email": "ada@example.com"})
        live_meisa.control.chaos(drop_rate=1.0)
        with pytest.raises(TransportError):
            client.upsert({"email": "ada@example.com"})
        live_meisa.control.chaos_off()
        assert client.delete({"email": "ada@example.com"}).data["deleted"] is True
    assert contacts(live_meisa, "ada@example.com") == []


def test_sync_client_keeps_connections_alive(live_meisa: LiveMeisa) -> None:
    ports: set[int] = set()

    def remember_port(response: httpx.Response) -> None:
        stream = response.extensions["network_stream"]
        ports.add(stream.get_extra_info("client_addr")[1])

    with httpx.Client(event_hooks={"response": [remember_port]}) as http_client:
        client = MeisaClient(
            live_meisa.api_key, base_url=live_meisa.base_url, http_client=http_client
        )
        for n in range(20):
            client.upsert({"email": f"u{n}@example.com"})
        client.close()
    assert len(ports) == 1
