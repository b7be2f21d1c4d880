"""The demo's Meisa: the reference server with the seed's automations, on a free local port.

Its API key allows a million requests a minute, so the demo does not wait: a real Meisa key allows
60 a minute and 1,000 an hour, and the worker paces itself to whatever the key allows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from meisa_sync.server import create_app
from meisa_sync.server.credentials import ALL_SCOPES
from meisa_sync.server.seed import seed_config
from meisa_sync.server.threaded import serve_in_thread

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
    app = create_app(f"sqlite:///{database}", config=demo_config(), control_plane=True)
    try:
        with serve_in_thread(app) as root_url:
            yield root_url
    finally:
        app.state.meisa.close()
