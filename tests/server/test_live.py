"""The server over a real socket: uvicorn in a thread (``live_meisa``) and ``meisa-sync serve``."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.fixtures.server import LiveMeisa
from tests.server.test_config import CONTRACT_EXAMPLE


def test_the_story_over_a_socket(live_meisa: LiveMeisa) -> None:
    headers = {"X-API-Key": live_meisa.api_key}
    with httpx.Client(base_url=live_meisa.base_url, headers=headers, timeout=10) as client:
        for plan in ("free", "pro", "churned"):
            response = client.post(
                "/contacts/upsert", json={"email": "live@x.io", "custom_fields": {"plan": plan}}
            )
            assert response.status_code in (200, 201)
            assert int(response.headers["X-RateLimit-Remaining"]) > 0
    contact = live_meisa.contact(email="live@x.io")
    assert [t["name"] for t in contact["tags"]] == ["churned", "pro-plan"]
    assert [e["sequence"] for e in contact["enrollments"]] == ["welcome", "welcome-pro", "win-back"]
    assert [e["kind"] for e in contact["activity"]].count("automation") == 4
    assert live_meisa.contact(email="nobody@x.io") is None


def test_control_plane_over_a_socket(live_meisa: LiveMeisa) -> None:
    headers = {"X-API-Key": live_meisa.api_key}
    live_meisa.control.chaos(fail_next=1, status=500)
    with httpx.Client(base_url=live_meisa.base_url, headers=headers, timeout=10) as client:
        assert client.post("/contacts/upsert/", json={"email": "c@x.io"}).status_code == 500
        live_meisa.control.chaos(drop_rate=1.0)
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/contacts/upsert/", json={"email": "c@x.io"})
        live_meisa.control.chaos_off()
        assert client.post("/contacts/upsert/", json={"email": "c@x.io"}).status_code in (200, 201)
    outcomes = [entry["outcome"] for entry in live_meisa.control.requests()]
    assert outcomes == ["failed", "dropped", "answered"]
    live_meisa.control.reset()
    assert live_meisa.control.requests() == []
    assert live_meisa.contact(email="c@x.io") is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def meisa_sync_serve(
    *arguments: str, health: str, verify: ssl.SSLContext | bool = True
) -> Iterator[list[str]]:
    """Run ``meisa-sync serve ARGUMENTS`` until ``health`` answers 200; yield a list that holds
    the command's output once it has been stopped."""
    command = [sys.executable, "-c", "from meisa_sync.cli import main; main()", "serve"]
    process = subprocess.Popen(
        [*command, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(health, verify=verify, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield output
    finally:
        process.terminate()
        output.append(process.communicate(timeout=30)[0].decode())


def test_meisa_sync_serve(tmp_path: Path) -> None:
    config = tmp_path / "meisa-server.toml"
    config.write_text(CONTRACT_EXAMPLE)
    port = _free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    with meisa_sync_serve(
        *("--port", str(port), "--database-url", f"sqlite:///{tmp_path / 'serve.db'}"),
        *("--config", str(config), "--control-plane", "--request-log-size", "5"),
        health=f"{base}/health/",
    ) as output:
        response = httpx.post(
            f"{base}/contacts/upsert/",
            json={"email": "cli@x.io", "custom_fields": {"plan": "pro"}},
            headers={"X-API-Key": "meisa_test_local_development_key_0000000001"},
        )
        assert response.status_code == 201
        assert [t["name"] for t in response.json()["tags"]] == ["pro-plan"]
        log = httpx.get(f"http://127.0.0.1:{port}/_meisa/requests/").json()
        assert log[-1]["path"] == "/api/v1/contacts/upsert/"
    assert f"http://127.0.0.1:{port}/api/v1/" in output[0]
    assert "Traceback" not in output[0]
