"""schemathesis over the reference server's whole OpenAPI document, in process.

Every documented operation gets generated requests, valid and invalid, sent with credentials that
may do everything (an API key with every scope and limits it never reaches, or a dashboard token
where a key is not accepted). Whatever it sends, the server must answer without a 5xx, only with a
status the document lists for the operation, and with a body that matches the documented schema.
Generation is derandomized and bounded so the run is the same, and short, every time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from meisa_sync.server import create_app
from meisa_sync.server.credentials import ALL_SCOPES
from meisa_sync.server.seed import seed_config

API_KEY = "meisa_test_schemathesis_key_000000000000000000001"
USERNAME, PASSWORD = "fuzzer", "fuzzer-password"
OPENAPI_PATH = "/api/v1/openapi.json"

# The operations an API key may call (CONTRACT.md §4-5, "key:SCOPE"); every other one is for a
# dashboard token, and a key there would only ever meet 403 write_only_key.
KEY_OPERATIONS = {
    ("POST", "/api/v1/contacts/upsert/"),
    ("POST", "/api/v1/contacts/tags/"),
    ("POST", "/api/v1/contacts/delete/"),
    ("POST", "/api/v1/tags/"),
    ("POST", "/api/v1/sequences/{slug}/enroll/"),
    ("POST", "/api/v1/sequences/{slug}/unenroll/"),
}


@pytest.fixture(scope="module")
def meisa_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The seed's server with an all-powerful key and a dashboard user, on a fresh SQLite file."""
    path: Path = tmp_path_factory.mktemp("schemathesis") / "meisa.db"
    app = create_app(
        f"sqlite:///{path}",
        config=seed_config(
            api_keys=[
                {
                    "key": API_KEY,
                    "scopes": list(ALL_SCOPES),
                    "per_minute": 1_000_000,
                    "per_hour": 1_000_000,
                }
            ],
            users=[{"username": USERNAME, "password": PASSWORD}],
            jwt_secret="schemathesis",
        ),
    )
    try:
        yield app
    finally:
        app.state.meisa.close()


async def log_in(app: Any) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meisa") as client:
        response = await client.post(
            "/api/v1/auth/token/", json={"username": USERNAME, "password": PASSWORD}
        )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture(scope="module")
def dashboard_token(meisa_server: Any) -> str:
    return asyncio.run(log_in(meisa_server))


@pytest.fixture(scope="module")
def meisa_schema(meisa_server: Any) -> Any:
    return schemathesis.openapi.from_asgi(OPENAPI_PATH, meisa_server)


schema = schemathesis.pytest.from_fixture("meisa_schema")


@pytest.mark.slow  # about 15 s: two dozen operations, ten requests or so each
@schema.parametrize()
@settings(
    max_examples=10,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_server_keeps_its_documented_promises(case: Any, dashboard_token: str) -> None:
    operation = (case.method.upper(), case.path)
    if operation in KEY_OPERATIONS:
        credentials = {"X-API-Key": API_KEY}
    else:
        credentials = {"Authorization": f"Bearer {dashboard_token}"}
    case.call_and_validate(
        headers=credentials,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
