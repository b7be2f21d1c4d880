"""When to try a failed request again (CONTRACT.md §10.7).

5xx answers, timeouts and broken connections back off exponentially with *full jitter* (AWS's
"Exponential Backoff And Jitter"): the delay is uniform in ``[0, min(cap, base * 2**attempts)]``,
which spreads the retries of many workers instead of synchronising them. After ``max_age`` since the
oldest record of a change was created, the change is given up (dead, kept for an admin to retry).
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = ["RetryPolicy"]

# 2**63 seconds is already beyond any sensible cap; clamping the exponent keeps the float finite.
_MAX_EXPONENT = 63


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, until a maximum age.

    ``base`` and ``cap`` are seconds; the defaults are the contract's (1 s, 5 min, 72 h).
    """

    base: float = 1.0
    cap: float = 300.0
    max_age: timedelta = field(default_factory=lambda: timedelta(hours=72))

    def __post_init__(self) -> None:
        if not self.base > 0:
            raise ValueError(f"base: must be positive, got {self.base}")
        if not self.cap >= self.base:
            raise ValueError(f"cap: must be at least base ({self.base}), got {self.cap}")
        if self.max_age <= timedelta(0):
            raise ValueError(f"max_age: must be positive, got {self.max_age}")

    def ceiling(self, attempts: int) -> float:
        """The largest delay after ``attempts`` failures: ``min(cap, base * 2**attempts)``."""
        if attempts < 0:
            raise ValueError(f"attempts: must not be negative, got {attempts}")
        return min(self.cap, self.base * 2.0 ** min(attempts, _MAX_EXPONENT))

    def next_delay(self, attempts: int, *, random: Callable[[], float] = _random.random) -> float:
        """Seconds to wait before the next attempt, uniform in ``[0, ceiling(attempts)]``.

        ``random`` returns a float in ``[0, 1)``; tests pass a fixed one.
        """
        return random() * self.ceiling(attempts)

    def expired(self, first_created_at: datetime, now: datetime) -> bool:
        """Whether a change first recorded at ``first_created_at`` has been retried long enough."""
        return now - first_created_at >= self.max_age
