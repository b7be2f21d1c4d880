"""CONTRACT.md §2 and §7: API keys, scopes, tokens, logins, and nothing secret stored in clear."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import MetaData, select

from meisa_sync.server.credentials import issue_token
from tests.fixtures.server import (
    ADMIN_PASSWORD,
    JWT_SECRET,
    SEED_KEY,
    key_headers,
    make_meisa_app,
    server_config,
    token_headers,
)
from tests.server.test_wire import assert_error

READ_ENDPOINTS = [
    ("GET", "/contacts/"),
    ("GET", "/tags/"),
    ("GET", "/sequences/"),
    ("GET", "/automations/"),
    ("GET", "/api-keys/"),
    ("GET", "/sequences/welcome/enrollments/"),
]


async def create_key(
    client: httpx.AsyncClient, admin: dict[str, str], **spec: Any
) -> dict[str, Any]:
    response = await client.post("/api-keys/", json={"name": "k", **spec}, headers=admin)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_no_credentials_is_401(meisa_async_client: httpx.AsyncClient) -> None:
    response = await meisa_async_client.post("/contacts/upsert/", json={"email": "a@b.co"})
    assert_error(response, 401, "missing_credentials")
    assert_error(await meisa_async_client.get("/contacts/"), 401, "missing_credentials")


async def test_unknown_and_malformed_keys_are_401(meisa_async_client: httpx.AsyncClient) -> None:
    for key in ("meisa_live_" + "x" * 40, "nope", SEED_KEY + "x"):
        response = await meisa_async_client.post(
            "/contacts/upsert/", json={"email": "a@b.co"}, headers={"X-API-Key": key}
        )
        assert_error(response, 401, "invalid_api_key")


async def test_both_credentials_is_400_ambiguous(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await meisa_async_client.post(
        "/contacts/upsert/", json={"email": "a@b.co"}, headers={**key_headers(), **admin_headers}
    )
    assert_error(response, 400, "ambiguous_credentials")


@pytest.mark.parametrize(("method", "path"), READ_ENDPOINTS)
async def test_an_api_key_on_a_read_endpoint_is_403_write_only_key(
    meisa_async_client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await meisa_async_client.request(method, path, headers=key_headers())
    assert_error(response, 403, "write_only_key")


async def test_missing_scope_is_403_naming_it(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    limited = await create_key(meisa_async_client, admin_headers)  # default: contacts:write only
    assert limited["scopes"] == ["contacts:write"]
    headers = {"X-API-Key": limited["key"]}
    upsert = await meisa_async_client.post(
        "/contacts/upsert/", json={"email": "scoped@example.com"}, headers=headers
    )
    assert upsert.status_code == 201
    calls = [
        ("/contacts/delete/", {"email": "scoped@example.com"}, "contacts:delete"),
        ("/contacts/tags/", {"email": "scoped@example.com", "add": ["x"]}, "tags:write"),
        ("/tags/", {"name": "x"}, "tags:write"),
        ("/sequences/welcome/enroll/", {"email": "scoped@example.com"}, "sequences:write"),
        ("/sequences/welcome/unenroll/", {"email": "scoped@example.com"}, "sequences:write"),
    ]
    for path, body, scope in calls:
        response = await meisa_async_client.post(path, json=body, headers=headers)
        error = assert_error(response, 403, "insufficient_scope")
        assert scope in error["message"]


async def test_revoked_key_is_401(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = await create_key(meisa_async_client, admin_headers, mode="test")
    assert created["key"].startswith("meisa_test_")
    headers = {"X-API-Key": created["key"]}
    ok = await meisa_async_client.post(
        "/contacts/upsert/", json={"email": "r@x.io"}, headers=headers
    )
    assert ok.status_code == 201
    revoke = await meisa_async_client.delete(f"/api-keys/{created['id']}/", headers=admin_headers)
    assert revoke.status_code == 204
    again = await meisa_async_client.post(
        "/contacts/upsert/", json={"email": "r@x.io"}, headers=headers
    )
    assert_error(again, 401, "invalid_api_key")
    listed = await meisa_async_client.get("/api-keys/", headers=admin_headers)
    [entry] = [k for k in listed.json() if k["id"] == created["id"]]
    assert entry["revoked_at"] is not None
    assert "key" not in entry
    assert entry["prefix"] == created["key"][: len("meisa_test_") + 4]
    missing = await meisa_async_client.delete("/api-keys/nope/", headers=admin_headers)
    assert_error(missing, 404, "not_found")


async def test_api_key_creation_validates(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for body, field in [
        ({"name": "k", "scopes": ["contacts:read"]}, "scopes[0]"),
        ({"name": "k", "per_minute": 0}, "per_minute"),
        ({"name": "k", "mode": "prod"}, "mode"),
        ({"name": "k", "colour": "red"}, "colour"),
        ({}, "name"),
    ]:
        response = await meisa_async_client.post("/api-keys/", json=body, headers=admin_headers)
        error = assert_error(response, 400, "validation_error")
        assert error["details"][0]["field"] == field, error


async def test_login(meisa_async_client: httpx.AsyncClient) -> None:
    ok = await meisa_async_client.post(
        "/auth/token/", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert ok.status_code == 200
    body = ok.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert set(claims) == {"sub", "iat", "exp"} and claims["exp"] - claims["iat"] == 3600
    for credentials in (
        {"username": "admin", "password": "wrong"},
        {"username": "x", "password": "y"},
    ):
        response = await meisa_async_client.post("/auth/token/", json=credentials)
        assert_error(response, 401, "invalid_login")
    missing = await meisa_async_client.post("/auth/token/", json={"username": "admin"})
    assert assert_error(missing, 400, "validation_error")["details"][0]["field"] == "password"


async def test_forged_expired_and_malformed_tokens_are_401(
    meisa_app: Any, meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    good = admin_headers["Authorization"].removeprefix("Bearer ")
    subject = jwt.decode(good, options={"verify_signature": False})["sub"]
    now = time.time()
    forged = issue_token(subject, secret="another secret", now=now)
    expired = issue_token(subject, secret=JWT_SECRET, now=now - 7200)
    unknown_user = issue_token("no-such-user", secret=JWT_SECRET, now=now)
    unsigned = {"sub": subject, "iat": int(now), "exp": int(now) + 60}
    none_alg = jwt.encode(unsigned, None, "none")  # type: ignore[arg-type]
    for token in (forged, expired, unknown_user, none_alg, "abc.def.ghi", good[:-4]):
        response = await meisa_async_client.get("/contacts/", headers=token_headers(token))
        assert_error(response, 401, "invalid_token")
    for header in (f"Basic {good}", "Bearer", good):
        response = await meisa_async_client.get("/contacts/", headers={"Authorization": header})
        assert_error(response, 401, "invalid_token")
    assert (await meisa_async_client.get("/contacts/", headers=admin_headers)).status_code == 200


async def test_a_token_expires_by_the_servers_clock(tmp_path: Path) -> None:
    now = [1_000_000.0]
    app = make_meisa_app(f"sqlite:///{tmp_path / 'clock.db'}", clock=lambda: now[0])
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
            login = await client.post(
                "/auth/token/", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
            headers = token_headers(login.json()["access_token"])
            now[0] += 3599
            assert (await client.get("/tags/", headers=headers)).status_code == 200
            now[0] += 1
            assert_error(await client.get("/tags/", headers=headers), 401, "invalid_token")
    finally:
        app.state.meisa.close()


async def test_no_plaintext_key_or_password_in_the_database(
    meisa_app: Any, meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = await create_key(meisa_async_client, admin_headers)
    engine = meisa_app.state.meisa.db.engine
    metadata = MetaData()
    metadata.reflect(engine)
    dump: list[str] = []
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            dump.extend(repr(tuple(row)) for row in connection.execute(select(table)))
    text = "\n".join(dump)
    for secret in (SEED_KEY, created["key"], ADMIN_PASSWORD):
        assert secret not in text
    assert "scrypt$" in text
    assert server_config()["api_keys"][0]["key"] == SEED_KEY


async def test_tokens_are_not_rate_limited(tmp_path: Path) -> None:
    app = make_meisa_app(f"sqlite:///{tmp_path / 'tok.db'}", config=server_config(per_minute=1))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
            login = await client.post(
                "/auth/token/", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
            headers = token_headers(login.json()["access_token"])
            for _ in range(3):
                response = await client.post(
                    "/contacts/upsert/", json={"email": "t@x.io"}, headers=headers
                )
                assert response.status_code in (200, 201)
                assert "x-ratelimit-limit" not in response.headers
    finally:
        app.state.meisa.close()
