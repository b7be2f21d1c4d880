"""Group commit for acknowledgements: the acks of many objects in one store transaction.

Writing each acknowledged object on its own costs one database transaction per object (a WAL
flush on PostgreSQL, a turn at SQLite's single write lock), and the drain worker ended up waiting
on its own database more than on Meisa. ``AckWriter`` takes the acks from the sending threads and
writes whatever has gathered with one ``store.ack_many``, from a thread of its own: while one group
is being written the next one gathers, so groups grow with the load and no timer needs tuning.

At least once still holds. An ack counts only once written: its ``on_written`` callback runs then
(the worker keeps the object's lease alive until that moment). An ack that is never written (the
process dies, the database fails) leaves the records pending, and they are sent again later with
the same Idempotency-Key, which Meisa replays.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from types import TracebackType

from meisa_sync.records import Ack
from meisa_sync.store import OutboxStore

__all__ = ["AckWriter"]

logger = logging.getLogger(__name__)

OnWritten = Callable[[], None]


class AckWriter:
    """Writes acks in groups of up to ``max_group`` from a background thread; a context manager.

    ``add`` queues acks and returns at once; leaving the ``with`` block writes everything queued
    and waits for it. Woken by a first ack, the writer waits up to ``linger`` seconds for
    ``enough`` of them: fewer, bigger transactions cost the worker less CPU, and the wait is
    short next to a lease (the objects stay leased meanwhile). ``groups`` counts the
    ``ack_many`` calls made (for tests and logs).
    """

    def __init__(
        self,
        store: OutboxStore,
        worker_id: str,
        *,
        max_group: int = 500,
        linger: float = 0.0,
        enough: int = 1,
    ) -> None:
        if max_group < 1:
            raise ValueError(f"max_group: must be at least 1, got {max_group}")
        self._store = store
        self._worker_id = worker_id
        self._max_group = max_group
        self._linger = linger
        self._enough = enough
        self._changed = threading.Condition()
        self._queued: list[tuple[Ack, OnWritten]] = []
        self._closing = False
        self.groups = 0
        self._thread = threading.Thread(
            target=self._write_until_closed, name=f"meisa-sync-acks-{worker_id}", daemon=True
        )

    def __enter__(self) -> AckWriter:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join()

    def add(self, acks: Iterable[tuple[Ack, OnWritten]]) -> None:
        """Queue acks, each with what to do once it is written (in the writer's thread)."""
        with self._changed:
            if self._closing:
                raise RuntimeError("the AckWriter is closed")
            self._queued.extend(acks)
            self._changed.notify()

    def _write_until_closed(self) -> None:
        while True:
            with self._changed:
                while not self._queued and not self._closing:
                    self._changed.wait()
                if not self._queued:
                    return
                if self._linger > 0:
                    self._changed.wait_for(
                        lambda: self._closing or len(self._queued) >= self._enough,
                        timeout=self._linger,
                    )
                group = self._queued[: self._max_group]
                del self._queued[: self._max_group]
            self._write(group)

    def _write(self, group: list[tuple[Ack, OnWritten]]) -> None:
        try:
            self._store.ack_many(self._worker_id, [ack for ack, _ in group])
        except Exception:
            # The records stay pending: once their leases are given back they are sent again.
            logger.exception("acknowledging %d objects failed; they will be sent again", len(group))
            return
        finally:
            self.groups += 1
        for ack, on_written in group:
            try:
                on_written()
            except Exception:
                logger.exception("after acknowledging %s", ack.key)
