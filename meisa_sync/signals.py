"""Blinker signals: what the outbox and the drain worker did (CONTRACT.md §10.10).

Connect a receiver to watch deliveries, feed metrics or page someone::

    from meisa_sync import signals

    @signals.dead.connect
    def alert(sender, *, key, records, error, **extra):
        sentry_sdk.capture_message(f"meisa-sync gave up on {key}: {error}")

The sender is the ``Worker`` for every worker signal and the store (or the plugin's registration)
for ``enqueued``. Arguments are passed by keyword; receivers should accept ``**extra`` so that new
arguments never break them. Receivers run synchronously in the worker's threads: keep them quick.
An exception raised by a receiver is logged and swallowed, so it never stops a drain.

========================  ========================================================================
signal                    keyword arguments
========================  ========================================================================
``enqueued``              ``changes`` (the ``NewChange`` objects), ``record_ids``
``sent``                  ``key``, ``records``, ``operation``, ``payload`` (``None`` for a delete),
                          ``response`` (the ``MeisaResponse``), ``coalesced`` (records merged
                          into this one request)
``skipped``               ``key``, ``records``, ``reason``: ``"unchanged"`` (payload equals the last
                          acknowledged one), ``"should_sync"`` (the mapping said no), ``"gone"``
                          (the object no longer exists), ``"not_found"`` (a delete found no contact)
``retrying``              ``key``, ``records``, ``error`` (the exception), ``delay`` (seconds),
                          ``attempts`` (after this failure)
``dead``                  ``key``, ``records``, ``error`` (the message stored on the records),
                          ``exception`` (what caused it: a ``MeisaAPIError``, a ``PayloadError``,
                          the ``TransportError`` that outlived the maximum age...)
``rate_limited``          ``key``, ``retry_after`` (seconds), ``error`` (the ``RateLimited``)
``auth_failed``           ``error`` (the ``AuthenticationFailed`` or ``PermissionDenied``),
                          ``released`` (how many objects were given back untouched)
========================  ========================================================================
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import NamedSignal, Namespace

__all__ = [
    "auth_failed",
    "dead",
    "enqueued",
    "namespace",
    "rate_limited",
    "retrying",
    "send_safely",
    "sent",
    "skipped",
]

logger = logging.getLogger(__name__)

namespace = Namespace()
"""The namespace all meisa-sync signals live in."""

enqueued = namespace.signal(
    "enqueued", doc="Change records were written to the outbox (in the saving transaction)."
)
sent = namespace.signal(
    "sent", doc="Meisa acknowledged a request; its records leave with the next ack group."
)
skipped = namespace.signal(
    "skipped", doc="Records were acknowledged without a request (nothing needed sending)."
)
retrying = namespace.signal(
    "retrying", doc="A request failed in a way worth retrying; its records wait for later."
)
dead = namespace.signal("dead", doc="Records were marked dead; they wait for `meisa-sync retry`.")
rate_limited = namespace.signal(
    "rate_limited", doc="Meisa answered 429: sending with this API key pauses for `retry_after`."
)
auth_failed = namespace.signal(
    "auth_failed", doc="Meisa refused the credentials (401/403): the worker pauses all sending."
)


def send_safely(signal: NamedSignal, sender: object, **kwargs: Any) -> None:
    """Send ``signal``; a failing receiver is logged, never raised into the sync path."""
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **kwargs)
        except Exception:
            # One broken receiver must neither stop the drain nor starve the other receivers.
            logger.exception("a receiver of the meisa-sync %r signal failed", signal.name)
