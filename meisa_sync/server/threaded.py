"""Serving the reference server from a background thread: for tests, the demo and notebooks.

::

    app = create_app("sqlite:///meisa.db", control_plane=True)
    with serve_in_thread(app) as root_url:      # http://127.0.0.1:<free port>
        client = MeisaClient(api_key=..., base_url=f"{root_url}/api/v1")

With ``ssl_certfile`` (and ``ssl_keyfile`` when the key is a file of its own) it serves HTTPS, as
Meisa does: the root URL is then ``https://``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from meisa_sync.server.control import DropFilter

__all__ = ["serve_in_thread"]


@contextmanager
def serve_in_thread(
    app: Any,
    *,
    host: str = "127.0.0.1",
    timeout: float = 15.0,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of ``host``; yield the root URL; stop on exit.

    The caller keeps ownership of ``app`` (close its database with ``app.state.meisa.close()``).
    ``ssl_certfile``/``ssl_keyfile`` are PEM files, as uvicorn takes them.
    """
    if ssl_keyfile is not None and ssl_certfile is None:
        raise ValueError("ssl_keyfile needs ssl_certfile: the certificate the key belongs to")
    import uvicorn

    # Connections the control plane drops on purpose are not errors worth a traceback.
    logging.getLogger("uvicorn.error").addFilter(DropFilter())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="on",
        ws="none",
        http="h11",
        loop="asyncio",
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the reference server did not start")
            time.sleep(0.01)
        yield f"{'https' if ssl_certfile else 'http'}://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
