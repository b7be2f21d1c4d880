"""Settling an object's records after its plan ran: ack, retry later, dead (CONTRACT.md §10.7).

``Settler.unsent`` and ``Settler.refused`` pick the settlement (the table of CONTRACT.md §10.7);
each settlement writes to the store, counts into the ``DrainReport``, logs and sends the matching
signal (``meisa_sync.signals``), then lets the batch's ``LeaseKeeper`` forget the object.

Retries and dead records are written at once, one object at a time (they are rare). Acks go
through the batch's ``AckWriter`` and are written in groups. Their signal (``sent``,
``skipped``) is sent at once, in the thread that settled the object (a slow receiver slows its
sender, as it always did); their counts and the end of their lease come when the group is
written, so an ack that never reaches the database leaves the object leased to this worker until
the batch releases it, and the object is sent (and signalled) again later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from meisa_sync import signals
from meisa_sync.acking import AckWriter
from meisa_sync.batch import Action, Plan, SkipReason, describe_error
from meisa_sync.exceptions import MeisaAPIError, NotFound, RateLimited, ServerError
from meisa_sync.leases import LeaseKeeper
from meisa_sync.ratelimit import RateLimitInfo
from meisa_sync.records import Ack, Operation
from meisa_sync.report import DrainReport
from meisa_sync.retry import RetryPolicy
from meisa_sync.store import OutboxStore

if TYPE_CHECKING:
    from meisa_sync.client import MeisaResponse
    from meisa_sync.pacing import Pacer

__all__ = ["RateLimitGate", "Settler"]

logger = logging.getLogger(__name__)


class RateLimitGate:
    """After a 429, holds every sender until ``Retry-After`` passes (the pacer's job when there
    is one; this gate does it for a worker without a pacer). ``clock`` is the worker's."""

    def __init__(self, pacer: Pacer | None, clock: Callable[[], datetime]) -> None:
        self._pacer = pacer
        self._clock = clock
        self._until: datetime | None = None

    def close(self, seconds: float) -> None:
        if self._pacer is not None:
            self._pacer.pause(seconds)
            return
        until = self._clock() + timedelta(seconds=seconds)
        if self._until is None or until > self._until:
            self._until = until

    def remaining(self) -> float:
        """Seconds until this gate opens (the pacer's own hold is waited out in ``acquire``)."""
        if self._until is None:
            return 0.0
        return max(0.0, (self._until - self._clock()).total_seconds())


