"""The drain worker on the in-memory twins: planning, coalescing, suppression, failure classes."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import httpx
import pytest

from meisa_sync import signals
from meisa_sync.acking import AckWriter
from meisa_sync.memory import InMemoryStore
from meisa_sync.records import Ack, ClaimedObject, NewChange, ObjectKey, Priority, RecordState
from meisa_sync.retry import RetryPolicy
from meisa_sync.worker import Worker
from tests.core.sync_helpers import (
    USER,
    FakeClock,
    MemoryApp,
    ScriptedMeisa,
    User,
    broken_connection,
    build_app,
    error,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mem(clock: FakeClock) -> MemoryApp:
    return build_app(clock)


@pytest.fixture
def meisa() -> ScriptedMeisa:
    return ScriptedMeisa()


@pytest.fixture
def worker(mem: MemoryApp, meisa: ScriptedMeisa, clock: FakeClock) -> Iterator[Worker]:
    with (
        meisa.client() as client,
        Worker(
            mem.sync_app, client, worker_id="w1", clock=clock, random=lambda: 0.5, concurrency=4
        ) as worker,
    ):
        yield worker


def received(name: str) -> list[dict[str, Any]]:
    """Connect a recorder to a signal for the rest of the test (blinker keeps weak refs)."""
    calls: list[dict[str, Any]] = []

    def receiver(sender: object, **kwargs: Any) -> None:
        calls.append({"sender": sender, **kwargs})

    getattr(signals, name).connect(receiver)
    received.keep.append(receiver)  # type: ignore[attr-defined]
    return calls


received.keep = []  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _disconnect_receivers() -> Iterator[None]:
    yield
    for receiver in received.keep:  # type: ignore[attr-defined]
        for name in ("sent", "skipped", "retrying", "dead", "rate_limited", "auth_failed"):
            getattr(signals, name).disconnect(receiver)
    received.keep.clear()  # type: ignore[attr-defined]


# -- the happy path --------------------------------------------------------------------------------


def test_sends_the_current_state_and_acks(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa
) -> None:
    key = mem.save(User(1, "Ada@Example.com", plan="free"))
    mem.source.put(
        USER, 1, User(1, "ada@example.com", plan="pro")
    )  # changed again before the drain

    report = worker.run_once()

    assert meisa.bodies == [
        {
            "email": "ada@example.com",
            "external_id": "1",
            "first_name": "Ada",
            "custom_fields": {"plan": "pro"},
        }
    ]
    assert (report.objects, report.requests, report.sent, report.acked_records) == (1, 1, 1, 1)
    assert mem.store.records() == []
    assert mem.store.remote_id(key) == "contact-1"
    assert mem.store.last_payload(key) == (
        '{"custom_fields":{"plan":"pro"},"email":"ada@example.com","external_id":"1",'
        '"first_name":"Ada"}'
    )


def test_the_idempotency_key_is_the_newest_record_and_the_payload_hash(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa
) -> None:
    mem.save(User(1, "a@example.com"))
    mem.save(User(1, "a@example.com"))
    newest = mem.store.records()[-1].id

    worker.run_once()

    (_, _, headers) = meisa.requests[0]
    record_id, _, digest = headers["idempotency-key"].partition("-")
    assert record_id == str(newest)
    assert len(digest) == 16 and int(digest, 16) >= 0


def test_changes_to_one_object_coalesce_into_one_request(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa
) -> None:
    user = User(1, "a@example.com")
    mem.save(user, extras={"upgraded_at": "2026-01-01", "churn_reason": None})
    mem.save(user, extras={"churn_reason": "price"})
    mem.save(user)
    mem.save(User(2, "b@example.com"))

    report = worker.run_once()

    assert len(meisa.requests) == 2
    first = next(body for body in meisa.bodies if body["external_id"] == "1")
    assert first["custom_fields"] == {
        "plan": "free",
        "upgraded_at": "2026-01-01",
        "churn_reason": "price",
    }
    assert (report.objects, report.records, report.coalesced_records) == (2, 4, 2)
    assert report.acked_records == 4


def test_an_unchanged_payload_is_not_sent_again(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa
) -> None:
    skipped = received("skipped")
    user = User(1, "a@example.com")
    mem.save(user)
    worker.run_once()
    mem.save(user)
    mem.save(user)

    report = worker.run_once()

    assert len(meisa.requests) == 1
    assert (report.requests, report.unchanged, report.acked_records) == (0, 1, 2)
    assert mem.store.records() == []
    assert [call["reason"].value for call in skipped] == ["unchanged"]

    user.plan = "pro"
    mem.save(user)
    assert worker.run_once().sent == 1
    assert meisa.bodies[-1]["custom_fields"] == {"plan": "pro"}


def test_should_sync_false_acks_without_sending(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa
) -> None:
    mem.save(User(1, "staff@example.com", is_staff=True))
    report = worker.run_once()
    assert meisa.requests == []
    assert (report.skipped, report.acked_records) == (1, 1)
    assert mem.store.records() == []


def test_an_object_gone_since_its_upsert_is_acked(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa
) -> None:
    mem.save(User(1, "a@example.com"))
    mem.source.remove(USER, 1)
    report = worker.run_once()
    assert meisa.requests == []
    assert report.skipped == 1 and mem.store.records() == []


def test_a_delete_erases_the_contact_by_its_captured_identifiers(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa
) -> None:
    user = User(1, "a@example.com")
    key = mem.save(user)
    worker.run_once()
    mem.save(user)
    mem.delete(user)  # the newest operation wins

    report = worker.run_once()

    path, body, _ = meisa.requests[-1]
    assert path == "/api/v1/contacts/delete/"
    assert body == {"email": "a@example.com", "external_id": "1"}
    assert report.sent == 1 and mem.store.records() == []
    # The contact is gone: a new user with the same pk is sent in full again.
    mem.save(user)
    worker.run_once()
    assert meisa.requests[-1][0] == "/api/v1/contacts/upsert/"
    assert mem.store.last_payload(key) is not None


def test_a_delete_that_finds_no_contact_is_done(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa
) -> None:
    mem.delete(User(1, "a@example.com"))
    meisa.script.append(error(404, "not_found", "no contact with these identifiers"))
    report = worker.run_once()
    assert (report.requests, report.skipped, report.dead_records) == (1, 1, 0)
    assert mem.store.records() == []


def test_live_changes_go_before_backfill(clock: FakeClock, mem: MemoryApp) -> None:
    meisa = ScriptedMeisa()
    mem.save(User(1, "a@example.com"), priority=Priority.BACKFILL)
    mem.save(User(2, "b@example.com"), priority=Priority.BACKFILL)
    mem.save(User(3, "c@example.com"))
    with (
        meisa.client() as client,
        Worker(mem.sync_app, client, batch_size=1, concurrency=1, clock=clock) as worker,
    ):
        worker.run_once()
    assert [body["external_id"] for body in meisa.bodies] == ["3", "1", "2"]


def test_the_source_loads_each_model_once_per_batch(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa
) -> None:
    for pk in range(10):
        mem.save(User(pk, f"u{pk}@example.com"))
    loads = mem.source.loads
    worker.run_once()
    assert mem.source.loads == loads + 1
    assert len(meisa.requests) == 10


def test_requests_run_concurrently_up_to_the_limit(mem: MemoryApp, clock: FakeClock) -> None:
    import threading

    arrived = threading.Barrier(3, timeout=10)
    meisa = ScriptedMeisa(during=lambda request: arrived.wait())
    for pk in range(6):
        mem.save(User(pk, f"u{pk}@example.com"))
    with meisa.client() as client, Worker(mem.sync_app, client, concurrency=3, clock=clock) as w:
        report = w.run_once()
    # Three requests met inside the server at once, and never more than three.
    assert meisa.in_flight_peak == 3
    assert report.sent == 6


# -- mapping errors --------------------------------------------------------------------------------


def test_a_mapping_error_kills_that_object_only(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa
) -> None:
    dead = received("dead")
    bad = mem.save(User(1, "not-an-email"))
    mem.save(User(2, "b@example.com"))

    report = worker.run_once()

    assert [body["external_id"] for body in meisa.bodies] == ["2"]
    (record,) = mem.store.list_dead()
    assert record.key == bad and record.last_error is not None
    assert record.last_error.startswith("email:")
    assert report.dead_records == 1 and report.sent == 1
    assert dead[0]["key"] == bad and dead[0]["error"] == record.last_error


def test_a_model_without_a_mapping_is_dead_with_a_hint(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa
) -> None:
    from meisa_sync.records import NewChange

    mem.store.enqueue([NewChange(ObjectKey("tests.Lead", "1"))])
    worker.run_once()
    (record,) = mem.store.list_dead()
    assert record.last_error is not None and "no mapping registered" in record.last_error


def test_a_failing_source_retries_the_batch(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa, clock: FakeClock
) -> None:
    class FailingSource:
        def load(self, model: str, pks: Sequence[str], mapping: object) -> dict[str, object]:
            raise ConnectionError("database went away")

    mem.save(User(1, "a@example.com"))
    mem.sync_app.source = FailingSource()
    report = worker.run_once()
    (record,) = mem.store.records()
    assert report.retried == 1 and record.attempts == 1
    assert record.last_error == "ConnectionError: database went away"
    assert meisa.requests == []


# -- failures from Meisa ---------------------------------------------------------------------------


def test_429_waits_retry_after_without_counting_an_attempt(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa, clock: FakeClock
) -> None:
    limited = received("rate_limited")
    mem.save(User(1, "a@example.com"))
    meisa.script.append(error(429, "rate_limited", "slow down", **{"Retry-After": "7"}))

    report = worker.run_once()

    (record,) = mem.store.records()
    assert record.state is RecordState.PENDING and record.attempts == 0
    assert record.available_at == clock() + timedelta(seconds=7)
    assert report.rate_limited == 1 and report.requests == 1
    assert limited[0]["retry_after"] == 7 and limited[0]["sender"] is worker

    clock.advance(timedelta(seconds=7))
    assert worker.run_once().sent == 1


def test_a_429_pauses_the_pacer(mem: MemoryApp, clock: FakeClock) -> None:
    from meisa_sync.pacing import Pacer

    pacer = Pacer()
    meisa = ScriptedMeisa(script=[error(429, "rate_limited", "slow down", **{"Retry-After": "30"})])
    mem.save(User(1, "a@example.com"))
    with meisa.client() as client, Worker(mem.sync_app, client, pacer=pacer, clock=clock) as w:
        w.run_once()
    assert 25 < pacer.wait_time() <= 30


@pytest.mark.parametrize(
    "answer",
    [error(500, "internal_error", "boom"), error(503, "unavailable", "later"), broken_connection],
    ids=["500", "503", "transport"],
)
def test_server_and_transport_errors_back_off_with_jitter(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa, clock: FakeClock, answer: Any
) -> None:
    retrying = received("retrying")
    mem.save(User(1, "a@example.com"))
    for attempt in range(3):
        meisa.script.append(answer)
        report = worker.run_once()
        (record,) = mem.store.records()
        assert report.retried == 1 and record.attempts == attempt + 1
        # random() is 0.5: half of min(cap, base * 2**attempts).
        delay = record.available_at - clock()
        assert delay == timedelta(seconds=0.5 * 2**attempt)
        assert retrying[-1]["delay"] == 0.5 * 2**attempt
        assert retrying[-1]["attempts"] == attempt + 1
        clock.advance(delay)

    assert worker.run_once().sent == 1
    assert mem.store.records() == []


def test_the_jitter_stays_within_the_bounds(mem: MemoryApp, clock: FakeClock) -> None:
    import random

    rng = random.Random(7)
    delays = []
    meisa = ScriptedMeisa()
    mem.save(User(1, "a@example.com"))
    with (
        meisa.client() as client,
        Worker(mem.sync_app, client, clock=clock, random=rng.random) as worker,
    ):
        for attempt in range(12):
            meisa.script.append(error(502, "bad_gateway", "upstream"))
            worker.run_once()
            (record,) = mem.store.records()
            delay = (record.available_at - clock()).total_seconds()
            assert 0 <= delay <= min(300, 2**attempt)
            delays.append(delay)
            clock.advance(timedelta(seconds=delay))
    assert len(set(delays)) == len(delays)  # jittered, not fixed


def test_a_change_is_dead_after_the_maximum_age(mem: MemoryApp, clock: FakeClock) -> None:
    dead = received("dead")
    meisa = ScriptedMeisa(script=[error(503, "unavailable", "later")] * 2)
    mem.save(User(1, "a@example.com"))
    policy = RetryPolicy(max_age=timedelta(hours=1))
    with (
        meisa.client() as client,
        Worker(
            mem.sync_app, client, clock=clock, retry_policy=policy, random=lambda: 0.0
        ) as worker,
    ):
        assert worker.run_once().retried == 1
        clock.advance(timedelta(hours=1))
        report = worker.run_once()
    (record,) = mem.store.list_dead()
    assert report.dead_records == 1
    assert record.last_error is not None
    assert "maximum age" in record.last_error and "503 unavailable: later" in record.last_error
    assert dead[0]["exception"].status_code == 503


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "validation_error"),
        (404, "not_found"),
        (409, "identifier_conflict"),
        (413, "payload_too_large"),
    ],
)
def test_refusals_are_dead_at_once_with_the_message(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa, status: int, code: str
) -> None:
    mem.save(User(1, "a@example.com"))
    mem.save(User(2, "b@example.com"))
    meisa.script.append(error(status, code, "the server's own words"))

    report = worker.run_once()

    (record,) = mem.store.list_dead()
    assert record.last_error == f"{status} {code}: the server's own words"
    assert record.attempts == 0
    assert report.dead_records == 1 and report.sent == 1


@pytest.mark.parametrize(
    ("status", "code"), [(401, "invalid_api_key"), (403, "insufficient_scope")]
)
def test_auth_failures_stop_the_pass_and_leave_records_untouched(
    mem: MemoryApp, clock: FakeClock, status: int, code: str
) -> None:
    failed = received("auth_failed")
    meisa = ScriptedMeisa(script=[error(status, code, "refused")] * 50)
    for pk in range(5):
        mem.save(User(pk, f"u{pk}@example.com"))
    with (
        meisa.client() as client,
        Worker(mem.sync_app, client, batch_size=2, concurrency=1, clock=clock) as worker,
    ):
        report = worker.run_once()

    # The pass stopped at the first refusal; what it held (its batch, and the next one if that
    # was claimed already, as batches overlap) went back untouched.
    assert report.auth_failed and report.requests == 1
    assert report.objects in {2, 4} and report.released == report.objects
    assert len(meisa.requests) == 1
    assert all(r.attempts == 0 and r.last_error is None for r in mem.store.records())
    assert len(mem.store.records()) == 5
    assert mem.store.stats().in_flight == 0  # released, so another worker could take them
    assert failed[0]["error"].status_code == status and failed[0]["released"] == report.released
    assert len(failed) == 1


# -- leases ----------------------------------------------------------------------------------------


def test_records_of_a_dead_worker_are_reclaimed_after_the_lease(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa, clock: FakeClock
) -> None:
    mem.save(User(1, "a@example.com"))
    mem.store.claim("crashed", limit=10, lease=timedelta(seconds=60))

    assert worker.run_once().objects == 0
    clock.advance(timedelta(seconds=61))
    assert worker.run_once().sent == 1


def test_an_object_whose_lease_was_lost_is_not_sent(mem: MemoryApp, clock: FakeClock) -> None:
    def steal_the_others(request: httpx.Request) -> None:
        # While the first request runs, the lease runs out and another worker takes the rest.
        if len(meisa.requests) == 1:
            clock.advance(timedelta(seconds=61))
            stolen.extend(mem.store.claim("w2", limit=10, lease=timedelta(seconds=60)))

    stolen: list[Any] = []
    meisa = ScriptedMeisa(during=steal_the_others)
    mem.save(User(1, "a@example.com"))
    mem.save(User(2, "b@example.com"))
    with (
        meisa.client() as client,
        Worker(mem.sync_app, client, concurrency=1, clock=clock, worker_id="w1") as worker,
    ):
        report = worker.run_once()

    # Object 1's request was already under way; object 2 had not left yet, so it stays unsent.
    assert [c.key.pk for c in stolen] == ["1", "2"]
    assert [body["external_id"] for body in meisa.bodies] == ["1"]
    assert (report.sent, report.lease_lost, report.released) == (1, 1, 0)
    # w1's late settlement of object 1 did not free the lease w2 now holds.
    keys = {c.key for c in stolen}
    assert mem.store.renew("w2", list(keys), timedelta(seconds=60)) == keys


def test_leases_are_renewed_while_a_slow_request_runs(mem: MemoryApp) -> None:
    # Real time here: the renewer thread ticks every lease / 3.
    import time

    mem.store = InMemoryStore()
    mem.sync_app.store = mem.store
    seen_by_others: list[int] = []

    def slow(request: httpx.Request) -> None:
        for _ in range(4):
            time.sleep(0.15)
            seen_by_others.append(len(mem.store.claim("w2", limit=1, lease=timedelta(seconds=1))))

    meisa = ScriptedMeisa(during=slow)
    mem.save(User(1, "a@example.com"))
    with (
        meisa.client() as client,
        Worker(mem.sync_app, client, lease=timedelta(seconds=0.3)) as worker,
    ):
        report = worker.run_once()
    assert seen_by_others == [0, 0, 0, 0]
    assert report.sent == 1 and mem.store.records() == []


# -- signals ---------------------------------------------------------------------------------------


def test_sent_signal_arguments(worker: Worker, mem: MemoryApp) -> None:
    sent = received("sent")
    key = mem.save(User(1, "a@example.com"))
    mem.save(User(1, "a@example.com"))
    worker.run_once()
    (call,) = sent
    assert call["sender"] is worker and call["key"] == key
    assert len(call["records"]) == 2 and call["coalesced"] == 1
    assert call["operation"].value == "upsert"
    assert call["payload"]["email"] == "a@example.com"
    assert call["response"].status_code == 200


def test_a_failing_receiver_breaks_nothing(
    worker: Worker, mem: MemoryApp, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: object, **kwargs: object) -> None:
        raise RuntimeError("receiver bug")

    signals.sent.connect(broken)
    received.keep.append(broken)  # type: ignore[attr-defined]
    after = received("sent")
    mem.save(User(1, "a@example.com"))
    assert worker.run_once().sent == 1
    assert len(after) == 1
    assert "receiver of the meisa-sync 'sent' signal failed" in caplog.text


def test_a_failing_should_sync_is_a_mapping_error(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa
) -> None:
    mem.save(User(1, "a@example.com"))
    mem.source.put(USER, 1, object())  # no is_staff at all: should_sync raises AttributeError
    worker.run_once()
    (record,) = mem.store.list_dead()
    assert record.last_error is not None and record.last_error.startswith("AttributeError:")
    assert meisa.requests == []


def test_a_delete_without_identifiers_is_dead(
    worker: Worker, mem: MemoryApp, meisa: ScriptedMeisa
) -> None:
    from meisa_sync.records import NewChange, Operation

    mem.store.enqueue([NewChange(ObjectKey(USER, "1"), Operation.DELETE, identifiers={})])
    worker.run_once()
    (record,) = mem.store.list_dead()
    assert record.last_error is not None and "no identifiers" in record.last_error
    assert meisa.requests == []


class CountingStore(InMemoryStore):
    """Counts the lease renewals the worker asks for."""

    renewals = 0

    def renew(self, worker_id: str, keys: Sequence[ObjectKey], lease: timedelta) -> set[ObjectKey]:
        self.renewals += 1
        return super().renew(worker_id, keys, lease)


def test_a_fresh_lease_is_confirmed_without_a_round_trip(clock: FakeClock) -> None:
    mem = build_app(clock)
    store = CountingStore(clock=clock)
    mem.store = mem.sync_app.store = store
    for pk in range(5):
        mem.save(User(pk, f"u{pk}@example.com"))
    with ScriptedMeisa().client() as client, Worker(mem.sync_app, client, clock=clock) as worker:
        assert worker.run_once().sent == 5
    assert store.renewals == 0


def test_an_older_lease_is_renewed_before_sending(clock: FakeClock) -> None:
    def time_passes(request: httpx.Request) -> None:
        clock.advance(timedelta(seconds=25))  # more than a third of the 60 s lease

    mem = build_app(clock)
    store = CountingStore(clock=clock)
    mem.store = mem.sync_app.store = store
    for pk in range(3):
        mem.save(User(pk, f"u{pk}@example.com"))
    meisa = ScriptedMeisa(during=time_passes)
    with (
        meisa.client() as client,
        Worker(mem.sync_app, client, clock=clock, concurrency=1) as worker,
    ):
        report = worker.run_once()
    # Objects 2 and 3 waited 25 and 50 s: each lease was renewed (and still ours) before sending.
    assert store.renewals == 2
    assert (report.sent, report.lease_lost) == (3, 0)


# -- acknowledging in groups -----------------------------------------------------------------------


class GroupingStore(InMemoryStore):
    """Records every claim and ack call; ``hold`` makes the first ``ack_many`` wait for it."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.calls: list[tuple[str, str, list[ObjectKey]]] = []
        self.hold: threading.Event | None = None
        self.leased_while_writing: list[bool] = []
        self.failing = False
        self.writing = threading.Event()

    def claim(self, worker_id: str, *, limit: int, lease: timedelta) -> list[ClaimedObject]:
        claimed = super().claim(worker_id, limit=limit, lease=lease)
        self.calls.append(("claim", worker_id, [c.key for c in claimed]))
        return claimed

    def ack(self, worker_id: str, key: ObjectKey, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("ack", worker_id, [key]))
        super().ack(worker_id, key, *args, **kwargs)

    def ack_many(self, worker_id: str, acks: Sequence[Ack]) -> None:
        keys = [ack.key for ack in acks]
        self.calls.append(("ack_many", worker_id, keys))
        self.writing.set()
        if self.hold is not None:
            assert self.hold.wait(timeout=10)
            self.hold = None
        # Until the ack is written, the objects stay leased to the worker that sent them.
        self.leased_while_writing.append(
            self.renew(worker_id, keys, timedelta(seconds=60)) == set(keys)
        )
        if self.failing:
            raise ConnectionError("database went away")
        super().ack_many(worker_id, acks)

    def groups(self) -> list[list[ObjectKey]]:
        return [keys for name, _, keys in self.calls if name == "ack_many"]


