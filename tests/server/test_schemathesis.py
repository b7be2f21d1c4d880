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
    positive_data_acceptance,
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
    loaded = schemathesis.openapi.from_asgi(OPENAPI_PATH, meisa_server)
    # The test sends the credentials; generated ones would only collide with them (400
    # ambiguous_credentials) or be refused (401) before the operation itself ran.
    loaded.config.generation.update(with_security_parameters=False)
    return loaded


schema = schemathesis.pytest.from_fixture("meisa_schema")

# No 5xx, no status the document does not list, and bodies as documented.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


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
        # What an integration calls: its documented bodies are exact enough that every body they
        # admit is accepted (only 404/409, which depend on the data already there, may answer).
        case.call_and_validate(
            headers={"X-API-Key": API_KEY}, checks=[*CHECKS, positive_data_acceptance]
        )
    else:
        case.call_and_validate(
            headers={"Authorization": f"Bearer {dashboard_token}"}, checks=CHECKS
        )


class Tour:
    """Sends hand-written valid requests through schemathesis, so the success responses that
    random data rarely reaches (an upsert needs a valid e-mail, a contact id must exist) are
    checked against the document too."""

    def __init__(self, loaded: Any, token: str) -> None:
        self.schema = loaded
        self.key = {"X-API-Key": API_KEY}
        self.token = {"Authorization": f"Bearer {token}"}

    def call(
        self,
        method: str,
        path: str,
        expected: int,
        *,
        token: bool = False,
        body: Any = None,
        path_parameters: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
    ) -> Any:
        operation = self.schema[f"/api/v1{path}"][method]
        extra = {} if body is None else {"body": body}
        case = operation.Case(path_parameters=path_parameters, query=query, **extra)
        response = case.call_and_validate(headers=self.token if token else self.key, checks=CHECKS)
        assert response.status_code == expected, response.text
        return response.json() if response.content else None


def test_the_success_responses_match_the_document(meisa_schema: Any, dashboard_token: str) -> None:
    tour = Tour(meisa_schema, dashboard_token)
    email = "ada@example.com"
    created = tour.call(
        "POST",
        "/contacts/upsert/",
        201,
        body={
            "email": email,
            "external_id": 42,
            "first_name": "Ada",
            "custom_fields": {"plan": "free", "signup_source": "website"},
            "tag_names": ["beta"],
        },
    )
    contact = {"contact_id": created["id"]}
    tour.call(
        "POST",
        "/contacts/upsert/",
        200,
        body={"email": email, "last_name": None, "custom_fields": {"plan": "pro", "mrr": 99}},
    )
    tour.call(
        "POST", "/contacts/tags/", 200, body={"email": email, "add": ["vip"], "remove": ["beta"]}
    )
    tour.call("GET", "/contacts/", 200, token=True, query={"email": email, "limit": 1})
    tour.call("GET", "/contacts/{contact_id}/", 200, token=True, path_parameters=contact)
    tour.call("GET", "/contacts/{contact_id}/activity/", 200, token=True, path_parameters=contact)

    tag = tour.call("POST", "/tags/", 201, body={"name": "newsletter"})
    tour.call("POST", "/tags/", 200, body={"name": "Newsletter"})
    tour.call("GET", "/tags/", 200, token=True)
    tour.call("DELETE", "/tags/{tag_id}/", 204, token=True, path_parameters={"tag_id": tag["id"]})

    sequence = {"slug": "onboarding"}
    tour.call(
        "POST",
        "/sequences/",
        201,
        token=True,
        body={"slug": "onboarding", "name": "Onboarding", "allow_reenrollment": True},
    )
    tour.call("GET", "/sequences/", 200, token=True)
    enroll = "/sequences/{slug}/enroll/"
    tour.call("POST", enroll, 201, body={"external_id": "42"}, path_parameters=sequence)
    tour.call("POST", enroll, 200, body={"email": email}, path_parameters=sequence)
    tour.call(
        "POST", "/sequences/{slug}/unenroll/", 200, body={"email": email}, path_parameters=sequence
    )
    tour.call("GET", "/sequences/{slug}/enrollments/", 200, token=True, path_parameters=sequence)

    rule = tour.call(
        "POST",
        "/automations/",
        201,
        token=True,
        body={
            "name": "big spender",
            "position": 50,
            "trigger": {"field": "mrr", "to": {"gte": 500}},
            "actions": [
                {"type": "add_tag", "tag": "vip"},
                {"type": "enroll", "sequence": "onboarding"},
            ],
        },
    )
    automation = {"automation_id": rule["id"]}
    tour.call("GET", "/automations/", 200, token=True)
    tour.call("GET", "/automations/{automation_id}/", 200, token=True, path_parameters=automation)
    tour.call(
        "PATCH",
        "/automations/{automation_id}/",
        200,
        token=True,
        body={"enabled": False},
        path_parameters=automation,
    )
    tour.call(
        "DELETE", "/automations/{automation_id}/", 204, token=True, path_parameters=automation
    )

    key = tour.call(
        "POST",
        "/api-keys/",
        201,
        token=True,
        body={"name": "ci", "scopes": ["contacts:write"], "per_minute": 10, "mode": "test"},
    )
    tour.call("GET", "/api-keys/", 200, token=True)
    tour.call(
        "DELETE", "/api-keys/{key_id}/", 204, token=True, path_parameters={"key_id": key["id"]}
    )

    tour.call("POST", "/contacts/delete/", 200, body={"email": email})
    tour.call("POST", "/contacts/delete/", 404, body={"email": email})
    tour.call("POST", "/auth/token/", 200, body={"username": USERNAME, "password": PASSWORD})
    tour.call("GET", "/health/", 200)
