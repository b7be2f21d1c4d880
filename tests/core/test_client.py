"""MeisaClient and AsyncMeisaClient against failure shapes: every status and error code of
CONTRACT.md §1, bodies that are not the error shape, timeouts and broken connections.

``httpx.MockTransport`` stands in for answers the reference server does not give on demand; the
happy paths against the real server are in ``test_client_server.py``. Every case runs on both
clients.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from meisa_sync.client import AsyncMeisaClient, MeisaClient, MeisaResponse
from meisa_sync.exceptions import (
    AuthenticationFailed,
    BadRequest,
    ConfigurationError,
    Conflict,
    MeisaAPIError,
    NotFound,
    PayloadError,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    TransportError,
)

KEY = "meisa_live_ab12Cd34eF56gh78Ij90kl12MN34op56"
PREFIX = "meisa_live_ab12…"
BASE = "https://meisa.example/api/v1"
CONTACT = {"id": "0b7c7f5e-6a35-4e7e-9a55-1d8f8c3c5b0e", "email": "ada@example.com"}
RATE_HEADERS = {
    "X-RateLimit-Limit": "60",
    "X-RateLimit-Remaining": "59",
    "X-RateLimit-Reset": "0",
    "RateLimit-Policy": "60;w=60, 1000;w=3600",
}

Handler = Callable[[httpx.Request], httpx.Response]
Behaviour = Callable[[socket.socket], None]


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def call(kind: str, handler: Handler, method: str, *args: Any, **kwargs: Any) -> Any:
    """Run one client method on a fresh client of ``kind`` over ``handler``."""
    transport = httpx.MockTransport(handler)
    if kind == "sync":
        with MeisaClient(KEY, base_url=BASE, transport=transport) as client:
            return getattr(client, method)(*args, **kwargs)

    async def run() -> Any:
        async with AsyncMeisaClient(KEY, base_url=BASE, transport=transport) as client:
            return await getattr(client, method)(*args, **kwargs)

    return asyncio.run(run())


class Recorder:
    """A handler answering one fixed response and keeping the requests it saw."""

    def __init__(
        self, status: int = 200, body: Any = CONTACT, headers: dict[str, str] | None = None
    ):
        self.status = status
        self.body = body
        self.headers = RATE_HEADERS if headers is None else headers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if isinstance(self.body, (bytes, str)):
            return httpx.Response(self.status, content=self.body, headers=self.headers)
        return httpx.Response(self.status, json=self.body, headers=self.headers)

    @property
    def request(self) -> httpx.Request:
        (request,) = self.requests
        return request

    def sent_json(self) -> Any:
        return json.loads(self.request.content)


def error_body(code: str, message: str, details: list[dict[str, str]] | None = None) -> Any:
    return {"error": {"code": code, "message": message, "details": details or []}}


# --- successful calls ------------------------------------------------------------------------


def test_upsert_sends_the_payload_with_key_and_agent(kind: str) -> None:
    recorder = Recorder(201)
    payload = {"email": "ada@example.com", "custom_fields": {"plan": "pro", "mrr": 99.5}}
    response = call(kind, recorder, "upsert", payload, idempotency_key="42-abcdef")
    request = recorder.request
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/contacts/upsert/"
    assert request.headers["X-API-Key"] == KEY
    assert request.headers["Idempotency-Key"] == "42-abcdef"
    assert request.headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"meisa-sync/\S+ httpx/\S+", request.headers["User-Agent"])
    assert recorder.sent_json() == payload
    assert isinstance(response, MeisaResponse)
    assert response.created
    assert response.data == CONTACT
    assert response.contact_id == CONTACT["id"]
    assert response.rate_limit.remaining == 59
    assert response.rate_limit.window is not None
    assert response.rate_limit.window.limit == 60


def test_update_is_not_created_and_no_idempotency_header_by_default(kind: str) -> None:
    recorder = Recorder(200)
    response = call(kind, recorder, "upsert", {"external_id": "7"})
    assert not response.created
    assert "Idempotency-Key" not in recorder.request.headers


def test_tag(kind: str) -> None:
    recorder = Recorder(200)
    call(kind, recorder, "tag", {"email": "ada@example.com"}, add=["vip"], remove=("free-plan",))
    assert str(recorder.request.url) == f"{BASE}/contacts/tags/"
    assert recorder.sent_json() == {
        "email": "ada@example.com",
        "add": ["vip"],
        "remove": ["free-plan"],
    }


@pytest.mark.parametrize("action", ["enroll", "unenroll"])
def test_enrollment(kind: str, action: str) -> None:
    recorder = Recorder(201, {"created": True, "enrollment": {"status": "active"}})
    response = call(kind, recorder, action, "welcome-pro", {"external_id": 7})
    assert str(recorder.request.url) == f"{BASE}/sequences/welcome-pro/{action}/"
    assert recorder.sent_json() == {"external_id": 7}
    assert response.data["created"] is True


def test_sequence_slug_is_quoted_into_one_path_segment(kind: str) -> None:
    recorder = Recorder(404, error_body("not_found", "no such sequence"))
    with pytest.raises(NotFound):
        call(kind, recorder, "enroll", "../contacts", {"email": "a@b.co"})
    assert recorder.request.url.raw_path == b"/api/v1/sequences/..%2Fcontacts/enroll/"


def test_delete(kind: str) -> None:
    recorder = Recorder(200, {"deleted": True, "id": CONTACT["id"]})
    response = call(kind, recorder, "delete", {"email": "ada@example.com", "external_id": "7"})
    assert str(recorder.request.url) == f"{BASE}/contacts/delete/"
    assert recorder.sent_json() == {"email": "ada@example.com", "external_id": "7"}
    assert response.contact_id == CONTACT["id"]


def test_empty_success_body(kind: str) -> None:
    response = call(kind, Recorder(204, b""), "delete", {"email": "a@b.co"})
    assert response.data is None
    assert response.contact_id is None


# --- error statuses --------------------------------------------------------------------------

ERRORS = [
    (400, "validation_error", BadRequest),
    (400, "invalid_json", BadRequest),
    (400, "ambiguous_credentials", BadRequest),
    (401, "missing_credentials", AuthenticationFailed),
    (401, "invalid_api_key", AuthenticationFailed),
    (401, "invalid_token", AuthenticationFailed),
    (401, "invalid_login", AuthenticationFailed),
    (403, "write_only_key", PermissionDenied),
    (403, "insufficient_scope", PermissionDenied),
    (404, "not_found", NotFound),
    (409, "identifier_conflict", Conflict),
    (409, "idempotency_conflict", Conflict),
    (413, "payload_too_large", PayloadTooLarge),
    (500, "internal_error", ServerError),
]


@pytest.mark.parametrize(("status", "code", "error"), ERRORS)
def test_each_error_code_maps_to_its_exception(
    kind: str, status: int, code: str, error: type[MeisaAPIError]
) -> None:
    details = [{"field": "email", "message": "not a valid e-mail address"}]
    recorder = Recorder(status, error_body(code, f"{code} happened", details))
    with pytest.raises(error) as caught:
        call(kind, recorder, "upsert", {"email": "ada@example.com"})
    assert type(caught.value) is error
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert caught.value.message == f"{code} happened"
    assert caught.value.details == details
    assert str(caught.value) == f"{status} {code}: {code} happened"
    assert caught.value.headers["x-ratelimit-remaining"] == "59"


@pytest.mark.parametrize("status", [502, 503, 504, 599])
def test_every_5xx_is_a_server_error(kind: str, status: int) -> None:
    with pytest.raises(ServerError) as caught:
        call(
            kind,
            Recorder(status, error_body("internal_error", "boom")),
            "upsert",
            {"email": "a@b.co"},
        )
    assert caught.value.status_code == status


def test_unexpected_4xx_is_a_plain_api_error(kind: str) -> None:
    with pytest.raises(MeisaAPIError) as caught:
        call(kind, Recorder(418, b"I'm a teapot", {}), "upsert", {"email": "a@b.co"})
    assert type(caught.value) is MeisaAPIError
    assert caught.value.code == "http_418"


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (502, b"<html><body><h1>502 Bad Gateway</h1>\n</body></html>", "http_502", "<html><body>"),
        (500, b"", "internal_error", "Internal Server Error"),
        (413, b"Request Entity Too Large", "payload_too_large", "Request Entity Too Large"),
        (503, b'{"message": "maintenance"}', "http_503", "maintenance"),
        (400, b'{"detail": "bad"}', "http_400", "bad"),
        (400, b'["not", "an", "object"]', "http_400", "Bad Request"),
        (400, b'{"error": "flat string"}', "http_400", "Bad Request"),
        (404, b'{"error": {"code": 7, "message": null, "details": "x"}}', "http_404", "Not Found"),
    ],
)
def test_error_bodies_that_are_not_the_error_shape(
    kind: str, status: int, body: bytes, code: str, message: str
) -> None:
    with pytest.raises(MeisaAPIError) as caught:
        call(
            kind,
            Recorder(status, body, {"Content-Type": "text/html"}),
            "upsert",
            {"email": "a@b.co"},
        )
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert caught.value.message.startswith(message)
    assert caught.value.details == []


def test_long_error_text_is_truncated(kind: str) -> None:
    with pytest.raises(ServerError) as caught:
        call(kind, Recorder(502, b"x" * 100_000, {}), "upsert", {"email": "a@b.co"})
    assert len(str(caught.value)) < 600


def test_rate_limited_carries_retry_after_and_headers(kind: str) -> None:
    headers = {
        **RATE_HEADERS,
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "17",
        "Retry-After": "17",
    }
    recorder = Recorder(429, error_body("rate_limited", "slow down"), headers)
    with pytest.raises(RateLimited) as caught:
        call(kind, recorder, "upsert", {"email": "a@b.co"})
    assert caught.value.retry_after == 17.0
    assert caught.value.code == "rate_limited"
    assert caught.value.headers == {
        "retry-after": "17",
        "x-ratelimit-limit": "60",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "17",
        "ratelimit-policy": "60;w=60, 1000;w=3600",
    }


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [
        ({"X-RateLimit-Reset": "9"}, 9.0),
        ({}, 1.0),
        ({"Retry-After": "0"}, 1.0),
        ({"Retry-After": "x"}, 1.0),
    ],
)
def test_rate_limited_without_a_usable_retry_after(
    kind: str, headers: dict[str, str], retry_after: float
) -> None:
    with pytest.raises(RateLimited) as caught:
        call(kind, Recorder(429, b"Too Many Requests", headers), "upsert", {"email": "a@b.co"})
    assert caught.value.retry_after == retry_after
    assert caught.value.code == "rate_limited"


# --- transport failures ----------------------------------------------------------------------


def raising(error: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectTimeout("timed out"),
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("[Errno 104] Connection reset by peer"),
    ],
)
def test_transport_failures_are_transport_errors(kind: str, error: Exception) -> None:
    with pytest.raises(TransportError) as caught:
        call(kind, raising(error), "upsert", {"email": "a@b.co"})
    message = str(caught.value)
    assert message.startswith(f"POST {BASE}/contacts/upsert/: {type(error).__name__}: ")
    assert caught.value.__cause__ is None


@pytest.mark.parametrize("body", [b"{truncated", b"\xff\xfe"])
def test_a_2xx_that_is_not_json_is_a_broken_response(kind: str, body: bytes) -> None:
    with pytest.raises(TransportError, match="200 answer is not JSON"):
        call(kind, Recorder(200, body), "upsert", {"email": "a@b.co"})


@pytest.fixture
def hanging_server() -> Iterator[tuple[str, Callable[[Behaviour], None]]]:
    """A real socket server whose per-connection behaviour the test sets: hang or hang up."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    behaviour: list[Behaviour] = []
    connections: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connections.append(connection)
            connection.recv(65536)
            behaviour[0](connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/api/v1", behaviour.append
    stop.set()
    thread.join(timeout=5)
    for connection in connections:
        connection.close()
    listener.close()


def close_at_once(connection: socket.socket) -> None:
    connection.close()


def half_response(connection: socket.socket) -> None:
    connection.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"id":')
    connection.close()


def never_answer(connection: socket.socket) -> None:
    pass


@pytest.mark.parametrize("behaviour", [close_at_once, half_response, never_answer])
def test_real_socket_failures(
    kind: str,
    hanging_server: tuple[str, Callable[[Behaviour], None]],
    behaviour: Behaviour,
) -> None:
    base_url, set_behaviour = hanging_server
    set_behaviour(behaviour)
    timeout = httpx.Timeout(0.3, connect=1.0)
    if kind == "sync":
        with (
            MeisaClient(KEY, base_url=base_url, timeout=timeout) as client,
            pytest.raises(TransportError),
        ):
            client.upsert({"email": "a@b.co"})
        return

    async def run() -> None:
        async with AsyncMeisaClient(KEY, base_url=base_url, timeout=timeout) as client:
            with pytest.raises(TransportError):
                await client.upsert({"email": "a@b.co"})

    asyncio.run(run())


# --- the API key stays secret ----------------------------------------------------------------


def test_repr_shows_only_the_key_prefix() -> None:
    with MeisaClient(KEY, base_url=BASE) as client:
        assert repr(client) == f"MeisaClient(base_url='{BASE}', api_key='{PREFIX}')"
        assert client.key_prefix == PREFIX
        assert KEY not in repr(vars(client)["_settings"])


async def test_async_repr_shows_only_the_key_prefix() -> None:
    async with AsyncMeisaClient(KEY, base_url=BASE) as client:
        assert repr(client) == f"AsyncMeisaClient(base_url='{BASE}', api_key='{PREFIX}')"


def test_key_echoed_by_the_server_is_redacted_from_errors(kind: str) -> None:
    body = error_body(
        "invalid_api_key", f"unknown key {KEY}", [{"field": "X-API-Key", "message": KEY}]
    )
    with pytest.raises(AuthenticationFailed) as caught:
        call(kind, Recorder(401, body), "upsert", {"email": "a@b.co"})
    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value.details)
    assert PREFIX in caught.value.message


