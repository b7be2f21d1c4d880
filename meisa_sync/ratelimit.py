"""Rate-limit information as Meisa reports it in response headers (CONTRACT.md §3).

Every key-authenticated response carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` for the window nearest exhaustion, and ``RateLimit-Policy`` listing every
window (``60;w=60, 1000;w=3600``); a 429 adds ``Retry-After``. The headers come from a remote
server, so a missing or malformed value is read as unknown (``None``) rather than raising.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = ["RateLimitInfo", "RateLimitWindow"]


@dataclass(frozen=True)
class RateLimitWindow:
    """At most ``limit`` requests in any span of ``seconds``."""

    limit: int
    seconds: float

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"limit: must be at least 1, got {self.limit}")
        if not self.seconds > 0:
            raise ValueError(f"seconds: must be positive, got {self.seconds}")


@dataclass(frozen=True)
class RateLimitInfo:
    """What one response said about the key's limits; ``None`` where it said nothing usable.

    ``limit``, ``remaining`` and ``reset`` (seconds until the window admits again, 0 when it already
    does) describe the window nearest exhaustion; ``policy`` lists every window of the key;
    ``retry_after`` (seconds) is set on a 429.
    """

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None
    retry_after: float | None = None
    policy: tuple[RateLimitWindow, ...] = ()

    @classmethod
    def from_headers(
        cls, headers: Mapping[str, str], *, now: datetime | None = None
    ) -> RateLimitInfo:
        """Parse the rate-limit headers of a response (names are matched case-insensitively).

        ``now`` is only used to turn an HTTP-date ``Retry-After`` into seconds.
        """
        lowered = {name.lower(): value for name, value in headers.items()}
        return cls(
            limit=_non_negative_int(lowered.get("x-ratelimit-limit")),
            remaining=_non_negative_int(lowered.get("x-ratelimit-remaining")),
            reset=_seconds(lowered.get("x-ratelimit-reset")),
            retry_after=parse_retry_after(lowered.get("retry-after"), now=now),
            policy=parse_policy(lowered.get("ratelimit-policy")),
        )

    @property
    def window(self) -> RateLimitWindow | None:
        """The policy window that ``limit``/``remaining``/``reset`` describe, if known."""
        if self.limit is None:
            return None
        matching = [window for window in self.policy if window.limit == self.limit]
        # Two windows with the same limit: the shorter one is the one nearer exhaustion.
        return min(matching, key=lambda window: window.seconds, default=None)


def parse_policy(value: str | None) -> tuple[RateLimitWindow, ...]:
    """``"60;w=60, 1000;w=3600"`` → the windows, shortest first; malformed items are skipped."""
    if not value:
        return ()
    windows = []
    for item in value.split(","):
        limit_text, *parameters = (part.strip() for part in item.split(";"))
        limit = _non_negative_int(limit_text)
        seconds = None
        for parameter in parameters:
            name, _, raw = parameter.partition("=")
            if name.strip().lower() == "w":
                seconds = _seconds(raw.strip().strip('"'))
        if limit and seconds:
            windows.append(RateLimitWindow(limit, seconds))
    return tuple(sorted(set(windows), key=lambda window: (window.seconds, window.limit)))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now or datetime.now(timezone.utc)
    return max(0.0, (when - current).total_seconds())


def _non_negative_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None
