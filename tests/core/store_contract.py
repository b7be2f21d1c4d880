"""The outbox store conformance suite: every semantic of ``meisa_sync/store.py``, for any store.

Subclass ``StoreContract`` in a ``test_*.py`` module and provide a ``store`` fixture yielding an
empty store (closed afterwards)::

    class TestSQLAlchemyStore(StoreContract):
        @pytest.fixture
        def store(self, database_url: str) -> Iterator[OutboxStore]:
            ...

Time: the suite ages leases and dead records through two fixtures a subclass may override. By
default ``advance(delta)`` sleeps (so leases in these tests are short, ``SHORT_LEASE``) and
``now()`` is the wall clock; a store with an injectable clock overrides both with a fake clock
(``tests/core/test_memory_store.py`` does).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from meisa_sync.records import Ack, NewChange, ObjectKey, Operation, Priority, RecordState
from meisa_sync.store import OutboxStore

__all__ = ["LONG_LEASE", "SHORT_LEASE", "StoreContract", "make_changes"]

SHORT_LEASE = timedelta(seconds=0.3)
LONG_LEASE = timedelta(seconds=60)
# Long enough past SHORT_LEASE for a lease to be expired on every store, clock skew included.
PAST_SHORT_LEASE = timedelta(seconds=0.5)


def make_changes(
    count: int,
    *,
    model: str = "tests.User",
    start: int = 1,
    operation: Operation = Operation.UPSERT,
    priority: int = Priority.LIVE,
    extras: dict[str, Any] | None = None,
) -> list[NewChange]:
    """``count`` changes to objects ``start``, ``start + 1``, ... of ``model``."""
    return [
        NewChange(
            key=ObjectKey(model, str(pk)),
            operation=operation,
            identifiers={"external_id": str(pk)} if operation is Operation.DELETE else None,
            extras=extras,
            priority=priority,
        )
        for pk in range(start, start + count)
    ]


def key(pk: int, model: str = "tests.User") -> ObjectKey:
    return ObjectKey(model, str(pk))


class StoreContract:
    """Tests every ``OutboxStore`` must pass. Subclasses provide the ``store`` fixture."""

    @pytest.fixture
    def advance(self) -> Callable[[timedelta], None]:
        """Let ``delta`` of the store's time pass."""
        return lambda delta: time.sleep(delta.total_seconds())

    @pytest.fixture
    def now(self) -> Callable[[], datetime]:
        """The store's current time."""
        return lambda: datetime.now(timezone.utc)

    # -- enqueue and claim ---------------------------------------------------------------------

    def test_enqueue_returns_one_increasing_id_per_change(self, store: OutboxStore) -> None:
        first = store.enqueue(make_changes(3))
        second = store.enqueue(make_changes(2, start=10))
        assert len(first) == 3 and len(second) == 2
        ids = first + second
        assert ids == sorted(ids) and len(set(ids)) == 5

    def test_enqueue_nothing_is_a_no_op(self, store: OutboxStore) -> None:
        assert store.enqueue([]) == []
        assert store.stats().pending == 0

    def test_claim_returns_every_due_record_of_an_object_oldest_first(
        self, store: OutboxStore
    ) -> None:
        ids = store.enqueue(make_changes(1, extras={"plan": "free"}))
        ids += store.enqueue(make_changes(1, start=2))
        ids += store.enqueue(make_changes(1, extras={"churn_reason": "price"}))
        ids += store.enqueue(make_changes(1, operation=Operation.DELETE))

        claimed = {c.key: c for c in store.claim("w1", limit=10, lease=LONG_LEASE)}

        assert set(claimed) == {key(1), key(2)}
        user = claimed[key(1)]
        assert user.record_ids == (ids[0], ids[2], ids[3])
        assert [r.operation for r in user.records] == [
            Operation.UPSERT,
            Operation.UPSERT,
            Operation.DELETE,
        ]
        assert user.records[0].extras == {"plan": "free"}
        assert user.records[1].extras == {"churn_reason": "price"}
        assert user.records[2].identifiers == {"external_id": "1"}
        assert user.newest.id == ids[3]
        assert all(r.state is RecordState.PENDING and r.attempts == 0 for r in user.records)
        assert all(r.key == key(1) for r in user.records)
        assert user.last_payload_hash is None and user.remote_id is None

    def test_records_carry_aware_utc_timestamps(
        self, store: OutboxStore, now: Callable[[], datetime]
    ) -> None:
        before = now() - timedelta(seconds=5)
        store.enqueue(make_changes(1))
        (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        record = claimed.records[0]
        assert record.created_at.tzinfo is not None and record.available_at.tzinfo is not None
        assert before <= record.created_at <= now() + timedelta(seconds=5)

    def test_claim_orders_objects_by_best_priority_then_age(self, store: OutboxStore) -> None:
        store.enqueue(make_changes(2, start=1, priority=Priority.BACKFILL))
        store.enqueue(make_changes(2, start=3))
        # Object 2 also has a live change now: its best (priority, id) beats the backfill of 1.
        store.enqueue(make_changes(1, start=2))

        order = [c.key for c in store.claim("w1", limit=1, lease=LONG_LEASE)]
        order += [c.key for c in store.claim("w2", limit=2, lease=LONG_LEASE)]
        order += [c.key for c in store.claim("w3", limit=5, lease=LONG_LEASE)]

        assert order == [key(3), key(4), key(2), key(1)]

    def test_claim_takes_the_longest_due_first_within_a_priority(
        self, store: OutboxStore, now: Callable[[], datetime]
    ) -> None:
        store.enqueue(make_changes(2))
        first, second = store.claim("w1", limit=2, lease=LONG_LEASE)
        # Object 2 has been due for an hour (a retry dated back), object 1 only since its enqueue.
        store.retry(
            "w1",
            second.key,
            second.record_ids,
            available_at=now() - timedelta(hours=1),
            error="503",
        )
        store.release("w1", [first.key])

        order = [c.key for c in store.claim("w2", limit=2, lease=LONG_LEASE)]

        assert order == [key(2), key(1)]

    def test_records_backing_off_do_not_hold_back_due_ones(
        self, store: OutboxStore, now: Callable[[], datetime]
    ) -> None:
        store.enqueue(make_changes(3))
        store.enqueue(make_changes(1, start=4, priority=Priority.BACKFILL))
        later = now() + timedelta(hours=1)
        for claimed in store.claim("w1", limit=10, lease=LONG_LEASE):
            store.retry("w1", claimed.key, claimed.record_ids, available_at=later, error="503")
        store.enqueue(make_changes(1, start=5, priority=Priority.BACKFILL))
        store.enqueue(make_changes(1, start=6))

        order = [c.key for c in store.claim("w2", limit=10, lease=LONG_LEASE)]

        assert order == [key(6), key(5)]

    def test_claim_honours_the_limit(self, store: OutboxStore) -> None:
        store.enqueue(make_changes(5))
        first = store.claim("w1", limit=2, lease=LONG_LEASE)
        second = store.claim("w2", limit=2, lease=LONG_LEASE)
        third = store.claim("w3", limit=2, lease=LONG_LEASE)
        assert [len(first), len(second), len(third)] == [2, 2, 1]
        assert store.claim("w4", limit=2, lease=LONG_LEASE) == []

    def test_claim_on_an_empty_outbox_is_empty(self, store: OutboxStore) -> None:
        assert store.claim("w1", limit=10, lease=LONG_LEASE) == []

    def test_models_with_the_same_pk_are_different_objects(self, store: OutboxStore) -> None:
        store.enqueue(make_changes(1, model="tests.User") + make_changes(1, model="tests.Lead"))
        claimed = store.claim("w1", limit=10, lease=LONG_LEASE)
        assert {c.key for c in claimed} == {key(1), key(1, "tests.Lead")}
        assert all(len(c.records) == 1 for c in claimed)

    # -- one object, one worker ----------------------------------------------------------------

    def test_a_leased_object_is_not_claimed_by_another_worker(self, store: OutboxStore) -> None:
        store.enqueue(make_changes(2))
        store.claim("w1", limit=2, lease=LONG_LEASE)
        store.enqueue(make_changes(1))  # a new change to object 1 while w1 holds it
        assert store.claim("w2", limit=10, lease=LONG_LEASE) == []

    def test_records_enqueued_during_a_claim_wait_for_the_ack(self, store: OutboxStore) -> None:
        (old,) = store.enqueue(make_changes(1))
        (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        (new,) = store.enqueue(make_changes(1))
        assert store.claim("w2", limit=1, lease=LONG_LEASE) == []

        store.ack("w1", claimed.key, claimed.record_ids, payload_hash="h1")

        (again,) = store.claim("w2", limit=1, lease=LONG_LEASE)
        assert claimed.record_ids == (old,)
        assert again.record_ids == (new,)

    def test_an_expired_lease_is_free_to_claim(
        self, store: OutboxStore, advance: Callable[[timedelta], None]
    ) -> None:
        store.enqueue(make_changes(1))
        (first,) = store.claim("w1", limit=1, lease=SHORT_LEASE)
        advance(PAST_SHORT_LEASE)

        (second,) = store.claim("w2", limit=1, lease=LONG_LEASE)

        assert second.record_ids == first.record_ids
        assert second.records[0].attempts == 0  # a lost worker costs no attempt
        assert store.renew("w1", [first.key], LONG_LEASE) == set()
        assert store.renew("w2", [first.key], LONG_LEASE) == {first.key}

    def test_renew_extends_only_leases_the_worker_holds(
        self, store: OutboxStore, advance: Callable[[timedelta], None]
    ) -> None:
        store.enqueue(make_changes(2))
        claimed = store.claim("w1", limit=2, lease=SHORT_LEASE)
        keys = [c.key for c in claimed]

        assert store.renew("w1", keys, LONG_LEASE) == set(keys)
        assert store.renew("w2", keys, LONG_LEASE) == set()
        assert store.renew("w1", [key(99)], LONG_LEASE) == set()
        advance(PAST_SHORT_LEASE)

        assert store.claim("w2", limit=2, lease=LONG_LEASE) == []
        assert store.renew("w1", keys, LONG_LEASE) == set(keys)

    def test_an_expired_lease_cannot_be_renewed(
        self, store: OutboxStore, advance: Callable[[timedelta], None]
    ) -> None:
        store.enqueue(make_changes(1))
        (claimed,) = store.claim("w1", limit=1, lease=SHORT_LEASE)
        advance(PAST_SHORT_LEASE)
        assert store.renew("w1", [claimed.key], LONG_LEASE) == set()

    def test_a_late_answer_does_not_free_the_new_holders_lease(
        self,
        store: OutboxStore,
        now: Callable[[], datetime],
        advance: Callable[[timedelta], None],
    ) -> None:
        store.enqueue(make_changes(1))
        (lost,) = store.claim("w1", limit=1, lease=SHORT_LEASE)
        advance(PAST_SHORT_LEASE)
        (taken,) = store.claim("w2", limit=1, lease=LONG_LEASE)
        store.enqueue(make_changes(1))

        # w1's request finally failed; it retries what it had. w2 still holds the object.
        store.retry("w1", lost.key, lost.record_ids, available_at=now(), error="x")
        store.release("w1", [lost.key])

        assert store.claim("w3", limit=1, lease=LONG_LEASE) == []
        assert store.renew("w2", [taken.key], LONG_LEASE) == {taken.key}

    def test_release_gives_the_lease_back_untouched(self, store: OutboxStore) -> None:
        store.enqueue(make_changes(2))
        claimed = store.claim("w1", limit=2, lease=LONG_LEASE)
        store.release("w1", [c.key for c in claimed])

        again = store.claim("w2", limit=2, lease=LONG_LEASE)

        assert {c.key for c in again} == {c.key for c in claimed}
        assert all(r.attempts == 0 and r.last_error is None for c in again for r in c.records)

    def test_release_by_another_worker_changes_nothing(self, store: OutboxStore) -> None:
        store.enqueue(make_changes(1))
        (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        store.release("w2", [claimed.key])
        assert store.claim("w2", limit=1, lease=LONG_LEASE) == []

    # -- ack -----------------------------------------------------------------------------------

    def test_ack_deletes_the_records_and_remembers_the_payload(self, store: OutboxStore) -> None:
        store.enqueue(make_changes(1))
        (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        store.ack(
            "w1",
            claimed.key,
            claimed.record_ids,
            payload_hash="a" * 64,
            payload='{"external_id":"1"}',
            remote_id="contact-1",
        )
        assert store.stats().pending == 0
        assert store.claim("w2", limit=1, lease=LONG_LEASE) == []

        store.enqueue(make_changes(1))
        (next_claim,) = store.claim("w2", limit=1, lease=LONG_LEASE)
        assert next_claim.last_payload_hash == "a" * 64
        assert next_claim.remote_id == "contact-1"

    def test_ack_deletes_only_the_given_records(self, store: OutboxStore) -> None:
        first, second = store.enqueue(make_changes(1) + make_changes(1))
        (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        store.ack("w1", claimed.key, [first], payload_hash="h1")

        (again,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        assert again.record_ids == (second,)
        assert again.last_payload_hash == "h1"

    def test_ack_ignores_ids_of_other_objects(self, store: OutboxStore) -> None:
        (_, other) = store.enqueue(make_changes(2))
        (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        store.ack("w1", claimed.key, [*claimed.record_ids, other], payload_hash="h")
        assert store.stats().pending == 1

    def test_ack_without_a_hash_forgets_the_last_payload(self, store: OutboxStore) -> None:
        store.enqueue(make_changes(1))
        (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        store.ack("w1", claimed.key, claimed.record_ids, payload_hash="h1", payload="{}")
        store.enqueue(make_changes(1, operation=Operation.DELETE))
        (deleted,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        store.ack("w1", deleted.key, deleted.record_ids, payload_hash=None)

        store.enqueue(make_changes(1))
        (recreated,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        assert recreated.last_payload_hash is None

    # -- ack_many ------------------------------------------------------------------------------

    def test_ack_many_acknowledges_every_object_with_its_own_state(
        self, store: OutboxStore
    ) -> None:
        store.enqueue(make_changes(3) + make_changes(1))  # object 1 has two records
        claimed = store.claim("w1", limit=3, lease=LONG_LEASE)
        store.ack_many(
            "w1",
            [
                Ack(c.key, c.record_ids, f"h{c.key.pk}", f'{{"n":{c.key.pk}}}', f"c{c.key.pk}")
                for c in claimed
            ],
        )
        assert store.stats().pending == 0
        assert store.stats().in_flight == 0

        store.enqueue(make_changes(3))
        again = {c.key: c for c in store.claim("w2", limit=3, lease=LONG_LEASE)}
        assert {k: (c.last_payload_hash, c.remote_id) for k, c in again.items()} == {
            key(pk): (f"h{pk}", f"c{pk}") for pk in (1, 2, 3)
        }

    def test_ack_many_deletes_only_the_given_records_of_each_object(
        self, store: OutboxStore
    ) -> None:
        first, other = store.enqueue(make_changes(2))
        (second,) = store.enqueue(make_changes(1))
        claimed = store.claim("w1", limit=1, lease=LONG_LEASE)
        assert [c.record_ids for c in claimed] == [(first, second)]
        (late,) = store.enqueue(make_changes(1))  # arrived while the request was in flight

        # ``other`` belongs to object 2: an ack for object 1 must leave it alone.
        store.ack_many("w1", [Ack(key(1), (first, other), "h1")])

        pending = {c.key: c.record_ids for c in store.claim("w1", limit=2, lease=LONG_LEASE)}
        assert pending == {key(1): (second, late), key(2): (other,)}

    def test_ack_many_frees_only_the_leases_the_worker_still_holds(
        self, store: OutboxStore, advance: Callable[[timedelta], None]
    ) -> None:
        store.enqueue(make_changes(2))
        lost, kept = store.claim("w1", limit=2, lease=SHORT_LEASE)
        advance(PAST_SHORT_LEASE)
        (taken,) = store.claim("w2", limit=1, lease=LONG_LEASE)
        assert taken.key == lost.key
        store.renew("w1", [kept.key], LONG_LEASE)

        # w1's answers arrive late for the object w2 took over, on time for the other.
        store.ack_many("w1", [Ack(c.key, c.record_ids, "h") for c in (lost, kept)])

        assert store.renew("w2", [taken.key], LONG_LEASE) == {taken.key}
        store.enqueue(make_changes(2))
        assert [c.key for c in store.claim("w3", limit=2, lease=LONG_LEASE)] == [kept.key]

    def test_ack_many_without_a_hash_forgets_the_payload_but_keeps_the_contact_id(
        self, store: OutboxStore
    ) -> None:
        store.enqueue(make_changes(2))
        claimed = store.claim("w1", limit=2, lease=LONG_LEASE)
        store.ack_many("w1", [Ack(c.key, c.record_ids, "h1", "{}", "c1") for c in claimed])
        store.enqueue(make_changes(1, operation=Operation.DELETE) + make_changes(1, start=2))
        deleted, changed = store.claim("w1", limit=2, lease=LONG_LEASE)

        store.ack_many(
            "w1",
            [
                Ack(deleted.key, deleted.record_ids, payload_hash=None, payload="ignored"),
                Ack(changed.key, changed.record_ids, "h2", "{}"),
            ],
        )

        store.enqueue(make_changes(2))
        again = {c.key: c for c in store.claim("w1", limit=2, lease=LONG_LEASE)}
        assert (again[key(1)].last_payload_hash, again[key(1)].remote_id) == (None, "c1")
        assert (again[key(2)].last_payload_hash, again[key(2)].remote_id) == ("h2", "c1")

    def test_ack_many_of_objects_never_claimed(self, store: OutboxStore) -> None:
        ids = store.enqueue(make_changes(2))
        store.ack_many("w1", [Ack(key(1), (ids[0],), "h1"), Ack(key(2), (ids[1],), "h2")])
        assert store.stats().pending == 0
        store.enqueue(make_changes(2))
        hashes = {c.key: c.last_payload_hash for c in store.claim("w1", limit=2, lease=LONG_LEASE)}
        assert hashes == {key(1): "h1", key(2): "h2"}

    def test_ack_many_acks_of_one_object_apply_in_order(self, store: OutboxStore) -> None:
        first, second = store.enqueue(make_changes(1) + make_changes(1))
        store.claim("w1", limit=1, lease=LONG_LEASE)
        store.ack_many(
            "w1",
            [
                Ack(key(1), (first,), "h1", "{}", remote_id="c1"),
                Ack(key(1), (second,), "h2", "{}", remote_id=None),
            ],
        )
        assert store.stats().pending == 0
        store.enqueue(make_changes(1))
        (again,) = store.claim("w2", limit=1, lease=LONG_LEASE)
        assert (again.last_payload_hash, again.remote_id) == ("h2", "c1")

    def test_ack_many_of_an_object_with_many_records(self, store: OutboxStore) -> None:
        ids = store.enqueue(make_changes(1) * 1200 + make_changes(1, start=2))
        (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        assert len(claimed.record_ids) == 1200
        store.ack_many("w1", [Ack(claimed.key, claimed.record_ids, "h")])
        (rest,) = store.claim("w1", limit=2, lease=LONG_LEASE)
        assert rest.record_ids == (ids[-1],)

    def test_ack_many_of_nothing_is_a_no_op(self, store: OutboxStore) -> None:
        store.enqueue(make_changes(1))
        store.ack_many("w1", [])
        assert store.stats().pending == 1

    # -- retry ---------------------------------------------------------------------------------

    def test_retry_counts_an_attempt_and_keeps_the_error(
        self, store: OutboxStore, now: Callable[[], datetime]
    ) -> None:
        store.enqueue(make_changes(1))
        (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        store.retry(
            "w1", claimed.key, claimed.record_ids, available_at=now(), error="503 unavailable"
        )

        (again,) = store.claim("w2", limit=1, lease=LONG_LEASE)
        assert again.records[0].attempts == 1
        assert again.records[0].last_error == "503 unavailable"
        assert again.records[0].state is RecordState.PENDING

    def test_retry_without_counting_an_attempt(
        self, store: OutboxStore, now: Callable[[], datetime]
    ) -> None:
        store.enqueue(make_changes(1))
        (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        store.retry(
            "w1",
            claimed.key,
            claimed.record_ids,
            available_at=now(),
            error="429 rate_limited",
            count_attempt=False,
        )
        (again,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        assert again.records[0].attempts == 0
        assert again.records[0].last_error == "429 rate_limited"

    def test_a_retried_record_waits_until_it_is_due(
        self,
        store: OutboxStore,
        now: Callable[[], datetime],
        advance: Callable[[timedelta], None],
    ) -> None:
        store.enqueue(make_changes(2))
        claimed = store.claim("w1", limit=2, lease=LONG_LEASE)
        later, soon = claimed
        store.retry(
            "w1", later.key, later.record_ids, available_at=now() + timedelta(hours=1), error="e"
        )
        store.retry("w1", soon.key, soon.record_ids, available_at=now() + SHORT_LEASE, error="e")

        assert store.claim("w2", limit=2, lease=LONG_LEASE) == []
        assert store.stats().pending == 2
        advance(PAST_SHORT_LEASE)

        assert [c.key for c in store.claim("w2", limit=2, lease=LONG_LEASE)] == [soon.key]

    def test_only_due_records_are_claimed_with_their_object(
        self, store: OutboxStore, now: Callable[[], datetime]
    ) -> None:
        store.enqueue(make_changes(1))
        (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        store.retry(
            "w1",
            claimed.key,
            claimed.record_ids,
            available_at=now() + timedelta(hours=1),
            error="e",
        )
        (fresh,) = store.enqueue(make_changes(1))
        (again,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        assert again.record_ids == (fresh,)

    # -- dead, requeue, purge ------------------------------------------------------------------

    def test_dead_records_are_kept_and_listed_newest_first(self, store: OutboxStore) -> None:
        ids = store.enqueue(make_changes(3))
        for claimed in store.claim("w1", limit=3, lease=LONG_LEASE):
            store.dead("w1", claimed.key, claimed.record_ids, error=f"400 bad {claimed.key.pk}")

        assert store.claim("w2", limit=3, lease=LONG_LEASE) == []
        dead = store.list_dead()
        assert [r.id for r in dead] == sorted(ids, reverse=True)
        assert all(r.state is RecordState.DEAD for r in dead)
        assert [r.last_error for r in dead] == ["400 bad 3", "400 bad 2", "400 bad 1"]
        assert [r.id for r in store.list_dead(limit=2)] == sorted(ids, reverse=True)[:2]

    def test_dead_marks_only_the_given_records(self, store: OutboxStore) -> None:
        first, second = store.enqueue(make_changes(1) + make_changes(1))
        (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        store.dead("w1", claimed.key, [first], error="bad")
        (again,) = store.claim("w2", limit=1, lease=LONG_LEASE)
        assert again.record_ids == (second,)

    def test_requeue_makes_dead_records_pending_and_due(self, store: OutboxStore) -> None:
        ids = store.enqueue(make_changes(3))
        for claimed in store.claim("w1", limit=3, lease=LONG_LEASE):
            store.dead("w1", claimed.key, claimed.record_ids, error="bad")

        assert store.requeue([ids[0]]) == 1
        (first,) = store.claim("w2", limit=3, lease=LONG_LEASE)
        assert first.record_ids == (ids[0],)
        assert first.records[0].state is RecordState.PENDING

        assert store.requeue() == 2
        assert store.requeue() == 0
        assert {c.key for c in store.claim("w3", limit=3, lease=LONG_LEASE)} == {key(2), key(3)}
        assert store.list_dead() == []

    def test_requeue_leaves_pending_records_alone(self, store: OutboxStore) -> None:
        ids = store.enqueue(make_changes(2))
        assert store.requeue(ids) == 0
        assert store.stats().pending == 2

    def test_purge_deletes_only_dead_records(self, store: OutboxStore) -> None:
        ids = store.enqueue(make_changes(3))
        claimed = store.claim("w1", limit=2, lease=LONG_LEASE)
        for c in claimed:
            store.dead("w1", c.key, c.record_ids, error="bad")

        assert store.purge(record_ids=[ids[0], ids[2]]) == 1  # ids[2] is pending
        assert [r.id for r in store.list_dead()] == [ids[1]]
        assert store.purge() == 1
        assert store.list_dead() == []
        assert store.stats().pending == 1

    def test_purge_older_than(
        self, store: OutboxStore, advance: Callable[[timedelta], None]
    ) -> None:
        store.enqueue(make_changes(1))
        (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        store.dead("w1", claimed.key, claimed.record_ids, error="bad")
        advance(PAST_SHORT_LEASE)
        (new,) = store.enqueue(make_changes(1, start=2))
        (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        store.dead("w1", claimed.key, claimed.record_ids, error="bad")

        assert store.purge(older_than=timedelta(hours=1)) == 0
        assert store.purge(older_than=SHORT_LEASE) == 1
        assert [r.id for r in store.list_dead()] == [new]

    # -- stats ---------------------------------------------------------------------------------

    def test_stats_of_an_empty_outbox(self, store: OutboxStore) -> None:
        stats = store.stats()
        assert (stats.pending, stats.in_flight, stats.dead) == (0, 0, 0)
        assert stats.oldest_pending_age is None
        assert stats.last_errors == ()

    def test_stats_count_records_by_state(
        self, store: OutboxStore, advance: Callable[[timedelta], None]
    ) -> None:
        store.enqueue(make_changes(1) + make_changes(1))  # object 1: two records
        advance(PAST_SHORT_LEASE)
        store.enqueue(make_changes(3, start=2))
        (held,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        assert held.key == key(1)
        dead_ones = store.claim("w2", limit=2, lease=LONG_LEASE)
        for c in dead_ones:
            store.dead("w2", c.key, c.record_ids, error=f"409 conflict {c.key.pk}")

        stats = store.stats(last_errors=1)

        assert stats.pending == 3  # object 1's two (in flight) and object 4's one
        assert stats.in_flight == 2
        assert stats.dead == 2
        assert stats.oldest_pending_age is not None
        assert PAST_SHORT_LEASE <= stats.oldest_pending_age < timedelta(minutes=5)
        assert [r.last_error for r in stats.last_errors] == ["409 conflict 3"]
        assert len(store.stats().last_errors) == 2

    # -- concurrency ---------------------------------------------------------------------------

    @pytest.mark.parametrize("grouped", [False, True], ids=["ack", "ack_many"])
    def test_concurrent_workers_never_hold_the_same_object(
        self, store: OutboxStore, grouped: bool
    ) -> None:
        objects, per_object, workers = 30, 3, 4
        expected = set()
        for _ in range(per_object):
            expected.update(store.enqueue(make_changes(objects)))
        held: dict[ObjectKey, str] = {}
        acked: list[int] = []
        overlaps: list[ObjectKey] = []
        errors: list[BaseException] = []
        guard = threading.Lock()

        def work(worker_id: str) -> None:
            try:
                while claimed := store.claim(worker_id, limit=4, lease=LONG_LEASE):
                    with guard:
                        for c in claimed:
                            if c.key in held:
                                overlaps.append(c.key)
                            held[c.key] = worker_id
                    time.sleep(0.001)
                    with guard:
                        for c in claimed:
                            del held[c.key]
                            acked.extend(c.record_ids)
                    if grouped:
                        store.ack_many(worker_id, [Ack(c.key, c.record_ids, "h") for c in claimed])
                    else:
                        for c in claimed:
                            store.ack(worker_id, c.key, c.record_ids, payload_hash="h")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert errors == []
        assert overlaps == []
        assert sorted(acked) == sorted(expected)
        assert store.stats().pending == 0
