"""RateLimitInfo.from_headers: CONTRACT.md §3's headers, and tolerance of anything else."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest

from meisa_sync.ratelimit import RateLimitInfo, RateLimitWindow, parse_policy, parse_retry_after


def test_reads_every_header_case_insensitively() -> None:
    headers = httpx.Headers(
        {
            "x-ratelimit-limit": "60",
            "X-RATELIMIT-REMAINING": "0",
            "X-RateLimit-Reset": "17",
            "Retry-After": "17",
            "RateLimit-Policy": "60;w=60, 1000;w=3600",
        }
    )
    info = RateLimitInfo.from_headers(headers)
    assert info == RateLimitInfo(
        limit=60,
        remaining=0,
        reset=17.0,
        retry_after=17.0,
        policy=(RateLimitWindow(60, 60.0), RateLimitWindow(1000, 3600.0)),
    )
    assert info.window == RateLimitWindow(60, 60.0)


def test_no_headers_means_nothing_known() -> None:
    info = RateLimitInfo.from_headers({})
    assert info == RateLimitInfo()
    assert info.window is None


@pytest.mark.parametrize("value", ["", "abc", "-3", "1e999", "nan"])
def test_malformed_numbers_are_unknown(value: str) -> None:
    info = RateLimitInfo.from_headers(
        {"X-RateLimit-Remaining": value, "X-RateLimit-Reset": value, "Retry-After": value}
    )
    assert (info.remaining, info.reset, info.retry_after) == (None, None, None)


@pytest.mark.parametrize(
    ("value", "windows"),
    [
        ("60;w=60, 1000;w=3600", ((60, 60.0), (1000, 3600.0))),
        ("1000;w=3600,60;w=60", ((60, 60.0), (1000, 3600.0))),
        ('100;w=10;comment="burst"', ((100, 10.0),)),
        ("60;W=60, junk, 5;q=1, ;w=3", ((60, 60.0),)),
        ("0;w=60", ()),
        ("", ()),
    ],
)
def test_policy(value: str, windows: tuple[tuple[int, float], ...]) -> None:
    assert parse_policy(value) == tuple(RateLimitWindow(*w) for w in windows)


def test_retry_after_as_http_date() -> None:
    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("Thu, 26 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 26 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("tomorrow", now=now) is None


def test_window_with_two_equal_limits_is_the_shorter() -> None:
    info = RateLimitInfo(limit=10, policy=(RateLimitWindow(10, 60.0), RateLimitWindow(10, 3600.0)))
    assert info.window == RateLimitWindow(10, 60.0)
