"""The drain worker: claims change records, sends what they mean to Meisa, settles them (§10).

One pass (``Worker.run_once``) repeats until nothing due is left::

    claim a batch → plan it (meisa_sync.batch: coalesce, load, build, drop no-ops)
    → send with bounded concurrency, each lease checked just before its request
    → ack / retry / dead / release per CONTRACT.md §10.7 (meisa_sync.settle); acks are written
      in groups (meisa_sync.acking)

and the next batch is claimed while the current one's requests run (``meisa_sync.running``).

``Worker.run`` loops over passes, polls with backoff when idle, pauses on auth failures and stops
gracefully on SIGTERM/SIGINT (in-flight requests finish, unsent objects are released).
"""

from __future__ import annotations

import logging
import os
import random as _random
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING

from meisa_sync import signals
from meisa_sync.acking import AckWriter
from meisa_sync.batch import Plan
from meisa_sync.exceptions import (
    AuthenticationFailed,
    MeisaAPIError,
    PermissionDenied,
    TransportError,
)
from meisa_sync.leases import LeaseKeeper
from meisa_sync.memory import utc_now
from meisa_sync.records import ObjectKey, Operation
from meisa_sync.report import DrainReport
from meisa_sync.retry import RetryPolicy
from meisa_sync.running import RunningBatch
from meisa_sync.settle import RateLimitGate, Settler, observe_headers
from meisa_sync.shutdown import stop_on_signals

if TYPE_CHECKING:
    from meisa_sync.app import SyncApp
    from meisa_sync.client import MeisaClient, MeisaResponse
    from meisa_sync.pacing import Pacer

__all__ = ["DrainReport", "Worker", "default_worker_id"]

logger = logging.getLogger(__name__)

_IDLE_POLL_MIN = 0.2
_MAX_WORKER_ID = 98
# How often a sender waiting for its turn looks at the stop flag.
_TURN_CHECK = 1.0


