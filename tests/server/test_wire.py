"""CONTRACT.md §1: paths, bodies, the error shape, the OpenAPI document, health."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text

from tests.fixtures.server import key_headers


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    assert "Traceback" not in response.text
    return error


async def test_health_is_open(meisa_async_client: httpx.AsyncClient) -> None:
    response = await meisa_async_client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_paths_with_and_without_trailing_slash_never_redirect(
    meisa_async_client: httpx.AsyncClient,
) -> None:
    body = {"email": "slash@example.com"}
    with_slash = await meisa_async_client.post(
        "/contacts/upsert/", json=body, headers=key_headers()
    )
    without = await meisa_async_client.post("/contacts/upsert", json=body, headers=key_headers())
    assert (with_slash.status_code, without.status_code) == (201, 200)
    assert with_slash.json()["id"] == without.json()["id"]
    assert (await meisa_async_client.get("/health")).status_code == 200


async def test_body_over_one_mebibyte_is_413(meisa_async_client: httpx.AsyncClient) -> None:
    big = {"email": "big@example.com", "custom_fields": {"blob": "x" * (1024 * 1024)}}
    response = await meisa_async_client.post("/contacts/upsert/", json=big, headers=key_headers())
    assert_error(response, 413, "payload_too_large")


async def test_streamed_body_over_the_limit_is_413_without_content_length(
    meisa_async_client: httpx.AsyncClient,
) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 65536

    response = await meisa_async_client.post(
        "/contacts/upsert/", content=chunks(), headers=key_headers()
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")


async def test_non_json_body_is_400_invalid_json(meisa_async_client: httpx.AsyncClient) -> None:
    for content in (b"not json", b"", b'{"email": NaN}', b"\xff\xfe"):
        response = await meisa_async_client.post(
            "/contacts/upsert/", content=content, headers=key_headers()
        )
        assert_error(response, 400, "invalid_json")


async def test_validation_error_names_the_field(meisa_async_client: httpx.AsyncClient) -> None:
    response = await meisa_async_client.post(
        "/contacts/upsert/", json={"email": "not-an-address"}, headers=key_headers()
    )
    error = assert_error(response, 400, "validation_error")
    assert error["message"].startswith("email: not a valid e-mail address")
    assert error["details"][0]["field"] == "email"


async def test_query_parameter_errors_are_400_not_422(
    meisa_async_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for limit in ("0", "201", "many"):
        response = await meisa_async_client.get(
            "/contacts/", params={"limit": limit}, headers=admin_headers
        )
        error = assert_error(response, 400, "validation_error")
        assert error["details"][0]["field"] == "limit"


async def test_unknown_path_and_method_use_the_error_shape(
    meisa_async_client: httpx.AsyncClient,
) -> None:
    assert_error(await meisa_async_client.get("/nowhere/"), 404, "not_found")
    assert_error(await meisa_async_client.delete("/health/"), 405, "method_not_allowed")


async def test_unexpected_failure_is_500_internal_error_without_trace(
    meisa_app: Any, meisa_async_client: httpx.AsyncClient
) -> None:
    with meisa_app.state.meisa.db.engine.begin() as connection:
        connection.execute(text("DROP TABLE meisa_activity"))
    response = await meisa_async_client.post(
        "/contacts/upsert/", json={"email": "boom@example.com"}, headers=key_headers()
    )
    error = assert_error(response, 500, "internal_error")
    assert "meisa_activity" not in error["message"]


async def test_openapi_documents_400_and_never_422(meisa_async_client: httpx.AsyncClient) -> None:
    response = await meisa_async_client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    paths = document["paths"]
    assert "/api/v1/contacts/upsert/" in paths
    assert not any(path.startswith("/_meisa") for path in paths)
    assert not any(not path.endswith("/") for path in paths)
    for path, item in paths.items():
        for method, operation in item.items():
            assert "422" not in operation["responses"], (method, path)
            if path != "/api/v1/health/":
                assert "400" in operation["responses"], (method, path)
    upsert = paths["/api/v1/contacts/upsert/"]["post"]
    assert {"200", "201", "400", "401", "403", "409", "413", "429"} <= set(upsert["responses"])
    schema = upsert["requestBody"]["content"]["application/json"]["schema"]
    assert schema["additionalProperties"] is False
    assert {"email", "external_id", "custom_fields", "tag_names"} <= set(schema["properties"])
