"""Per-key sliding-window rate limits of the reference server (CONTRACT.md §3).

A request is admitted iff, for every window ``(limit, seconds)`` of its key, fewer than ``limit``
requests of that key were admitted in the preceding ``seconds``. Refused requests are not counted,
so a client sending as fast as it can gets exactly ``limit`` admitted in any ``seconds`` span.

The limiter keeps, per key and window length, the times of the admitted requests still inside the
window: at most ``limit`` of them, so memory is bounded by the limits. It lives in the server
process: one process serves one limiter (several worker processes would each admit the full rate).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["RateDecision", "SlidingWindowLimiter", "policy_header"]

# Clock readings are floats: sums like `t + 60 - now` carry rounding noise far below a nanosecond,
# which must not turn an exact 60 s wait into a 61 s Retry-After.
_EPSILON = 1e-9


@dataclass(frozen=True)
class RateDecision:
    """The limiter's answer for one request, with what the response headers say.

    ``limit``, ``remaining`` and ``reset`` describe the window nearest exhaustion; ``reset`` is the
    whole seconds until that window admits again (0 when it already does). ``retry_after`` is the
    whole seconds (≥ 1) before a refused request would be admitted, ``None`` when admitted.
    """

    admitted: bool
    limit: int
    remaining: int
    reset: int
    retry_after: int | None
    policy: str

    def headers(self) -> dict[str, str]:
        """The ``X-RateLimit-*`` and ``RateLimit-Policy`` headers; ``Retry-After`` if refused."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
            "RateLimit-Policy": self.policy,
        }
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers


def policy_header(windows: Sequence[tuple[int, int]]) -> str:
    """The ``RateLimit-Policy`` value, e.g. ``"60;w=60, 1000;w=3600"``."""
    return ", ".join(f"{limit};w={seconds}" for limit, seconds in windows)


@dataclass(frozen=True)
class _WindowState:
    limit: int
    seconds: int
    remaining: int
    wait: float  # seconds until this window admits a request; 0 when it does now


class SlidingWindowLimiter:
    """Exact sliding-window limiter over any number of windows per key; thread-safe.

    ``clock`` returns seconds (monotonic by default); tests pass a fake one.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._admitted: dict[tuple[str, int], deque[float]] = {}

    def admit(self, key_id: str, windows: Sequence[tuple[int, int]]) -> RateDecision:
        """Admit or refuse one request of ``key_id`` under ``windows`` of ``(limit, seconds)``."""
        _check_windows(windows)
        with self._lock:
            now = self._clock()
            queues = [self._queue(key_id, seconds, now) for _, seconds in windows]
            admitted = all(
                len(queue) < limit for queue, (limit, _) in zip(queues, windows, strict=True)
            )
            if admitted:
                # Windows of equal length share a queue: record the request once per queue.
                for queue in {id(queue): queue for queue in queues}.values():
                    queue.append(now)
            states = [
                _state(queue, limit, seconds, now)
                for queue, (limit, seconds) in zip(queues, windows, strict=True)
            ]
        # Nearest exhaustion: fewest remaining; among exhausted windows, the one that frees last.
        nearest = min(states, key=lambda state: (state.remaining, -state.wait))
        retry_after = None if admitted else max(1, _whole_seconds(max(s.wait for s in states)))
        return RateDecision(
            admitted=admitted,
            limit=nearest.limit,
            remaining=nearest.remaining,
            reset=_whole_seconds(nearest.wait),
            retry_after=retry_after,
            policy=policy_header(windows),
        )

    def reset(self, key_id: str | None = None) -> None:
        """Forget the admitted requests of ``key_id``, or of every key."""
        with self._lock:
            if key_id is None:
                self._admitted.clear()
            else:
                for window in [window for window in self._admitted if window[0] == key_id]:
                    del self._admitted[window]

    def _queue(self, key_id: str, seconds: int, now: float) -> deque[float]:
        queue = self._admitted.setdefault((key_id, seconds), deque())
        # A request admitted at t counts while t + seconds > now.
        while queue and queue[0] + seconds <= now + _EPSILON:
            queue.popleft()
        return queue


def _state(queue: deque[float], limit: int, seconds: int, now: float) -> _WindowState:
    remaining = max(0, limit - len(queue))
    if remaining:
        return _WindowState(limit, seconds, remaining, 0.0)
    # The window admits again once fewer than `limit` remain in it: when the request at index
    # len - limit leaves (index 0 unless the key's limit was lowered since they were admitted).
    leaving = queue[len(queue) - limit]
    return _WindowState(limit, seconds, 0, leaving + seconds - now)


def _whole_seconds(wait: float) -> int:
    return math.ceil(wait - _EPSILON) if wait > _EPSILON else 0


def _check_windows(windows: Sequence[tuple[int, int]]) -> None:
    if not windows:
        raise ValueError("a rate limit needs at least one window")
    for limit, seconds in windows:
        if limit < 1 or seconds < 1:
            raise ValueError(
                f"a window needs a limit and a length of at least 1, got {limit};w={seconds}"
            )
