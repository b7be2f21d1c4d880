"""``DrainReport``: what a drain pass did, for logs, the CLI's exit code and tests."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["DrainReport"]


@dataclass
class DrainReport:
    """What a drain did. Counts are of objects (one request's worth) unless they say records.

    - ``objects``, ``records``: what was claimed and handled.
    - ``requests``: HTTP requests made, failed ones included.
    - ``sent``: objects Meisa acknowledged; ``acked_records``: records that left the outbox (sent or
      skipped).
    - ``unchanged``: objects whose payload equalled the last acknowledged one (no-op suppression).
    - ``skipped``: objects acknowledged without a request for another reason: ``should_sync`` said
      no, the object is gone, a delete found no contact.
    - ``coalesced_records``: records that rode along in another record's request.
    - ``retried``: objects put back for a backoff (5xx, transport errors, a failing source).
    - ``rate_limited``: objects put back after a 429, no attempt counted.
    - ``dead_records``: records marked dead (mapping errors, 400/404/409/413, maximum age).
    - ``lease_lost``: objects not sent because their lease had passed to another worker.
    - ``released``: objects given back untouched (shutdown, auth failure).
    - ``auth_failed``: Meisa refused the credentials (401/403), so the pass stopped.
    """

    objects: int = 0
    records: int = 0
    requests: int = 0
    sent: int = 0
    acked_records: int = 0
    unchanged: int = 0
    skipped: int = 0
    coalesced_records: int = 0
    retried: int = 0
    rate_limited: int = 0
    dead_records: int = 0
    lease_lost: int = 0
    released: int = 0
    auth_failed: bool = False

    def add(self, other: DrainReport) -> None:
        """Accumulate ``other`` into this report."""
        for item in fields(self):
            mine, theirs = getattr(self, item.name), getattr(other, item.name)
            setattr(self, item.name, (mine or theirs) if isinstance(mine, bool) else mine + theirs)

    def summary(self) -> str:
        """The report as one log line."""
        text = (
            f"{_count(self.objects, 'object')} ({_count(self.records, 'record')}): "
            f"{self.sent} sent in {_count(self.requests, 'request')}, {self.unchanged} unchanged, "
            f"{self.skipped} skipped, {_count(self.coalesced_records, 'record')} coalesced, "
            f"{self.retried} retried, {self.rate_limited} rate-limited, "
            f"{_count(self.dead_records, 'record')} dead"
        )
        if self.lease_lost or self.released:
            text += f", {_count(self.lease_lost, 'lease')} lost, {self.released} released"
        return text + (", AUTH FAILED" if self.auth_failed else "")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
