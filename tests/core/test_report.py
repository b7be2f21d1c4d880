"""``DrainReport``: accumulation and the one-line summary the worker logs."""

from __future__ import annotations

from meisa_sync import DrainReport


def test_summary_counts_in_words() -> None:
    report = DrainReport(objects=1, records=1, requests=1, sent=1, acked_records=1)
    assert report.summary() == (
        "1 object (1 record): 1 sent in 1 request, 0 unchanged, 0 skipped, 0 records coalesced, "
        "0 retried, 0 rate-limited, 0 records dead"
    )


def test_summary_of_a_busy_pass() -> None:
    report = DrainReport(
        objects=3, records=9, requests=4, sent=2, coalesced_records=6, retried=1, dead_records=1
    )
    report.add(DrainReport(lease_lost=1, released=2, auth_failed=True))
    assert report.summary() == (
        "3 objects (9 records): 2 sent in 4 requests, 0 unchanged, 0 skipped, 6 records coalesced, "
        "1 retried, 0 rate-limited, 1 record dead, 1 lease lost, 2 released, AUTH FAILED"
    )
