"""Keeping a batch's object leases alive while its requests run (CONTRACT.md §10.3, §10.6).

A slow request (or a long wait in the pacer) must not let the lease lapse and another worker send
an older state after ours. ``LeaseKeeper`` renews every held lease every ``lease / 3`` from a
background thread, forgets the objects whose lease was lost, and at the end gives back what was
never finished.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import timedelta
from types import TracebackType

from meisa_sync.records import ObjectKey
from meisa_sync.store import OutboxStore

__all__ = ["LeaseKeeper"]

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """The leases one worker holds for one batch; a context manager running the renewer thread."""

    def __init__(
        self, store: OutboxStore, worker_id: str, keys: Iterable[ObjectKey], lease: timedelta
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._lease = lease
        self._lock = threading.Lock()
        self._held = set(keys)
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
        """Renew ``key``'s lease now; False (and the key forgotten) when it is no longer ours.

        Called just before sending: an object whose lease was lost must not be sent.
        """
        with self._lock:
            if key not in self._held:
                return False
        held = key in self._store.renew(self._worker_id, [key], self._lease)
        if not held:
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
            try:
                kept = self._store.renew(self._worker_id, keys, self._lease)
            except Exception:
                # The next renewal or the check before sending will tell; never kill the thread.
                logger.exception("renewing %d leases failed", len(keys))
                continue
            self._lose(key for key in keys if key not in kept)
