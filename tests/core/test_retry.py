"""RetryPolicy: exponential backoff with full jitter, capped, until a maximum age."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meisa_sync.retry import RetryPolicy

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def test_defaults_are_the_contracts() -> None:
    policy = RetryPolicy()
    assert (policy.base, policy.cap, policy.max_age) == (1.0, 300.0, timedelta(hours=72))


@pytest.mark.parametrize(
    ("attempts", "ceiling"), [(0, 1.0), (1, 2.0), (2, 4.0), (8, 256.0), (9, 300.0), (50, 300.0)]
)
def test_ceiling_doubles_until_the_cap(attempts: int, ceiling: float) -> None:
    assert RetryPolicy().ceiling(attempts) == ceiling


def test_delay_spans_the_whole_range_from_zero() -> None:
    policy = RetryPolicy()
    assert policy.next_delay(3, random=lambda: 0.0) == 0.0
    assert policy.next_delay(3, random=lambda: 0.5) == 4.0
    assert policy.next_delay(3, random=lambda: 0.999999) == pytest.approx(8.0, rel=1e-5)


@given(attempts=st.integers(min_value=0, max_value=10_000), seed=st.integers())
def test_delay_is_within_bounds_for_any_attempt_count(attempts: int, seed: int) -> None:
    policy = RetryPolicy(base=0.5, cap=120.0)
    delay = policy.next_delay(attempts, random=random.Random(seed).random)
    assert 0.0 <= delay <= (120.0 if attempts > 10 else min(120.0, 0.5 * 2**attempts))


def test_jitter_is_full_not_equal() -> None:
    # Full jitter spreads retries over [0, ceiling]: the mean is half the ceiling, and small
    # delays are as likely as large ones (equal jitter would never go below half).
    rng = random.Random(1)
    delays = [RetryPolicy().next_delay(10, random=rng.random) for _ in range(4000)]
    assert min(delays) < 15.0
    assert max(delays) > 285.0
    assert 140.0 < sum(delays) / len(delays) < 160.0


def test_default_random_source_is_used() -> None:
    delays = {RetryPolicy().next_delay(5) for _ in range(20)}
    assert len(delays) > 1
    assert all(0.0 <= delay <= 32.0 for delay in delays)


def test_expired_after_max_age() -> None:
    policy = RetryPolicy(max_age=timedelta(hours=72))
    created = NOW - timedelta(hours=72)
    assert policy.expired(created, NOW)
    assert not policy.expired(created + timedelta(seconds=1), NOW)


def test_negative_attempts_are_refused() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy().next_delay(-1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base": 0.0}, "base"),
        ({"base": 10.0, "cap": 5.0}, "cap"),
        ({"max_age": timedelta(0)}, "max_age"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
