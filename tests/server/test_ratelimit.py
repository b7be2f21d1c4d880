"""The server's sliding-window rate limiter (CONTRACT.md §3), on a fake clock."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meisa_sync.server.ratelimit import RateDecision, SlidingWindowLimiter

DEFAULT_WINDOWS = [(60, 60), (1000, 3600)]


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(clock=clock)


def admit_many(limiter: SlidingWindowLimiter, count: int, key: str = "k") -> list[RateDecision]:
    return [limiter.admit(key, DEFAULT_WINDOWS) for _ in range(count)]


def test_sixty_admitted_then_the_sixty_first_refused(limiter: SlidingWindowLimiter) -> None:
    decisions = admit_many(limiter, 61)
    assert all(decision.admitted for decision in decisions[:60])
    refused = decisions[60]
    assert not refused.admitted
    assert refused.retry_after == 60
    assert (refused.limit, refused.remaining, refused.reset) == (60, 0, 60)


def test_headers_count_down_on_the_window_nearest_exhaustion(
    limiter: SlidingWindowLimiter,
) -> None:
    first, second = admit_many(limiter, 2)
    assert (first.limit, first.remaining, first.reset, first.retry_after) == (60, 59, 0, None)
    assert (second.limit, second.remaining) == (60, 58)
    assert first.policy == "60;w=60, 1000;w=3600"


def test_the_last_admitted_request_shows_when_the_window_frees(
    limiter: SlidingWindowLimiter, clock: FakeClock
) -> None:
    limiter.admit("k", DEFAULT_WINDOWS)
    clock.advance(10.5)
    decisions = admit_many(limiter, 59)
    assert decisions[-1].admitted
    assert (decisions[-1].remaining, decisions[-1].reset) == (0, 50)  # 49.5 s, rounded up


def test_retry_after_is_the_exact_wait_rounded_up(
    limiter: SlidingWindowLimiter, clock: FakeClock
) -> None:
    admit_many(limiter, 60)
    clock.advance(12.25)
    refused = limiter.admit("k", DEFAULT_WINDOWS)
    assert refused.retry_after == 48  # 47.75 s
    clock.advance(47.74)
    assert not limiter.admit("k", DEFAULT_WINDOWS).admitted
    clock.advance(0.01)
    assert limiter.admit("k", DEFAULT_WINDOWS).admitted


def test_retry_after_is_at_least_one_second(
    limiter: SlidingWindowLimiter, clock: FakeClock
) -> None:
    admit_many(limiter, 60)
    clock.advance(59.999)
    refused = limiter.admit("k", DEFAULT_WINDOWS)
    assert not refused.admitted
    assert refused.retry_after == 1


def test_a_request_at_exactly_the_window_edge_is_admitted(
    limiter: SlidingWindowLimiter, clock: FakeClock
) -> None:
    limiter.admit("k", DEFAULT_WINDOWS)
    clock.advance(1)
    admit_many(limiter, 59)
    clock.advance(59)
    decision = limiter.admit("k", DEFAULT_WINDOWS)
    assert decision.admitted, "the first request, 60 s old, left the window"
    assert (decision.remaining, decision.reset) == (0, 1), "the other 59 are still inside"


def test_refused_requests_are_not_counted(limiter: SlidingWindowLimiter, clock: FakeClock) -> None:
    admit_many(limiter, 60)
    for _ in range(30):
        clock.advance(1)
        assert not limiter.admit("k", DEFAULT_WINDOWS).admitted
    clock.advance(30)
    # Exactly the first 60 left the window; the 30 refusals left nothing behind.
    assert all(decision.admitted for decision in admit_many(limiter, 60))
    assert not limiter.admit("k", DEFAULT_WINDOWS).admitted


def test_the_window_slides_request_by_request(
    limiter: SlidingWindowLimiter, clock: FakeClock
) -> None:
    for _ in range(60):
        assert limiter.admit("k", DEFAULT_WINDOWS).admitted
        clock.advance(1)
    # Each second one old request leaves the window and exactly one new one fits.
    for _ in range(120):
        assert limiter.admit("k", DEFAULT_WINDOWS).admitted
        assert not limiter.admit("k", DEFAULT_WINDOWS).admitted
        clock.advance(1)


def test_the_hour_window(limiter: SlidingWindowLimiter, clock: FakeClock) -> None:
    # 60 per minute for 16 minutes and 40 more: 1000 admitted, the hour window is full.
    admitted = 0
    for minute in range(17):
        batch = admit_many(limiter, 60)
        admitted += sum(decision.admitted for decision in batch)
        if minute < 16:
            clock.advance(60)
    assert admitted == 1000
    clock.advance(60)
    refused = limiter.admit("k", DEFAULT_WINDOWS)
    assert not refused.admitted
    assert (refused.limit, refused.remaining) == (1000, 0)
    # The first 60 were admitted at t=0; now is 17 minutes later.
    assert refused.retry_after == refused.reset == 3600 - 17 * 60
    clock.advance(3600 - 17 * 60 - 1)
    assert not limiter.admit("k", DEFAULT_WINDOWS).admitted
    clock.advance(1)
    assert all(decision.admitted for decision in admit_many(limiter, 60))
    assert not limiter.admit("k", DEFAULT_WINDOWS).admitted


def test_headers_switch_to_the_hour_window_when_it_is_nearer_exhaustion(
    limiter: SlidingWindowLimiter, clock: FakeClock
) -> None:
    windows = [(60, 60), (70, 3600)]
    assert all(limiter.admit("k", windows).admitted for _ in range(60))
    clock.advance(60)
    decision = limiter.admit("k", windows)
    assert (decision.limit, decision.remaining, decision.reset) == (70, 9, 0)


def test_keys_are_limited_independently(limiter: SlidingWindowLimiter) -> None:
    admit_many(limiter, 60, key="a")
    assert not limiter.admit("a", DEFAULT_WINDOWS).admitted
    assert limiter.admit("b", DEFAULT_WINDOWS).admitted


def test_a_lowered_limit_applies_at_once(limiter: SlidingWindowLimiter, clock: FakeClock) -> None:
    admit_many(limiter, 30)
    clock.advance(10)
    refused = limiter.admit("k", [(10, 60)])
    assert not refused.admitted
    # 30 inside the window, 10 allowed: the 21st oldest (admitted at t=0) must leave first.
    assert refused.retry_after == 50


def test_reset_forgets_a_key(limiter: SlidingWindowLimiter) -> None:
    admit_many(limiter, 60, key="a")
    admit_many(limiter, 60, key="b")
    limiter.reset("a")
    assert limiter.admit("a", DEFAULT_WINDOWS).admitted
    assert not limiter.admit("b", DEFAULT_WINDOWS).admitted
    limiter.reset()
    assert limiter.admit("b", DEFAULT_WINDOWS).admitted


def test_decision_headers() -> None:
    limiter = SlidingWindowLimiter(clock=FakeClock())
    assert limiter.admit("k", [(1, 60)]).headers() == {
        "X-RateLimit-Limit": "1",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "60",
        "RateLimit-Policy": "1;w=60",
    }
    assert limiter.admit("k", [(1, 60)]).headers() == {
        "X-RateLimit-Limit": "1",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "60",
        "RateLimit-Policy": "1;w=60",
        "Retry-After": "60",
    }


@pytest.mark.parametrize("windows", [[], [(0, 60)], [(60, 0)]])
def test_malformed_windows_are_refused(
    limiter: SlidingWindowLimiter, windows: list[tuple[int, int]]
) -> None:
    with pytest.raises(ValueError, match="window"):
        limiter.admit("k", windows)


def test_threads_never_admit_more_than_the_limit() -> None:
    limiter = SlidingWindowLimiter(clock=FakeClock())
    results: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        mine = [limiter.admit("k", DEFAULT_WINDOWS).admitted for _ in range(50)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 400
    assert sum(results) == 60


def reference_admitted(
    admitted_at: Sequence[int], now: int, windows: Sequence[tuple[int, int]]
) -> list[int]:
    """Per window, how many admitted requests lie in (now - seconds, now]; times in milliseconds."""
    return [sum(1 for t in admitted_at if now - seconds * 1000 < t) for _, seconds in windows]


def check_arrivals(gaps: Sequence[int], windows: Sequence[tuple[int, int]]) -> None:
    """Send requests ``gaps`` milliseconds apart: no window span ever holds more than its limit,
    every refusal happened because a window was full, and Retry-After is the exact wait rounded up.
    """
    clock = FakeClock(0.0)
    limiter = SlidingWindowLimiter(clock=clock)
    admitted_at: list[int] = []
    now = 0
    for gap in gaps:
        now += gap
        clock.now = now / 1000
        decision = limiter.admit("k", windows)
        counts = reference_admitted(admitted_at, now, windows)
        full = [count >= limit for count, (limit, _) in zip(counts, windows, strict=True)]
        assert decision.admitted is not any(full)
        if decision.admitted:
            admitted_at.append(now)
            continue
        # The earliest moment every full window has room again.
        ready = max(
            admitted_at[-limit] + seconds * 1000
            for (limit, seconds), is_full in zip(windows, full, strict=True)
            if is_full
        )
        assert decision.retry_after == max(1, -(-(ready - now) // 1000))
    for t in admitted_at:
        for limit, seconds in windows:
            in_span = sum(1 for u in admitted_at if t <= u < t + seconds * 1000)
            assert in_span <= limit


@settings(deadline=None, max_examples=200)
@given(
    gaps=st.lists(
        # Whole seconds and multiples of the windows make arrivals land exactly on window edges.
        st.sampled_from([0, 1000, 5000, 10_000, 20_000])
        | st.integers(min_value=0, max_value=12_000),
        min_size=1,
        max_size=40,
    )
)
def test_any_arrival_sequence_is_limited_exactly(gaps: list[int]) -> None:
    check_arrivals(gaps, [(3, 10), (5, 30)])


@settings(deadline=None, max_examples=30)
@given(
    # Dense enough (about two per second) to fill the minute window, and long enough to fill the
    # hour window too.
    gaps=st.lists(
        st.sampled_from([0, 1000]) | st.integers(min_value=0, max_value=1_000),
        min_size=100,
        max_size=250,
    )
)
def test_the_default_limits_hold_for_any_arrival_sequence(gaps: list[int]) -> None:
    """The contract's 60 per minute and 1000 per hour, with the hour window made reachable."""
    check_arrivals(gaps, [(60, 60), (100, 3600)])