class Settler:
    """Writes the fate of one batch's objects to the store for one worker, and tells the world.

    ``keeper`` holds the batch's leases, ``acks`` writes its acknowledgements in groups. Counts
    that depend on an ack being written go to ``written`` (from the ack writer's thread: read it
    once the writer is closed).
    """

    def __init__(
        self,
        *,
        store: OutboxStore,
        worker_id: str,
        sender: object,
        retry_policy: RetryPolicy,
        gate: RateLimitGate,
        clock: Callable[[], datetime],
        random: Callable[[], float],
        keeper: LeaseKeeper,
        acks: AckWriter,
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._sender = sender
        self._retry_policy = retry_policy
        self._gate = gate
        self._clock = clock
        self._random = random
        self._keeper = keeper
        self._acks = acks
        self.written = DrainReport()

    def unsent(self, plans: Sequence[Plan], report: DrainReport) -> None:
        """Settle plans that need no request: skipped (acknowledged together), dead (mapping
        error), or retried (the source failed)."""
        skipped = []
        for plan in plans:
            if plan.action is Action.SKIP:
                assert plan.reason is not None
                skipped.append(self._skip(plan, plan.reason))
            elif plan.action is Action.DEAD:
                assert plan.error is not None
                self.dead(plan, plan.error, plan.cause, report)
            else:
                self.retry_later(plan, plan.cause or RuntimeError(plan.error), report)
        self._acks.add(skipped)

    def refused(self, plan: Plan, error: MeisaAPIError, report: DrainReport) -> None:
        """Meisa answered with an error status (401/403 aside, which stop the whole batch)."""
        if isinstance(error, RateLimited):
            self.rate_limited(plan, error, report)
        elif isinstance(error, NotFound) and plan.operation is Operation.DELETE:
            self._acks.add([self._skip(plan, SkipReason.NOT_FOUND)])  # already erased
        elif isinstance(error, ServerError):
            self.retry_later(plan, error, report)
        else:
            # 400, 404, 409, 413 and any other refusal: the same request cannot succeed later.
            self.dead(plan, str(error), error, report)

    def sent(self, plan: Plan, response: MeisaResponse) -> None:
        """Meisa acknowledged the request: the records leave, the payload is remembered."""
        claimed = plan.claimed
        signals.send_safely(
            signals.sent,
            self._sender,
            key=claimed.key,
            records=claimed.records,
            operation=plan.operation,
            payload=plan.body if plan.operation is Operation.UPSERT else None,
            response=response,
            coalesced=len(claimed.records) - 1,
        )

        def written() -> None:
            self._acked(plan)
            self.written.sent += 1

        self._acks.add([(self._ack(plan, contact_id=response.contact_id), written)])

    def _skip(self, plan: Plan, reason: SkipReason) -> tuple[Ack, Callable[[], None]]:
        """Nothing had to be sent: tell the world, and return the ack to queue."""
        claimed = plan.claimed
        signals.send_safely(
            signals.skipped, self._sender, key=claimed.key, records=claimed.records, reason=reason
        )

        def written() -> None:
            self._acked(plan)
            if reason is SkipReason.UNCHANGED:
                self.written.unchanged += 1
            else:
                self.written.skipped += 1

        return self._ack(plan, contact_id=None), written

    def retry_later(self, plan: Plan, error: BaseException, report: DrainReport) -> None:
        """A transient failure: back off with full jitter, or give up after the maximum age."""
        claimed = plan.claimed
        now = self._clock()
        first_created = min(record.created_at for record in claimed.records)
        message = describe_error(error)
        if self._retry_policy.expired(first_created, now):
            age = now - first_created
            self.dead(plan, f"gave up after {age} (maximum age): {message}", error, report)
            return
        attempts = max(record.attempts for record in claimed.records)
        delay = self._retry_policy.next_delay(attempts, random=self._random)
        self._store.retry(
            self._worker_id,
            claimed.key,
            claimed.record_ids,
            available_at=now + timedelta(seconds=delay),
            error=message,
        )
        self._keeper.finish(claimed.key)
        report.retried += 1
        logger.info("%s failed (%s); retrying in %.1f s", claimed.key, message, delay)
        signals.send_safely(
            signals.retrying,
            self._sender,
            key=claimed.key,
            records=claimed.records,
            error=error,
            delay=delay,
            attempts=attempts + 1,
        )

    def rate_limited(self, plan: Plan, error: RateLimited, report: DrainReport) -> None:
        """429: wait ``Retry-After`` without counting an attempt, and hold every sender."""
        claimed = plan.claimed
        wait = max(error.retry_after, 0.0)
        self._store.retry(
            self._worker_id,
            claimed.key,
            claimed.record_ids,
            available_at=self._clock() + timedelta(seconds=wait),
            error=str(error),
            count_attempt=False,
        )
        self._keeper.finish(claimed.key)
        self._gate.close(wait)
        report.rate_limited += 1
        logger.warning("Meisa rate-limited the API key; sending pauses for %.0f s", wait)
        signals.send_safely(
            signals.rate_limited, self._sender, key=claimed.key, retry_after=wait, error=error
        )

    def dead(
        self, plan: Plan, error: str, cause: BaseException | None, report: DrainReport
    ) -> None:
        """Resending cannot help: keep the records, dead, with the reason."""
        claimed = plan.claimed
        self._store.dead(self._worker_id, claimed.key, claimed.record_ids, error=error)
        self._keeper.finish(claimed.key)
        report.dead_records += len(claimed.records)
        logger.warning("%s: %d records dead: %s", claimed.key, len(claimed.records), error)
        signals.send_safely(
            signals.dead,
            self._sender,
            key=claimed.key,
            records=claimed.records,
            error=error,
            exception=cause,
        )

    def _ack(self, plan: Plan, *, contact_id: str | None) -> Ack:
        claimed = plan.claimed
        # After a delete, or when nothing was built, the last payload is no longer known to be on
        # Meisa; only an unchanged or sent upsert payload is remembered.
        upsert = plan.operation is Operation.UPSERT
        return Ack(
            key=claimed.key,
            record_ids=claimed.record_ids,
            payload_hash=plan.payload_hash if upsert else None,
            payload=plan.canonical if upsert else None,
            remote_id=contact_id or claimed.remote_id,
        )

    def _acked(self, plan: Plan) -> None:
        """An ack was written: the records are gone and the store freed the lease."""
        self._keeper.finish(plan.key)
        self.written.acked_records += len(plan.claimed.records)


def observe_headers(pacer: Pacer | None, headers: dict[str, str]) -> None:
    """Feed an error response's rate-limit headers to the pacer (every answer corrects it)."""
    if pacer is not None:
        pacer.observe(RateLimitInfo.from_headers(headers))