def test_key_in_a_transport_error_is_redacted(kind: str) -> None:
    with pytest.raises(TransportError) as caught:
        call(kind, raising(httpx.ConnectError(f"refused for {KEY}")), "upsert", {"email": "a@b.co"})
    assert KEY not in str(caught.value)
    assert PREFIX in str(caught.value)


def test_no_log_line_holds_the_key(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    call(kind, Recorder(200), "upsert", {"email": "a@b.co"})
    with pytest.raises(ServerError):
        call(
            kind, Recorder(500, error_body("internal_error", "boom")), "upsert", {"email": "a@b.co"}
        )
    with pytest.raises(TransportError):
        call(kind, raising(httpx.ReadTimeout("slow")), "upsert", {"email": "a@b.co"})
    lines = [record.getMessage() for record in caplog.records]
    assert any(
        "meisa_sync" in record.name and PREFIX in record.getMessage() for record in caplog.records
    )
    assert not [line for line in lines if KEY in line]


def test_key_prefix_of_other_formats() -> None:
    with MeisaClient("sk_abcdefghijklmnop", base_url=BASE) as client:
        assert client.key_prefix == "sk_a…"
    with MeisaClient("meisa_test_Zz99aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", base_url=BASE) as client:
        assert client.key_prefix == "meisa_test_Zz99…"


# --- configuration ---------------------------------------------------------------------------


def test_key_and_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEISA_API_KEY", KEY)
    monkeypatch.setenv("MEISA_BASE_URL", "http://localhost:8000/api/v1/")
    recorder = Recorder()
    with MeisaClient(transport=httpx.MockTransport(recorder)) as client:
        assert client.base_url == "http://localhost:8000/api/v1"
        client.upsert({"email": "a@b.co"})
    assert recorder.request.headers["X-API-Key"] == KEY
    assert str(recorder.request.url) == "http://localhost:8000/api/v1/contacts/upsert/"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEISA_API_KEY", "meisa_live_from_env_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
    monkeypatch.setenv("MEISA_BASE_URL", "http://localhost:8000/api/v1")
    with MeisaClient(KEY, base_url=BASE) as client:
        assert (client.key_prefix, client.base_url) == (PREFIX, BASE)


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEISA_BASE_URL", raising=False)
    with MeisaClient(KEY) as client:
        assert client.base_url == "https://api.meisa.io/api/v1"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    monkeypatch.delenv("MEISA_API_KEY", raising=False)
    if value is not None:
        monkeypatch.setenv("MEISA_API_KEY", value)
    with pytest.raises(ConfigurationError, match="MEISA_API_KEY"):
        MeisaClient()
    with pytest.raises(ConfigurationError, match="MEISA_API_KEY"):
        AsyncMeisaClient()


def test_malformed_key_is_refused_without_showing_it() -> None:
    bad = "meisa_live_abcd efgh ijkl"
    with pytest.raises(ConfigurationError) as caught:
        MeisaClient(bad, base_url=BASE)
    assert bad not in str(caught.value)
    assert "MEISA_API_KEY" in str(caught.value)


@pytest.mark.parametrize("url", ["ftp://meisa.example", "meisa.example/api/v1", "http://"])
def test_bad_base_url_names_the_variable(url: str) -> None:
    with pytest.raises(ConfigurationError, match="MEISA_BASE_URL"):
        MeisaClient(KEY, base_url=url)


def test_default_timeouts() -> None:
    with MeisaClient(KEY, base_url=BASE) as client:
        timeout = client._http.timeout
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (5.0, 30.0, 30.0, 30.0)


def test_a_given_http_client_is_used_and_left_open() -> None:
    recorder = Recorder()
    http_client = httpx.Client(transport=httpx.MockTransport(recorder))
    with MeisaClient(KEY, base_url=BASE, http_client=http_client) as client:
        client.upsert({"email": "a@b.co"})
    assert not http_client.is_closed
    http_client.close()
    assert recorder.request.headers["X-API-Key"] == KEY


async def test_a_given_async_http_client_is_left_open() -> None:
    http_client = httpx.AsyncClient(transport=httpx.MockTransport(Recorder()))
    async with AsyncMeisaClient(KEY, base_url=BASE, http_client=http_client) as client:
        await client.upsert({"email": "a@b.co"})
    assert not http_client.is_closed
    await http_client.aclose()


def test_transport_and_http_client_together_are_refused() -> None:
    with httpx.Client() as http_client, pytest.raises(ValueError, match="transport"):
        MeisaClient(
            KEY, base_url=BASE, http_client=http_client, transport=httpx.MockTransport(Recorder())
        )


# --- bad input is refused before sending -----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "args", "field"),
    [
        ("upsert", ({"email": "a@b.co", "custom_fields": {"x": float("nan")}},), "payload"),
        ("upsert", ({"email": "a@b.co", "custom_fields": {"x": object()}},), "payload"),
        ("delete", ({},), "identifiers"),
        ("delete", ({"email": None},), "identifiers"),
        ("delete", ({"emial": "a@b.co"},), "identifiers.emial"),
        ("delete", ({"email": 3.5},), "identifiers.email"),
        ("delete", ({"external_id": True},), "identifiers.external_id"),
        ("tag", ({"id": "x"},), "identifiers.id"),
        ("enroll", ("welcome", {}), "identifiers"),
    ],
)
def test_bad_input_names_the_field(
    kind: str, method: str, args: tuple[Any, ...], field: str
) -> None:
    recorder = Recorder()
    with pytest.raises(PayloadError) as caught:
        call(kind, recorder, method, *args)
    assert caught.value.field == field
    assert recorder.requests == []