def grouping_app(clock: FakeClock) -> tuple[MemoryApp, GroupingStore]:
    mem = build_app(clock)
    store = GroupingStore(clock)
    mem.store = mem.sync_app.store = store
    return mem, store


def test_acks_are_written_in_groups_each_batch_before_the_next_claim(clock: FakeClock) -> None:
    mem, store = grouping_app(clock)
    unchanged = User(0, "u0@example.com")
    mem.save(unchanged)
    with ScriptedMeisa().client() as client, Worker(mem.sync_app, client, clock=clock) as worker:
        worker.run_once()
    store.calls.clear()
    store.writing.clear()
    mem.save(unchanged)
    mem.save(User(1, "staff@example.com", is_staff=True))
    mem.save(User(2, "gone@example.com"))
    mem.source.remove(USER, 2)
    for pk in range(3, 13):
        mem.save(User(pk, f"u{pk}@example.com"))
    store.hold = hold = threading.Event()
    arrived = itertools.count(1)

    def requests_meanwhile(request: httpx.Request) -> None:
        # The first group (the batch's three objects that need no request, acknowledged before
        # any request) is held until the last request is under way: one request at a time, the
        # other nine acks are queued by then.
        count = next(arrived)
        if count == 1:
            assert store.writing.wait(timeout=10)
        if count == 10:
            hold.set()

    meisa = ScriptedMeisa(during=requests_meanwhile)

    with (
        meisa.client() as client,
        Worker(mem.sync_app, client, clock=clock, concurrency=1, batch_size=13) as worker,
    ):
        report = worker.run_once()

    assert (report.sent, report.unchanged, report.skipped, report.acked_records) == (10, 1, 2, 13)
    assert [name for name, _, _ in store.calls if name == "ack"] == []
    groups = store.groups()
    assert sorted(groups[0]) == [ObjectKey(USER, str(pk)) for pk in (0, 1, 2)]
    assert len(groups) in {2, 3}  # the last ack may or may not join the nine
    assert sorted(key for group in groups for key in group) == sorted(
        ObjectKey(USER, str(pk)) for pk in range(13)
    )
    assert all(store.leased_while_writing)
    assert mem.store.records() == [] and mem.store.stats().in_flight == 0


