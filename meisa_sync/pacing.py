"""Client-side pacing to an API key's rate limits (CONTRACT.md §3, §10.8).

Meisa admits a request iff fewer than ``limit`` requests of the key were admitted in the preceding
window (60 per minute and 1000 per hour by default). A ``Pacer`` keeps the same sliding windows
over the requests this process sent, so a lone worker never meets a 429 in steady state and still
uses the whole budget. The server's answers correct that local view:

- ``RateLimit-Policy`` replaces the configured windows (limits are set per key);
- ``X-RateLimit-Remaining`` lower than the local count means other processes share the key: their
  requests are added as *foreign* entries, so this process slows down; when ``remaining`` is 0,
  ``X-RateLimit-Reset`` dates the oldest of them; otherwise they are dated now, which errs on the
  side of no 429;
- while other senders are seen and the window is nearly exhausted, only one request of this
  process is in flight at a time: each answer brings the server's fresh count before the next
  request leaves, so the senders racing for the last slots overshoot by one request, not by their
  concurrency;
- a 429's ``Retry-After`` (or ``pause()``) holds every sender of the key until it passes.

Each window is widened by ``margin`` seconds: requests are recorded when they leave, a little before
the server admits them, and network jitter must not make the server see 61 requests in a minute.
"""

from __future__ import annotations

import bisect
import collections
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Sequence

from meisa_sync.ratelimit import RateLimitInfo, RateLimitWindow

__all__ = ["DEFAULT_WINDOWS", "Pacer"]

DEFAULT_WINDOWS = (RateLimitWindow(60, 60.0), RateLimitWindow(1000, 3600.0))

# A sleeping sender wakes at least this often, so a correction from observe() (a pause, or foreign
# entries removed) takes effect promptly.
_MAX_SLEEP = 1.0
# Longer than the client's read timeout (30 s).
_UNANSWERED_AFTER = 60.0
# A shared window with this few free slots or fewer takes one request at a time, looking for
# the answer every _ANSWER_POLL seconds.
_NEAR_EXHAUSTION = 8
_ANSWER_POLL = 0.05
_ANSWER_WAIT = 5.0