@pytest.mark.parametrize("key", ["", "k" * 256, "naïve", "line\nbreak"])
def test_bad_idempotency_key(kind: str, key: str) -> None:
    with pytest.raises(ValueError, match="idempotency_key"):
        call(kind, Recorder(), "upsert", {"email": "a@b.co"}, idempotency_key=key)


def test_empty_sequence(kind: str) -> None:
    with pytest.raises(ValueError, match="sequence"):
        call(kind, Recorder(), "enroll", "", {"email": "a@b.co"})


# --- one client, many threads ----------------------------------------------------------------


def test_one_client_serves_many_threads() -> None:
    lock = threading.Lock()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        with lock:
            seen.append(body["external_id"])
        return httpx.Response(200, json={"id": body["external_id"]}, headers=RATE_HEADERS)

    results: list[str | None] = []
    with MeisaClient(KEY, base_url=BASE, transport=httpx.MockTransport(handler)) as client:

        def worker(start: int) -> None:
            for n in range(start, start + 50):
                response = client.upsert({"external_id": str(n)})
                with lock:
                    results.append(response.contact_id)

        threads = [threading.Thread(target=worker, args=(i * 50,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(results, key=lambda r: int(r or 0)) == [str(n) for n in range(400)]
    assert sorted(seen, key=int) == [str(n) for n in range(400)]
