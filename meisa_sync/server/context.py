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
from typing import Any, TypeVar

from starlette.requests import HTTPConnection

from meisa_sync.server.chaos import Chaos
from meisa_sync.server.db import Database
from meisa_sync.server.ratelimit import SlidingWindowLimiter

T = TypeVar("T")
#: How long cached configuration (keys, rules, sequences) may lag a write by another process.
CACHE_TTL = 5.0

__all__ = ["CACHE_TTL", "RequestLog", "ServerContext", "format_time", "get_context"]


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

    _cache: dict[str, tuple[float, Any]] = field(default_factory=dict)
    _generations: dict[str, int] = field(default_factory=dict)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)
    _last_run: dict[str, float] = field(default_factory=dict)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=timezone.utc)

    def cached(self, name: str, load: Callable[[], T], *, ttl: float = CACHE_TTL) -> T:
        """``load()``'s value, kept until :meth:`invalidate` (or ``ttl`` seconds, for changes
        made by another process on the same database). ``None`` is never kept.

        ``name`` is ``group`` or ``group:item``; invalidating a group drops all its items.
        """
        group = name.partition(":")[0]
        with self._cache_lock:
            entry = self._cache.get(name)
            generation = self._generations.get(group, 0)
        if entry is not None and time.monotonic() - entry[0] < ttl:
            return entry[1]  # type: ignore[no-any-return]
        value = load()
        with self._cache_lock:
            # A write that invalidated the group while we loaded wins: do not keep stale data.
            if value is not None and self._generations.get(group, 0) == generation:
                self._cache[name] = (time.monotonic(), value)
        return value

    def due(self, task: str, *, every: float) -> bool:
        """True at most once per ``every`` seconds for ``task``: for occasional housekeeping."""
        now = time.monotonic()
        with self._cache_lock:
            last = self._last_run.get(task)
            if last is not None and now - last < every:
                return False
            self._last_run[task] = now
            return True

    def is_cached(self, name: str, *, ttl: float = CACHE_TTL) -> bool:
        """Whether :meth:`cached` would answer ``name`` without loading."""
        with self._cache_lock:
            entry = self._cache.get(name)
        return entry is not None and time.monotonic() - entry[0] < ttl

    def invalidate(self, *groups: str) -> None:
        with self._cache_lock:
            for group in groups:
                self._generations[group] = self._generations.get(group, 0) + 1
                for name in [n for n in self._cache if n.partition(":")[0] == group]:
                    del self._cache[name]

    def close(self) -> None:
        """Release the database connections (idempotent)."""
        self.db.close()


def get_context(connection: HTTPConnection) -> ServerContext:
    context = connection.app.state.meisa
    assert isinstance(context, ServerContext)
    return context
