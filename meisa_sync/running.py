"""One claimed batch under way in the drain worker (``meisa_sync.worker``).

``RunningBatch`` plans the batch (``meisa_sync.batch``), settles what needs no request and hands
the rest to the worker's sending threads, then, in ``finish``, waits for the requests, writes the
last acknowledgements (``meisa_sync.acking``) and gives back what was not settled. The worker keeps
two batches under way so that its senders never wait for a claim.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, wait
from contextlib import ExitStack
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from meisa_sync.acking import AckWriter
from meisa_sync.batch import Action, Plan, plan_batch
from meisa_sync.exceptions import MeisaAPIError
from meisa_sync.leases import LeaseKeeper
from meisa_sync.records import ClaimedObject
from meisa_sync.report import DrainReport
from meisa_sync.settle import Settler
from meisa_sync.store import OutboxStore

if TYPE_CHECKING:
    from meisa_sync.app import SyncApp

__all__ = ["Deliver", "RunningBatch"]

logger = logging.getLogger(__name__)

# How long the ack writer waits for a group to fill: long enough for several answers to arrive
# (fewer transactions, less CPU), short next to a lease; at the batch's end it writes at once.
_ACK_LINGER = 0.05

Deliver = Callable[[Settler, Plan, LeaseKeeper, list[MeisaAPIError]], DrainReport]


class RunningBatch:
    """One claimed batch whose requests are under way: its leases, its ack writer, its futures.

    Made by ``Worker.run_once`` (two may run at once, under two lease owners): plans the batch,
    settles what needs no request and queues the rest for the worker's senders. ``finish`` waits
    for every request, writes the last acks, releases what was not settled and returns the
    batch's report.
    """

    def __init__(
        self,
        app: SyncApp,
        owner: str,
        batch: Sequence[ClaimedObject],
        *,
        lease: timedelta,
        clock: Callable[[], datetime],
        pool: Executor,
        make_settler: Callable[[str, LeaseKeeper, AckWriter], Settler],
        deliver: Deliver,
        auth_errors: list[MeisaAPIError],
    ) -> None:
        """``batch`` was just claimed by ``owner`` for ``lease``; ``deliver`` sends one plan (in
        ``pool``), ``make_settler`` builds the batch's settler; ``auth_errors`` are the pass's,
        shared."""
        store = app.store
        self._auth_errors = auth_errors
        self.report = DrainReport(
            objects=len(batch),
            records=sum(len(claimed.records) for claimed in batch),
            coalesced_records=sum(len(claimed.records) - 1 for claimed in batch),
        )
        self._sending: list[Plan] = []
        self._futures: list[Future[DrainReport]] = []
        # Closed in reverse: the last acks are written, then what is unsettled is released
        # (never before its ack had its chance), then the leases are no longer renewed.
        with ExitStack() as stack:
            keeper = stack.enter_context(
                LeaseKeeper(store, owner, [c.key for c in batch], lease, clock=clock)
            )
            stack.callback(self._release_unfinished, store, owner, keeper)
            acks = stack.enter_context(
                AckWriter(store, owner, linger=_ACK_LINGER, enough=max(1, len(batch) // 2))
            )
            self._settler = make_settler(owner, keeper, acks)
            plans = plan_batch(app, batch)
            self._sending = [plan for plan in plans if plan.action is Action.SEND]
            self._settler.unsent(
                [plan for plan in plans if plan.action is not Action.SEND], self.report
            )
            self._futures = [
                pool.submit(deliver, self._settler, plan, keeper, auth_errors)
                for plan in self._sending
            ]
            self._stack = stack.pop_all()

    def finish(self) -> DrainReport:
        """Wait for the batch's requests, settle what is left; the batch's report."""
        report = self.report
        try:
            # Every request finishes before anything is released, whatever failed.
            wait(self._futures)
        finally:
            self._stack.close()
        for plan, future in zip(self._sending, self._futures, strict=True):
            error = future.exception()
            if error is None:
                report.add(future.result())
            else:
                logger.error("settling %s failed: %r", plan.key, error, exc_info=error)
        report.add(self._settler.written)
        report.auth_failed = bool(self._auth_errors)
        return report

    def _release_unfinished(self, store: OutboxStore, owner: str, keeper: LeaseKeeper) -> None:
        unfinished = keeper.unfinished()
        if unfinished:
            store.release(owner, unfinished)
        self.report.released += len(unfinished)
        self.report.lease_lost += keeper.lost