class Pacer:
    """Thread-safe sliding-window pacing for one API key, shared by all of a worker's senders.

    ``clock`` (monotonic seconds) and ``sleep`` are injectable for tests; with the default
    ``sleep``, ``close()`` wakes blocked senders.
    """

    def __init__(
        self,
        windows: Sequence[RateLimitWindow | tuple[int, float]] = DEFAULT_WINDOWS,
        *,
        margin: float = 0.25,
        follow_policy: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        if margin < 0:
            raise ValueError(f"margin: must not be negative, got {margin}")
        self._windows = _windows(windows)
        self._margin = margin
        self._follow_policy = follow_policy
        self._clock = clock
        self._wakeup = threading.Event()
        self._sleep: Callable[[float], object] = sleep or self._wakeup.wait
        self._lock = threading.Lock()
        self._own: list[float] = []
        self._foreign: list[float] = []
        # Send times of requests not yet answered (observed), oldest first: the server has not
        # counted them yet when it answers, so they must not be mistaken for a gap.
        self._unanswered: collections.deque[float] = collections.deque()
        self._hold_until = float("-inf")
        self._closed = False

    @property
    def windows(self) -> tuple[RateLimitWindow, ...]:
        """The windows paced to: the configured ones until the server's policy replaces them."""
        return self._windows

    def __repr__(self) -> str:
        windows = ", ".join(f"{w.limit}/{w.seconds:g}s" for w in self._windows)
        return f"Pacer({windows}, margin={self._margin:g})"

    def try_acquire(self) -> float:
        """Take a slot now and return 0.0, or return the seconds to wait before one frees up.

        For async code: ``while (wait := pacer.try_acquire()): await asyncio.sleep(wait)``.
        """
        with self._lock:
            now = self._clock()
            wait = self._wait(now)
            if wait <= 0:
                self._own.append(now)
                self._unanswered.append(now)
                return 0.0
            return wait

    def acquire(self, *, timeout: float | None = None) -> bool:
        """Block until a request may be sent, and count it as sent.

        Returns False, without taking a slot, when ``timeout`` seconds pass first or the pacer is
        closed.
        """
        deadline = None if timeout is None else self._clock() + timeout
        while not self._closed:
            wait = self.try_acquire()
            if wait <= 0:
                return True
            if deadline is not None:
                left = deadline - self._clock()
                if left <= 0:
                    return False
                wait = min(wait, left)
            self._sleep(min(wait, _MAX_SLEEP))
        return False

    def wait_time(self) -> float:
        """Seconds until a request could be sent (0.0 when one could go now), without taking it."""
        with self._lock:
            return max(0.0, self._wait(self._clock()))

    def pause(self, seconds: float) -> None:
        """Hold every sender for ``seconds`` (a 429's ``Retry-After``); never shortens a hold."""
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + max(0.0, seconds))

    def observe(self, info: RateLimitInfo) -> None:
        """Correct the local view with what a response said about the key's limits.

        Call it with the ``rate_limit`` of every answer (errors' headers included): it also tells
        the pacer that one of its requests is no longer in flight.
        """
        with self._lock:
            now = self._clock()
            if self._unanswered:
                self._unanswered.popleft()
            if self._follow_policy and info.policy and set(info.policy) != set(self._windows):
                self._windows = info.policy
            if info.retry_after is not None:
                self._hold_until = max(self._hold_until, now + info.retry_after)
            window = info.window or self._window_limited_to(info.limit)
            if window is None or info.remaining is None:
                return
            server_used = max(0, window.limit - info.remaining)
            # Our unanswered requests may not have reached the server yet; assuming they have not
            # errs towards seeing other senders, which only slows us down.
            gap = server_used - (self._used(window, now) - len(self._unanswered))
            if gap > 0:
                self._add_foreign(window, now, gap, info)
            elif gap < 0:
                self._forget_foreign(window, now, -gap)

    def close(self) -> None:
        """Make ``acquire`` return False from now on, waking senders that sleep in it."""
        self._closed = True
        self._wakeup.set()

    def _wait(self, now: float) -> float:
        self._trim(now)
        wait = self._hold_until - now
        for window in self._windows:
            wait = max(wait, self._window_wait(window, now))
            if self._awaiting_answer(now) and self._contended(window, now):
                wait = max(wait, _ANSWER_POLL)
        return wait

    def _awaiting_answer(self, now: float) -> bool:
        # A request unanswered for long was probably lost (no response comes for a timeout or a
        # broken connection): it must not hold the others back.
        return bool(self._unanswered) and self._unanswered[-1] > now - _ANSWER_WAIT

    def _contended(self, window: RateLimitWindow, now: float) -> bool:
        start = now - window.seconds - self._margin
        foreign = len(self._foreign) - bisect.bisect_right(self._foreign, start)
        return foreign > 0 and window.limit - self._used(window, now) <= _NEAR_EXHAUSTION

    def _window_wait(self, window: RateLimitWindow, now: float) -> float:
        span = window.seconds + self._margin
        start = now - span
        own = self._own[bisect.bisect_right(self._own, start) :]
        foreign = self._foreign[bisect.bisect_right(self._foreign, start) :]
        excess = len(own) + len(foreign) - window.limit
        if excess < 0:
            return 0.0
        # The window admits again when the (excess + 1)-th oldest entry in it leaves it.
        oldest = next(itertools.islice(heapq.merge(own, foreign), excess, None))
        return oldest + span - now

    def _used(self, window: RateLimitWindow, now: float) -> int:
        start = now - window.seconds - self._margin
        return (
            len(self._own)
            - bisect.bisect_right(self._own, start)
            + len(self._foreign)
            - bisect.bisect_right(self._foreign, start)
        )

    def _add_foreign(
        self, window: RateLimitWindow, now: float, count: int, info: RateLimitInfo
    ) -> None:
        if info.remaining == 0 and info.reset:
            # The window admits again in `reset` seconds: that is when its oldest entry leaves.
            bisect.insort(self._foreign, now + info.reset - window.seconds - self._margin)
            count -= 1
        self._foreign.extend([now] * count)
        self._foreign.sort()

    def _forget_foreign(self, window: RateLimitWindow, now: float, count: int) -> None:
        start = bisect.bisect_right(self._foreign, now - window.seconds - self._margin)
        keep = max(start, len(self._foreign) - count)
        del self._foreign[keep:]

    def _window_limited_to(self, limit: int | None) -> RateLimitWindow | None:
        matching = [window for window in self._windows if window.limit == limit]
        return matching[0] if len(matching) == 1 else None

    def _trim(self, now: float) -> None:
        horizon = now - max(window.seconds for window in self._windows) - self._margin
        for entries in (self._own, self._foreign):
            if entries and entries[0] <= horizon:
                del entries[: bisect.bisect_right(entries, horizon)]
        # A request unanswered this long failed without a response (timeout, broken connection).
        while self._unanswered and self._unanswered[0] <= now - _UNANSWERED_AFTER:
            self._unanswered.popleft()


def _windows(
    windows: Sequence[RateLimitWindow | tuple[int, float]],
) -> tuple[RateLimitWindow, ...]:
    parsed = tuple(
        window if isinstance(window, RateLimitWindow) else RateLimitWindow(*window)
        for window in windows
    )
    if not parsed:
        raise ValueError("windows: give at least one (limit, seconds) window")
    return parsed
