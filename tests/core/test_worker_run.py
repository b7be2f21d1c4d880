"""The worker's loop: stopping gracefully (event, SIGTERM), idling, auth pauses, pass boundaries."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from meisa_sync import signals
from meisa_sync.worker import Worker
from tests.core.sync_helpers import FakeClock, MemoryApp, ScriptedMeisa, User, build_app, error


@pytest.fixture
def mem() -> MemoryApp:
    return build_app()


def save_users(mem: MemoryApp, count: int) -> None:
    for pk in range(count):
        mem.save(User(pk, f"u{pk}@example.com"))


@pytest.fixture
def on_sent() -> Iterator[list[Any]]:
    """Receivers to connect to ``sent`` for the test."""
    receivers: list[Any] = []
    yield receivers
    for receiver in receivers:
        signals.sent.disconnect(receiver)


def test_a_stop_finishes_in_flight_requests_and_releases_the_rest(mem: MemoryApp) -> None:
    stop = threading.Event()
    meisa = ScriptedMeisa(during=lambda request: stop.set())
    save_users(mem, 5)
    with meisa.client() as client, Worker(mem.sync_app, client, concurrency=1) as worker:
        report = worker.run(stop, handle_signals=False)

    assert len(meisa.requests) == 1
    assert (report.sent, report.released) == (1, 4)
    records = mem.store.records()
    assert len(records) == 4
    assert all(r.attempts == 0 and r.last_error is None for r in records)
    assert mem.store.stats().in_flight == 0


def test_sigterm_stops_gracefully(mem: MemoryApp) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    meisa = ScriptedMeisa(during=lambda request: os.kill(os.getpid(), signal.SIGTERM))
    save_users(mem, 3)
    with meisa.client() as client, Worker(mem.sync_app, client, concurrency=1) as worker:
        report = worker.run()

    assert worker.stopping
    assert (report.sent, report.released) == (1, 2)
    assert len(mem.store.records()) == 2
    assert signal.getsignal(signal.SIGTERM) is previous


def test_run_drains_then_idles_until_stopped(mem: MemoryApp, on_sent: list[Any]) -> None:
    stop = threading.Event()
    sent: list[object] = []

    def count(sender: object, **kwargs: object) -> None:
        sent.append(kwargs["key"])
        if len(sent) == 3:
            # Stop once the idle loop has polled at least once more.
            threading.Timer(0.3, stop.set).start()

    signals.sent.connect(count)
    on_sent.append(count)
    save_users(mem, 3)
    with ScriptedMeisa().client() as client, Worker(mem.sync_app, client) as worker:
        report = worker.run(stop, handle_signals=False)
    assert report.sent == 3 and mem.store.records() == []


def test_new_records_are_picked_up_while_running(mem: MemoryApp, on_sent: list[Any]) -> None:
    stop = threading.Event()
    seen: list[str] = []

    def follow(sender: object, **kwargs: Any) -> None:
        seen.append(kwargs["key"].pk)
        if len(seen) == 1:
            mem.save(User(99, "late@example.com"))
        else:
            stop.set()

    signals.sent.connect(follow)
    on_sent.append(follow)
    save_users(mem, 1)
    with ScriptedMeisa().client() as client, Worker(mem.sync_app, client) as worker:
        worker.run(stop, handle_signals=False)
    assert seen == ["0", "99"]


def test_after_an_auth_failure_the_worker_rechecks_and_resumes(
    mem: MemoryApp, on_sent: list[Any]
) -> None:
    stop = threading.Event()
    meisa = ScriptedMeisa(script=[error(401, "invalid_api_key", "revoked")])

    def stop_when_sent(sender: object, **kwargs: object) -> None:
        stop.set()

    signals.sent.connect(stop_when_sent)
    on_sent.append(stop_when_sent)
    save_users(mem, 1)
    with meisa.client() as client, Worker(mem.sync_app, client, auth_recheck=0.05) as worker:
        report = worker.run(stop, handle_signals=False)
    assert report.auth_failed and report.sent == 1
    assert len(meisa.requests) == 2


def test_a_pass_tries_each_object_once_even_when_it_is_due_again_at_once() -> None:
    clock = FakeClock()
    mem = build_app(clock)
    save_users(mem, 3)
    meisa = ScriptedMeisa(script=[error(503, "unavailable", "down")] * 10)
    with (
        meisa.client() as client,
        Worker(mem.sync_app, client, batch_size=2, clock=clock, random=lambda: 0.0) as worker,
    ):
        report = worker.run_once()
    assert (report.objects, report.retried, len(meisa.requests)) == (3, 3, 3)
    assert all(r.attempts == 1 for r in mem.store.records())
    assert mem.store.stats().in_flight == 0


def test_a_failing_store_does_not_kill_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    from meisa_sync.memory import InMemoryStore

    class FlakyStore(InMemoryStore):
        claims = 0

        def claim(self, worker_id: str, *, limit: int, lease: timedelta) -> list[Any]:
            FlakyStore.claims += 1
            if FlakyStore.claims == 1:
                raise ConnectionError("database restarting")
            stop.set()
            return super().claim(worker_id, limit=limit, lease=lease)

    stop = threading.Event()
    mem = build_app()
    mem.sync_app.store = FlakyStore()
    with ScriptedMeisa().client() as client, Worker(mem.sync_app, client, idle_poll=0.01) as w:
        w.run(stop, handle_signals=False)
    assert FlakyStore.claims == 2
    assert "the drain pass failed" in caplog.text


def test_the_enqueued_signal_reports_new_records(mem: MemoryApp) -> None:
    calls: list[dict[str, Any]] = []

    def record(sender: object, **kwargs: Any) -> None:
        calls.append({"sender": sender, **kwargs})

    signals.enqueued.connect(record)
    try:
        mem.save(User(1, "a@example.com"))
    finally:
        signals.enqueued.disconnect(record)
    (call,) = calls
    assert call["sender"] is mem.store
    assert call["record_ids"] == [mem.store.records()[0].id]
    assert call["changes"][0].key.pk == "1"


@pytest.mark.parametrize(
    ("setting", "value"), [("batch_size", 0), ("concurrency", 0), ("lease", timedelta(0))]
)
def test_settings_are_validated(setting: str, value: object) -> None:
    mem = build_app()
    with ScriptedMeisa().client() as client, pytest.raises(ValueError, match=f"^{setting}:"):
        Worker(mem.sync_app, client, **{setting: value})  # type: ignore[arg-type]


def test_the_default_worker_id_names_host_and_process() -> None:
    mem = build_app()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    from meisa_sync.client import MeisaClient

    with (
        MeisaClient("meisa_test_" + "x" * 32, transport=transport) as client,
        Worker(mem.sync_app, client) as a,
        Worker(mem.sync_app, client) as b,
    ):
        assert a.worker_id != b.worker_id
        assert f":{os.getpid()}:" in a.worker_id


def test_a_second_sigint_interrupts_at_once(mem: MemoryApp) -> None:
    previous = signal.getsignal(signal.SIGINT)
    with ScriptedMeisa().client() as client, Worker(mem.sync_app, client) as worker:
        with pytest.raises(KeyboardInterrupt), worker.graceful_shutdown():
            os.kill(os.getpid(), signal.SIGINT)
            assert worker.stopping
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is previous