def test_a_batchs_acks_are_written_before_its_lease_owner_claims_again(clock: FakeClock) -> None:
    mem, store = grouping_app(clock)
    for pk in range(9):
        mem.save(User(pk, f"u{pk}@example.com"))
    with (
        ScriptedMeisa().client() as client,
        Worker(mem.sync_app, client, clock=clock, batch_size=2, worker_id="w1") as worker,
    ):
        assert worker.run_once().sent == 9
    assert worker.lease_owners == ("w1", "w1/2")

    # Two batches overlap, under two lease owners; before an owner claims again, every ack of
    # its previous batch is written (else the claim could lease those objects a second time).
    unsettled: dict[str, set[ObjectKey]] = {"w1": set(), "w1/2": set()}
    claims: dict[str, int] = {"w1": 0, "w1/2": 0}
    for name, owner, keys in store.calls:
        if name == "claim":
            assert unsettled[owner] == set()
            unsettled[owner] = set(keys)
            claims[owner] += 1
        elif name == "ack_many":
            assert set(keys) <= unsettled[owner]
            unsettled[owner] -= set(keys)
    assert unsettled == {"w1": set(), "w1/2": set()}
    assert claims["w1"] >= 2 and claims["w1/2"] >= 2


def test_an_ack_that_fails_to_be_written_means_a_resend(clock: FakeClock) -> None:
    sent = received("sent")
    mem, store = grouping_app(clock)
    mem.save(User(1, "a@example.com"))
    mem.save(User(2, "b@example.com"))
    store.failing = True
    meisa = ScriptedMeisa()
    with meisa.client() as client, Worker(mem.sync_app, client, clock=clock) as worker:
        failed = worker.run_once()
        store.failing = False
        again = worker.run_once()

    # The requests went out but their acks never reached the store: the records stayed pending,
    # the leases were given back, and the next pass sent the same requests again.
    assert (failed.requests, failed.sent, failed.acked_records, failed.released) == (2, 0, 0, 2)
    assert len(sent) == 4  # Meisa acknowledged each request, twice
    assert (again.requests, again.sent, again.acked_records) == (2, 2, 2)
    first, second = meisa.requests[:2], meisa.requests[2:]
    assert sorted(h["idempotency-key"] for _, _, h in first) == sorted(
        h["idempotency-key"] for _, _, h in second
    )
    assert mem.store.records() == []


