"""The demo's Meisa: the reference server with the seed's automations, on a free local port.

Its API key allows a million requests a minute, so the demo does not wait: a real Meisa key allows
60 a minute and 1,000 an hour, and the worker paces itself to whatever the key allows.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from meisa_sync.server import create_app
from meisa_sync.server.control import DropFilter
from meisa_sync.server.credentials import ALL_SCOPES
from meisa_sync.server.seed import seed_config

__all__ = ["DEMO_KEY", "DEMO_PASSWORD", "DEMO_PER_MINUTE", "DEMO_USERNAME", "running_server"]

DEMO_KEY = "meisa_test_demo_key_with_high_limits_000000000001"
DEMO_PER_MINUTE = 1_000_000
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"


def demo_config() -> dict[str, Any]:
    """The seed's sequences and four automations, one high-limit key, one dashboard user."""
    key = {
        "key": DEMO_KEY,
        "name": "demo (high limits)",
        "scopes": list(ALL_SCOPES),
        "per_minute": DEMO_PER_MINUTE,
        "per_hour": DEMO_PER_MINUTE * 60,
    }
    return seed_config(
        api_keys=[key],
        users=[{"username": DEMO_USERNAME, "password": DEMO_PASSWORD}],
        jwt_secret="meisa-sync-demo-secret",
    )


@contextmanager
def running_server(database: Path) -> Iterator[str]:
    """Serve a reference server on ``database`` from a background thread; yield its root URL."""
    import uvicorn

    app = create_app(f"sqlite:///{database}", config=demo_config(), control_plane=True)
    logging.getLogger("uvicorn.error").addFilter(DropFilter())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # port 0: any free port
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="none", http="h11")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the demo's Meisa server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        app.state.meisa.close()
