"""Pacer: sliding windows on a fake clock, corrections from the server's headers, shared keys.

The simulations run Pacers against the reference server's limiter (CONTRACT.md §3: exact sliding
windows, refused requests not counted, headers for the window nearest exhaustion) in simulated time
with random network latency each way, so hours of traffic take milliseconds.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
import threading
from dataclasses import dataclass, field

import pytest

from meisa_sync.pacing import DEFAULT_WINDOWS, Pacer
from meisa_sync.ratelimit import RateLimitInfo, RateLimitWindow
from meisa_sync.server.ratelimit import SlidingWindowLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_pacer(clock: FakeClock, windows: tuple[tuple[int, float], ...] = ((60, 60.0),)) -> Pacer:
    return Pacer(windows, margin=0.25, clock=clock, sleep=clock.sleep)


def greedy_admissions(windows: tuple[tuple[int, int], ...], duration: float) -> int:
    """What the limits admit in `duration` to a client that sends the instant it may."""
    admitted: list[float] = []
    t = 0.0
    while True:
        for limit, seconds in windows:
            inside = admitted[bisect.bisect_right(admitted, t - seconds) :]
            if len(inside) >= limit:
                t = max(t, inside[len(inside) - limit] + seconds)
        if t >= duration:
            return len(admitted)
        admitted.append(t)


@dataclass
class Sender:
    pacer: Pacer
    concurrency: int
    in_flight: int = 0
    admitted: int = 0
    refused: int = 0
    waiting: bool = False


@dataclass
class Simulation:
    """Discrete-event run of paced senders sharing one key, with random latency each way."""

    windows: tuple[tuple[int, int], ...]
    latency: tuple[float, float] = (0.005, 0.1)
    seed: int = 7
    clock: FakeClock = field(default_factory=FakeClock)
    senders: list[Sender] = field(default_factory=list)

    def add(self, concurrency: int = 4) -> Sender:
        sender = Sender(Pacer(DEFAULT_WINDOWS, clock=self.clock), concurrency)
        self.senders.append(sender)
        return sender

    def run(self, duration: float) -> None:
        rng = random.Random(self.seed)
        limiter = SlidingWindowLimiter(clock=self.clock)
        start = self.clock.now
        order = itertools.count()
        events: list[tuple[float, int, str, int, bool, dict[str, str]]] = []
        for index in range(len(self.senders)):
            heapq.heappush(events, (start, next(order), "ready", index, False, {}))
        while events:
            at, _, kind, index, admitted, headers = heapq.heappop(events)
            if at - start >= duration:
                break
            self.clock.now = at
            sender = self.senders[index]
            if kind == "ready":
                sender.waiting = False
                if sender.in_flight >= sender.concurrency:
                    continue
                wait = sender.pacer.try_acquire()
                if wait > 0:
                    sender.waiting = True
                    heapq.heappush(events, (at + wait, next(order), "ready", index, False, {}))
                    continue
                sender.in_flight += 1
                arrival = at + rng.uniform(*self.latency)
                heapq.heappush(events, (arrival, next(order), "arrive", index, False, {}))
                heapq.heappush(events, (at, next(order), "ready", index, False, {}))
            elif kind == "arrive":
                decision = limiter.admit("key", self.windows)
                ok, answer = decision.admitted, decision.headers()
                back = at + rng.uniform(*self.latency)
                heapq.heappush(events, (back, next(order), "answer", index, ok, answer))
            else:
                sender.in_flight -= 1
                info = RateLimitInfo.from_headers(headers)
                sender.pacer.observe(info)
                if admitted:
                    sender.admitted += 1
                else:
                    sender.refused += 1
                    assert info.retry_after is not None
                    sender.pacer.pause(info.retry_after)
                if not sender.waiting:
                    heapq.heappush(events, (at, next(order), "ready", index, False, {}))


def test_sends_up_to_the_limit_then_waits_for_the_oldest_to_leave(clock: FakeClock) -> None:
    pacer = make_pacer(clock)
    start = clock.now
    for _ in range(60):
        assert pacer.acquire()
    assert clock.slept == []
    assert pacer.wait_time() == pytest.approx(60.25)
    assert pacer.acquire()
    assert clock.now - start == pytest.approx(60.25)


def test_sliding_window_frees_slots_one_by_one(clock: FakeClock) -> None:
    pacer = make_pacer(clock, ((3, 10.0),))
    sent = []
    for _ in range(6):
        pacer.acquire()
        sent.append(clock.now)
        clock.now += 1.0
    base = sent[0]
    assert [t - base for t in sent] == pytest.approx([0, 1, 2, 10.25, 11.25, 12.25])


def test_try_acquire_reports_the_wait_without_taking_a_slot(clock: FakeClock) -> None:
    pacer = make_pacer(clock, ((1, 5.0),))
    assert pacer.try_acquire() == 0.0
    clock.now += 2.0
    assert pacer.try_acquire() == pytest.approx(3.25)
    assert pacer.try_acquire() == pytest.approx(3.25)
    clock.now += 3.25
    assert pacer.try_acquire() == 0.0


def test_every_window_is_respected(clock: FakeClock) -> None:
    pacer = make_pacer(clock, ((5, 1.0), (8, 100.0)))
    times = []
    for _ in range(16):
        pacer.acquire()
        times.append(clock.now)
    for i, t in enumerate(times):
        assert sum(1 for s in times[: i + 1] if s > t - 1.0) <= 5
        assert sum(1 for s in times[: i + 1] if s > t - 100.0) <= 8
    assert times[8] - times[0] == pytest.approx(100.25)


def test_acquire_times_out_without_taking_a_slot(clock: FakeClock) -> None:
    pacer = make_pacer(clock, ((1, 60.0),))
    assert pacer.acquire()
    assert not pacer.acquire(timeout=5.0)
    assert clock.now - 1000.0 == pytest.approx(5.0)
    assert pacer.wait_time() == pytest.approx(55.25)


def test_pause_holds_everyone_and_never_shortens(clock: FakeClock) -> None:
    pacer = make_pacer(clock, ((100, 60.0),))
    pacer.pause(30.0)
    pacer.pause(5.0)
    assert pacer.wait_time() == pytest.approx(30.0)
    assert pacer.acquire()
    assert clock.now - 1000.0 == pytest.approx(30.0)
    assert pacer.wait_time() == 0.0


def test_sleeps_are_short_so_corrections_take_effect(clock: FakeClock) -> None:
    pacer = make_pacer(clock, ((1, 60.0),))
    pacer.acquire()
    pacer.acquire()
    assert max(clock.slept) <= 1.0


def test_retry_after_in_observed_headers_pauses(clock: FakeClock) -> None:
    pacer = make_pacer(clock, ((100, 60.0),))
    pacer.observe(RateLimitInfo(retry_after=7.0))
    assert pacer.wait_time() == pytest.approx(7.0)


def test_server_policy_replaces_the_configured_windows(clock: FakeClock) -> None:
    pacer = make_pacer(clock)
    info = RateLimitInfo.from_headers({"RateLimit-Policy": "2;w=10, 500;w=3600"})
    pacer.observe(info)
    assert pacer.windows == (RateLimitWindow(2, 10.0), RateLimitWindow(500, 3600.0))
    pacer.acquire()
    pacer.acquire()
    assert pacer.wait_time() == pytest.approx(10.25)


def test_policy_can_be_ignored(clock: FakeClock) -> None:
    pacer = Pacer(((60, 60.0),), follow_policy=False, clock=clock, sleep=clock.sleep)
    pacer.observe(RateLimitInfo.from_headers({"RateLimit-Policy": "2;w=10"}))
    assert pacer.windows == (RateLimitWindow(60, 60.0),)


def test_lower_remaining_than_ours_slows_down(clock: FakeClock) -> None:
    pacer = make_pacer(clock, ((10, 60.0),))
    pacer.acquire()
    # The server counted 8 requests of this key: 7 came from elsewhere.
    pacer.observe(RateLimitInfo(limit=10, remaining=2, reset=0))
    assert pacer.try_acquire() == 0.0
    pacer.observe(RateLimitInfo(limit=10, remaining=1, reset=0))
    assert pacer.try_acquire() == 0.0
    pacer.observe(RateLimitInfo(limit=10, remaining=0, reset=55))
    assert pacer.wait_time() > 50


def test_remaining_zero_with_reset_waits_exactly_reset(clock: FakeClock) -> None:
    pacer = make_pacer(clock, ((10, 60.0),))
    pacer.observe(
        RateLimitInfo(limit=10, remaining=0, reset=12, policy=(RateLimitWindow(10, 60.0),))
    )
    assert pacer.wait_time() == pytest.approx(12.0)
    clock.now += 12.0
    assert pacer.try_acquire() == 0.0
    # Only the oldest foreign request is dated by `reset`; the others count as recent.
    assert pacer.wait_time() > 40


def test_own_requests_in_flight_are_not_taken_for_other_senders(clock: FakeClock) -> None:
    pacer = make_pacer(clock, ((10, 60.0),))
    for _ in range(5):
        pacer.acquire()
    # The first answer comes back before the other four requests reached the server.
    pacer.observe(RateLimitInfo(limit=10, remaining=9, reset=0))
    for _ in range(5):
        assert pacer.try_acquire() == 0.0


def test_higher_remaining_forgets_foreign_requests(clock: FakeClock) -> None:
    pacer = make_pacer(clock, ((10, 60.0),))
    pacer.observe(RateLimitInfo(limit=10, remaining=0, reset=50))
    assert pacer.wait_time() > 0
    pacer.observe(RateLimitInfo(limit=10, remaining=10, reset=0))
    assert pacer.wait_time() == 0.0


def test_own_requests_are_never_forgotten(clock: FakeClock) -> None:
    pacer = make_pacer(clock, ((2, 60.0),))
    pacer.acquire()
    pacer.acquire()
    pacer.observe(RateLimitInfo(limit=2, remaining=2, reset=0))
    assert pacer.wait_time() == pytest.approx(60.25)


def test_headers_for_an_unknown_window_are_ignored(clock: FakeClock) -> None:
    pacer = make_pacer(clock, ((10, 60.0), (10, 3600.0)))
    pacer.observe(RateLimitInfo(limit=10, remaining=0, reset=30))
    assert pacer.wait_time() == 0.0


def test_lone_worker_meets_no_429_and_uses_the_budget() -> None:
    windows = ((60, 60), (1000, 3600))
    simulation = Simulation(windows)
    sender = simulation.add(concurrency=8)
    simulation.run(duration=7200.0)
    assert sender.refused == 0
    assert sender.admitted >= 0.95 * greedy_admissions(windows, 7200.0)


def test_lone_worker_adopts_the_keys_own_limits() -> None:
    windows = ((120, 60), (5000, 3600))
    simulation = Simulation(windows)
    sender = simulation.add(concurrency=8)
    simulation.run(duration=600.0)
    assert sender.pacer.windows == tuple(RateLimitWindow(*w) for w in windows)
    assert sender.refused <= 1
    assert sender.admitted >= 0.95 * greedy_admissions(windows, 600.0)


@pytest.mark.parametrize(("workers", "refused_share"), [(2, 0.03), (3, 0.07)])
def test_workers_sharing_a_key_slow_down_to_its_budget(workers: int, refused_share: float) -> None:
    windows = ((60, 60), (1000, 3600))
    simulation = Simulation(windows)
    senders = [simulation.add(concurrency=4) for _ in range(workers)]
    simulation.run(duration=3600.0)
    admitted = sum(sender.admitted for sender in senders)
    refused = sum(sender.refused for sender in senders)
    # Uncoordinated senders still race for the last slots of a window (about one refused
    # request per other sender and window); refusals cost no budget.
    assert refused <= refused_share * admitted
    assert admitted >= 0.95 * greedy_admissions(windows, 3600.0)
    assert all(sender.admitted >= 0.2 * admitted for sender in senders)


def test_near_exhaustion_of_a_shared_window_one_request_flies_at_a_time(clock: FakeClock) -> None:
    pacer = make_pacer(clock, ((20, 60.0),))
    pacer.acquire()
    # 14 requests of another sender: 5 slots left, shared.
    pacer.observe(RateLimitInfo(limit=20, remaining=5, reset=0))
    assert pacer.try_acquire() == 0.0
    assert 0 < pacer.try_acquire() <= 0.1
    pacer.observe(RateLimitInfo(limit=20, remaining=4, reset=0))
    assert pacer.try_acquire() == 0.0


def test_a_lost_answer_does_not_hold_a_shared_window_for_long(clock: FakeClock) -> None:
    pacer = make_pacer(clock, ((20, 60.0),))
    pacer.acquire()
    pacer.observe(RateLimitInfo(limit=20, remaining=5, reset=0))
    assert pacer.try_acquire() == 0.0
    # Its answer never comes (a dropped connection): after a few seconds the next one goes.
    assert pacer.try_acquire() > 0
    clock.now += 5.0
    assert pacer.try_acquire() == 0.0


def test_alone_near_exhaustion_requests_still_go_together(clock: FakeClock) -> None:
    pacer = make_pacer(clock, ((20, 60.0),))
    for _ in range(20):
        assert pacer.try_acquire() == 0.0


def test_threads_share_the_budget_exactly() -> None:
    pacer = Pacer(((50, 3600.0),))
    taken: list[bool] = []
    lock = threading.Lock()

    def sender() -> None:
        while pacer.acquire(timeout=0.2):
            with lock:
                taken.append(True)

    threads = [threading.Thread(target=sender) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(taken) == 50


def test_close_wakes_blocked_senders() -> None:
    pacer = Pacer(((1, 3600.0),))
    assert pacer.acquire()
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(pacer.acquire()))
    thread.start()
    pacer.close()
    thread.join(timeout=10)
    assert results == [False]


@pytest.mark.parametrize(
    ("windows", "margin", "message"),
    [
        ((), 0.25, "windows"),
        (((0, 60.0),), 0.25, "limit"),
        (((1, 0.0),), 0.25, "seconds"),
        (((1, 1.0),), -1.0, "margin"),
    ],
)
def test_bad_configuration_names_the_setting(
    windows: tuple[tuple[int, float], ...], margin: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Pacer(windows, margin=margin)