def test_the_ack_writer_writes_what_gathered_while_it_was_busy(clock: FakeClock) -> None:
    store = GroupingStore(clock)
    store.hold = threading.Event()
    ids = store.enqueue([NewChange(ObjectKey(USER, str(pk))) for pk in range(7)])
    written: list[int] = []
    with AckWriter(store, "w1", max_group=4) as writer:
        writer.add([(Ack(ObjectKey(USER, "0"), (ids[0],), "h"), lambda: written.append(0))])
        assert store.writing.wait(timeout=10)
        for pk in range(1, 7):
            ack = Ack(ObjectKey(USER, str(pk)), (ids[pk],), "h")
            writer.add([(ack, lambda pk=pk: written.append(pk))])  # type: ignore[misc]
        store.hold.set()
    assert [len(group) for group in store.groups()] == [1, 4, 2]
    assert written == list(range(7)) and writer.groups == 3
    assert store.records() == []
    with pytest.raises(RuntimeError, match="closed"):
        writer.add([])


def test_a_worker_id_must_fit_the_lease_owner_column() -> None:
    with (
        ScriptedMeisa().client() as client,
        pytest.raises(ValueError, match="worker_id: must be at most 98 characters, got 99"),
    ):
        Worker(build_app().sync_app, client, worker_id="w" * 99)
