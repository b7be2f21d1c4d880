"""Graceful stops on SIGTERM and SIGINT, for the drain worker (and anything shaped like it).

A process manager (systemd, Kubernetes, supervisord) sends SIGTERM and waits; a developer presses
Ctrl-C. The first signal asks the worker to stop: requests in flight finish and are settled, the
rest is released. A second SIGINT means "now": it raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from threading import Event
from types import FrameType
from typing import Any

__all__ = ["stop_on_signals"]

logger = logging.getLogger("meisa_sync.worker")


@contextmanager
def stop_on_signals(stop: Event, *, enabled: bool = True) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT set ``stop``; the previous handlers come back on exit.

    Signal handlers can only be installed from the main thread; elsewhere (or when not
    ``enabled``) this does nothing.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def graceful(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        logger.warning(
            "%s received: finishing in-flight requests, releasing the rest",
            signal.Signals(signum).name,
        )
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    for number in (signal.SIGTERM, signal.SIGINT):
        previous[number] = signal.signal(number, graceful)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
