"""What one running server holds: its database, limiter, clock, secrets and control-plane state.

``create_app`` builds one :class:`ServerContext` and stores it on ``app.state.meisa``; handlers
reach it through :func:`get_context`. Nothing here is global, so several servers live in one process
(tests).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from starlette.requests import HTTPConnection

from meisa_sync.server.chaos import Chaos
from meisa_sync.server.db import Database
from meisa_sync.server.ratelimit import SlidingWindowLimiter

__all__ = ["RequestLog", "ServerContext", "format_time", "get_context"]


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z``; microseconds only when there are any."""
    value = value.astimezone(timezone.utc)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


class RequestLog:
    """The last N API requests, oldest first (thread-safe, bounded)."""

    def __init__(self, size: int) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass
class ServerContext:
    db: Database
    jwt_secret: str
    control_plane: bool = False
    clock: Callable[[], float] = time.time
    limiter: SlidingWindowLimiter = field(default_factory=SlidingWindowLimiter)
    request_log: RequestLog = field(default_factory=lambda: RequestLog(1000))
    chaos: Chaos = field(default_factory=Chaos)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=timezone.utc)

    def close(self) -> None:
        """Release the database connections (idempotent)."""
        self.db.close()


def get_context(connection: HTTPConnection) -> ServerContext:
    context = connection.app.state.meisa
    assert isinstance(context, ServerContext)
    return context
