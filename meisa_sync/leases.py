"""Keeping a batch's object leases alive while its requests run (CONTRACT.md §10.3, §10.6).

A slow request (or a long wait in the pacer) must not let the lease lapse and another worker send
an older state after ours. ``LeaseKeeper`` renews every held lease every ``lease / 3`` from a
background thread, forgets the objects whose lease was lost, and at the end gives back what was
never finished.

Before each request the worker asks ``confirm(key)``. A lease claimed or renewed less than
``lease / 3`` ago still has at least two thirds of its time left, and no other worker can take a
live lease, so it is confirmed without a round trip; an older one is renewed in the store first
(``store.renew``), and not sent if that fails. That keeps the check from costing one database write
per request while the renewer thread is on time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from types import TracebackType

from meisa_sync.records import ObjectKey
from meisa_sync.store import OutboxStore

__all__ = ["LeaseKeeper"]

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """The leases one worker holds for one batch; a context manager running the renewer thread."""

    def __init__(
        self,
        store: OutboxStore,
        worker_id: str,
        keys: Iterable[ObjectKey],
        lease: timedelta,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        """``keys`` were just claimed for ``lease``; ``clock`` is the worker's (aware UTC)."""
        self._store = store
        self._worker_id = worker_id
        self._lease = lease
        self._clock = clock
        self._lock = threading.Lock()
        claimed_at = clock()
        self._renewed_at = {key: claimed_at for key in keys}
        self._held = set(self._renewed_at)
        self._lost: set[ObjectKey] = set()
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._renew_periodically, name=f"meisa-sync-lease-{worker_id}", daemon=True
        )

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopped.set()
        self._thread.join()

    def confirm(self, key: ObjectKey) -> bool:
        """Whether ``key``'s lease is still ours, renewing it unless it is fresh; False (and the
        key forgotten) when it was lost.

        Called just before sending: an object whose lease was lost must not be sent.
        """
        now = self._clock()
        with self._lock:
            if key not in self._held:
                return False
            if now - self._renewed_at[key] < self._lease / 3:
                return True
        held = key in self._store.renew(self._worker_id, [key], self._lease)
        if held:
            self._renewed([key], now)
        else:
            self._lose([key])
        return held

    def finish(self, key: ObjectKey) -> None:
        """The object's records were acked, retried or marked dead: its lease is gone."""
        with self._lock:
            self._held.discard(key)

    def unfinished(self) -> list[ObjectKey]:
        """Objects still leased and not finished: to be released."""
        with self._lock:
            return sorted(self._held)

    @property
    def lost(self) -> int:
        with self._lock:
            return len(self._lost)

    def _renewed(self, keys: Iterable[ObjectKey], at: datetime) -> None:
        with self._lock:
            for key in keys:
                if key in self._held:
                    self._renewed_at[key] = at

    def _lose(self, keys: Iterable[ObjectKey]) -> None:
        with self._lock:
            for key in keys:
                if key in self._held:
                    self._held.discard(key)
                    self._lost.add(key)
                    logger.warning("lost the lease on %s; another worker will send it", key)

    def _renew_periodically(self) -> None:
        interval = self._lease.total_seconds() / 3
        while not self._stopped.wait(interval):
            keys = self.unfinished()
            if not keys:
                continue
            now = self._clock()
            try:
                kept = self._store.renew(self._worker_id, keys, self._lease)
            except Exception:
                # The next renewal or the check before sending will tell; never kill the thread.
                logger.exception("renewing %d leases failed", len(keys))
                continue
            self._renewed(kept, now)
            self._lose(key for key in keys if key not in kept)