def default_worker_id() -> str:
    """``host:pid:random``: unique across hosts and restarts, readable in the state table."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Drains the outbox of ``app`` into Meisa through ``client``.

    ``batch_size`` objects are claimed at a time and sent over ``concurrency`` threads sharing the
    client. ``lease`` is how long a claimed object stays ours without renewal (renewed every third
    of it while requests run). ``pacer`` keeps sending within the key's rate limits (none: send as
    fast as Meisa admits). After a 401/403 the worker waits ``auth_recheck`` seconds before trying
    again; idle, it polls with a backoff up to ``idle_poll`` seconds. ``clock`` (aware UTC) and
    ``random`` (the retry jitter) are for tests.
    The client is not closed by the worker; ``close()`` (or ``with``) stops its thread pool.
    """

    def __init__(
        self,
        app: SyncApp,
        client: MeisaClient,
        *,
        worker_id: str | None = None,
        batch_size: int = 100,
        concurrency: int = 8,
        lease: timedelta = timedelta(seconds=60),
        retry_policy: RetryPolicy | None = None,
        pacer: Pacer | None = None,
        clock: Callable[[], datetime] = utc_now,
        random: Callable[[], float] = _random.random,
        auth_recheck: float = 60.0,
        idle_poll: float = 5.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: must be at least 1, got {batch_size}")
        if concurrency < 1:
            raise ValueError(f"concurrency: must be at least 1, got {concurrency}")
        if lease <= timedelta(0):
            raise ValueError(f"lease: must be positive, got {lease}")
        if worker_id and len(worker_id) > _MAX_WORKER_ID:
            # The lease owner column holds 100 characters, and every other batch adds "/2".
            raise ValueError(
                f"worker_id: must be at most {_MAX_WORKER_ID} characters, got {len(worker_id)}"
            )
        self.app = app
        self.client = client
        self.worker_id = worker_id or default_worker_id()
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.lease = lease
        self.retry_policy = retry_policy or RetryPolicy()
        self.pacer = pacer
        self.auth_recheck = auth_recheck
        self.idle_poll = idle_poll
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="meisa-sync-send")
        # The names under which two overlapping batches hold their leases (``run_once``).
        self.lease_owners = (self.worker_id, f"{self.worker_id}/2")
        self._gate = RateLimitGate(pacer, clock)
        self._clock = clock
        self._random = random

    def __repr__(self) -> str:
        return f"Worker(worker_id={self.worker_id!r}, batch_size={self.batch_size})"

    def __enter__(self) -> Worker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the sending threads (after the requests they are making)."""
        self._pool.shutdown(wait=True)

    def stop(self) -> None:
        """Ask ``run``/``run_once`` to stop: in-flight requests finish, the rest is released."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- the loop ------------------------------------------------------------------------------

    def run(
        self, stop: threading.Event | None = None, *, handle_signals: bool = True
    ) -> DrainReport:
        """Drain until stopped (``stop`` set, ``stop()``, SIGTERM or SIGINT); return the totals.

        Idle, it polls with a backoff up to ``idle_poll`` seconds (also the wait after a failed
        pass, e.g. the database was unreachable); after an auth failure it waits ``auth_recheck``
        seconds and tries again. ``handle_signals`` installs graceful SIGTERM/SIGINT handlers
        (main thread only); a second SIGINT interrupts at once.
        """
        if stop is not None:
            self._stop = stop
        total = DrainReport()
        shortest = min(_IDLE_POLL_MIN, self.idle_poll)
        idle = shortest
        with self.graceful_shutdown(handle_signals):
            while not self.stopping:
                try:
                    report = self.run_once()
                except Exception:
                    logger.exception("the drain pass failed; retrying in %.1f s", self.idle_poll)
                    self._stop.wait(self.idle_poll)
                    continue
                total.add(report)
                if report.auth_failed:
                    self._stop.wait(self.auth_recheck)
                elif report.objects:
                    idle = shortest
                else:
                    self._stop.wait(idle)
                    idle = min(idle * 2, self.idle_poll)
        logger.info("worker %s stopped; %s", self.worker_id, total.summary())
        return total

    def run_once(self, progress: Callable[[DrainReport], None] | None = None) -> DrainReport:
        """Drain what is due now, batch after batch; each object is tried at most once.

        ``progress`` is called with each batch's report. Stops early on an auth failure (reported
        in ``auth_failed``) or when asked to stop.

        Two batches overlap: the next one is claimed, planned and queued for sending while the
        last requests of the current one run, so the senders never wait for a claim. The two
        batches hold their leases under two names (``lease_owners``), so the next claim cannot
        take an object whose request is still under way.
        """
        total = DrainReport()
        tried: set[ObjectKey] = set()
        auth_errors: list[MeisaAPIError] = []
        # Objects retried earlier in this pass may be due again at once and come first in the next
        # claim: they are released for the next pass, and the claim widened to reach past them.
        extra = 0
        turn = 0
        running: RunningBatch | None = None

        def finish(batch: RunningBatch) -> None:
            report = batch.finish()
            logger.info("batch: %s", report.summary())
            total.add(report)
            if progress is not None:
                progress(report)

        try:
            while not (self.stopping or auth_errors):
                owner = self.lease_owners[turn % 2]
                limit = self.batch_size + extra
                claimed = self.app.store.claim(owner, limit=limit, lease=self.lease)
                again = [c.key for c in claimed if c.key in tried]
                if again:
                    self.app.store.release(owner, again)
                fresh = [c for c in claimed if c.key not in tried]
                if not fresh:
                    if len(claimed) < limit or len(again) <= extra:
                        if running is None:
                            break
                        # What is due may wait for the running batch: claim again after it.
                        finish(running)
                        running = None
                        continue
                    extra = len(again)
                    continue
                extra = len(again)
                tried.update(c.key for c in fresh)
                started = RunningBatch(
                    self.app,
                    owner,
                    fresh,
                    lease=self.lease,
                    clock=self._clock,
                    pool=self._pool,
                    make_settler=self._settler,
                    deliver=self._deliver,
                    auth_errors=auth_errors,
                )
                turn += 1
                if running is not None:
                    finish(running)
                running = started
        finally:
            if running is not None:
                finish(running)
        if auth_errors:
            self._auth_failed(auth_errors[0], total)
        return total

    # -- one batch -----------------------------------------------------------------------------

    def _settler(self, owner: str, keeper: LeaseKeeper, acks: AckWriter) -> Settler:
        return Settler(
            store=self.app.store,
            worker_id=owner,
            sender=self,
            retry_policy=self.retry_policy,
            gate=self._gate,
            clock=self._clock,
            random=self._random,
            keeper=keeper,
            acks=acks,
        )

    def _deliver(
        self,
        settler: Settler,
        plan: Plan,
        keeper: LeaseKeeper,
        auth_errors: list[MeisaAPIError],
    ) -> DrainReport:
        """Send one plan and settle its records (in a pool thread). An object that is not sent,
        or whose settlement fails, stays in the keeper and is released with the batch."""
        report = DrainReport()
        if not self._wait_for_turn(auth_errors) or not keeper.confirm(plan.key):
            return report
        report.requests += 1
        try:
            response = self._request(plan)
        except (AuthenticationFailed, PermissionDenied) as exc:
            auth_errors.append(exc)
            return report
        except MeisaAPIError as exc:
            observe_headers(self.pacer, exc.headers)
            settler.refused(plan, exc, report)
        except TransportError as exc:
            settler.retry_later(plan, exc, report)
        except Exception as exc:
            logger.exception("sending %s failed unexpectedly; it will be retried", plan.key)
            settler.retry_later(plan, exc, report)
        else:
            if self.pacer is not None:
                self.pacer.observe(response.rate_limit)
            settler.sent(plan, response)
        return report

    def _wait_for_turn(self, auth_errors: list[MeisaAPIError]) -> bool:
        """Wait out a 429 pause and the pacer; False when the batch must stop sending instead."""
        while not (self.stopping or auth_errors):
            paused = self._gate.remaining()
            if paused > 0:
                self._stop.wait(min(paused, _TURN_CHECK))
            elif self.pacer is None or self.pacer.acquire(timeout=_TURN_CHECK):
                return not (self.stopping or auth_errors)
        return False

    def _auth_failed(self, error: MeisaAPIError, report: DrainReport) -> None:
        logger.error(
            "MEISA REFUSED THE CREDENTIALS (%s). Sending is paused and the records are untouched; "
            "fix the API key (MEISA_API_KEY) or its scopes. Re-checking every %.0f s.",
            error,
            self.auth_recheck,
        )
        signals.send_safely(signals.auth_failed, self, error=error, released=report.released)

    def _request(self, plan: Plan) -> MeisaResponse:
        assert plan.body is not None
        if plan.operation is Operation.DELETE:
            return self.client.delete(plan.body, idempotency_key=plan.idempotency_key)
        return self.client.upsert(plan.body, idempotency_key=plan.idempotency_key)

    def graceful_shutdown(self, enabled: bool = True) -> AbstractContextManager[None]:
        """While inside, SIGTERM and SIGINT stop the worker gracefully (main thread only).

        The first signal finishes the requests in flight and releases the rest; a second SIGINT
        raises ``KeyboardInterrupt``. The previous handlers come back on exit.
        """
        return stop_on_signals(self._stop, enabled=enabled)
