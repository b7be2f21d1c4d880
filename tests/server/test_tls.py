"""The reference server over HTTPS, as Meisa serves: ``serve_in_thread`` and ``meisa-sync serve``.

Certificates come from ``trustme``: a throwaway CA that only the test's clients trust.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from click.testing import CliRunner

from meisa_sync import MeisaClient
from meisa_sync.cli import main
from meisa_sync.server.threaded import serve_in_thread
from tests.fixtures.server import SEED_KEY, make_meisa_app
from tests.server.test_live import _free_port, meisa_sync_serve


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pem_files(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    """(certificate chain, private key) for 127.0.0.1, as two PEM files."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    return chain, key


@pytest.fixture
def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    app = make_meisa_app(f"sqlite:///{tmp_path / 'tls.db'}")
    yield app
    app.state.meisa.close()


def test_the_client_syncs_over_https(
    app: Any, pem_files: tuple[Path, Path], trusting: ssl.SSLContext
) -> None:
    chain, key = pem_files
    with serve_in_thread(app, ssl_certfile=str(chain), ssl_keyfile=str(key)) as root_url:
        assert root_url.startswith("https://127.0.0.1:")
        with (
            httpx.Client(verify=trusting) as http,
            MeisaClient(SEED_KEY, base_url=f"{root_url}/api/v1", http_client=http) as client,
        ):
            response = client.upsert({"email": "tls@x.io", "custom_fields": {"plan": "pro"}})
        assert response.status_code == 201
        # The certificate is really checked: a client that does not trust the CA is refused.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{root_url}/api/v1/health/", timeout=5)


def test_a_key_needs_its_certificate(app: Any, pem_files: tuple[Path, Path]) -> None:
    with (
        pytest.raises(ValueError, match="ssl_keyfile needs ssl_certfile"),
        serve_in_thread(app, ssl_keyfile=str(pem_files[1])),
    ):
        pass  # pragma: no cover - never entered
    result = CliRunner().invoke(main, ["serve", "--ssl-keyfile", str(pem_files[1])])
    assert result.exit_code == 2
    assert "--ssl-keyfile needs --ssl-certfile" in result.output


def test_meisa_sync_serve_over_https(
    tmp_path: Path, pem_files: tuple[Path, Path], trusting: ssl.SSLContext
) -> None:
    chain, key = pem_files
    port = _free_port()
    with meisa_sync_serve(
        *("--port", str(port), "--database-url", f"sqlite:///{tmp_path / 'serve.db'}"),
        *("--ssl-certfile", str(chain), "--ssl-keyfile", str(key)),
        health=f"https://127.0.0.1:{port}/api/v1/health/",
        verify=trusting,
    ) as output:
        pass
    assert f"https://127.0.0.1:{port}/api/v1/" in output[0]
    assert "Traceback" not in output[0]
