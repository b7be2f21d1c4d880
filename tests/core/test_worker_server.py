"""The worker against the real reference server over a socket: the seed's story, deletes,
coalescing and suppression seen in the server's request log, and the failures it can produce."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from meisa_sync.client import MeisaClient
from meisa_sync.retry import RetryPolicy
from meisa_sync.worker import Worker
from tests.core.sync_helpers import MemoryApp, User, build_app
from tests.fixtures.server import LiveMeisa, live_server, make_meisa_app, server_config


@pytest.fixture
def mem() -> MemoryApp:
    return build_app()


@pytest.fixture
def client(live_meisa: LiveMeisa) -> Iterator[MeisaClient]:
    with MeisaClient(live_meisa.api_key, base_url=live_meisa.base_url) as client:
        yield client


@pytest.fixture
def worker(mem: MemoryApp, client: MeisaClient) -> Iterator[Worker]:
    policy = RetryPolicy(base=0.01, cap=0.02)
    with Worker(mem.sync_app, client, concurrency=4, retry_policy=policy) as worker:
        yield worker


def tag_names(contact: dict[str, Any]) -> list[str]:
    return [tag["name"] for tag in contact["tags"]]


def api_requests(live_meisa: LiveMeisa) -> list[dict[str, Any]]:
    """The upserts and deletes the server received (the tests' own GETs left out)."""
    log = live_meisa.control.requests()
    return [r for r in log if r["method"] == "POST" and "/contacts/" in r["path"]]


def all_contacts(live_meisa: LiveMeisa) -> list[dict[str, Any]]:
    """Every contact on the server (one login: the dashboard's password hash is slow)."""
    response = httpx.get(
        f"{live_meisa.base_url}/contacts/",
        params={"limit": 200},
        headers=live_meisa.admin_headers(),
        timeout=10,
    )
    response.raise_for_status()
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def drain_until_empty(worker: Worker, mem: MemoryApp, passes: int = 50) -> None:
    """Passes until the outbox is empty (retries due in milliseconds come back in a later pass)."""
    for _ in range(passes):
        if not worker.run_once().objects:
            time.sleep(0.02)  # the retries wait out their (tiny) backoff
        if not mem.store.records():
            return
    raise AssertionError(f"still waiting after {passes} passes: {mem.store.records()}")


def test_the_seed_story_signup_upgrade_churn(
    worker: Worker, mem: MemoryApp, live_meisa: LiveMeisa
) -> None:
    ada = User(1, "ada@example.com", plan="free")
    mem.save(ada)
    assert worker.run_once().sent == 1
    contact = live_meisa.contact(external_id="1")
    assert contact["email"] == "ada@example.com"
    assert contact["custom_fields"] == {"plan": "free"}
    assert tag_names(contact) == ["free-plan"]

    ada.plan = "pro"
    mem.save(ada, extras={"upgraded_at": "2026-03-01T10:00:00Z"})
    assert worker.run_once().sent == 1
    contact = live_meisa.contact(external_id="1")
    assert contact["custom_fields"] == {"plan": "pro", "upgraded_at": "2026-03-01T10:00:00Z"}
    assert "pro-plan" in tag_names(contact) and "free-plan" not in tag_names(contact)

    ada.plan = "churned"
    mem.save(ada, extras={"churn_reason": "price"})
    assert worker.run_once().sent == 1
    contact = live_meisa.contact(external_id="1")
    assert contact["custom_fields"]["churn_reason"] == "price"
    assert "churned" in tag_names(contact)


def test_a_delete_erases_the_contact(worker: Worker, mem: MemoryApp, live_meisa: LiveMeisa) -> None:
    user = User(1, "gone@example.com")
    mem.save(user)
    worker.run_once()
    assert live_meisa.contact(external_id="1") is not None

    mem.delete(user)
    assert worker.run_once().sent == 1
    assert live_meisa.contact(external_id="1") is None

    # Deleting again finds no contact: done, not dead.
    mem.delete(user)
    report = worker.run_once()
    assert (report.skipped, report.dead_records) == (1, 0)


def test_coalescing_and_suppression_in_the_servers_request_log(
    worker: Worker, mem: MemoryApp, live_meisa: LiveMeisa
) -> None:
    users = [User(pk, f"u{pk}@example.com") for pk in range(20)]
    for round_ in range(5):
        for user in users:
            user.first_name = f"Name{round_}"
            mem.save(user)

    report = worker.run_once()

    assert (report.records, report.sent, report.coalesced_records) == (100, 20, 80)
    assert len(api_requests(live_meisa)) == 20
    assert {live_meisa.contact(external_id="7")["first_name"]} == {"Name4"}

    for user in users:
        mem.save(user)  # saved again, unchanged
    report = worker.run_once()
    assert (report.requests, report.unchanged) == (0, 20)
    assert len(api_requests(live_meisa)) == 20


def test_the_worker_survives_chaos_and_converges(
    worker: Worker, mem: MemoryApp, live_meisa: LiveMeisa
) -> None:
    live_meisa.control.chaos(error_rate=0.3, statuses=[500, 502, 503], drop_rate=0.1)
    users = [User(pk, f"c{pk}@example.com", plan="free") for pk in range(30)]
    for user in users:
        mem.save(user)
    drain_until_empty(worker, mem)
    for user in users[::2]:
        user.plan = "pro"
        mem.save(user)
    drain_until_empty(worker, mem)
    live_meisa.control.chaos_off()

    contacts = all_contacts(live_meisa)
    assert {c["external_id"]: c["custom_fields"]["plan"] for c in contacts} == {
        str(user.id): user.plan for user in users
    }
    assert mem.store.list_dead() == []


def test_a_server_error_is_retried(worker: Worker, mem: MemoryApp, live_meisa: LiveMeisa) -> None:
    live_meisa.control.chaos(fail_next=2, status=503)
    mem.save(User(1, "a@example.com"))
    first = worker.run_once()
    assert first.retried == 1
    drain_until_empty(worker, mem)
    assert live_meisa.contact(external_id="1") is not None


def test_an_identifier_conflict_is_dead_with_the_servers_message(
    worker: Worker, mem: MemoryApp, live_meisa: LiveMeisa
) -> None:
    mem.save(User(1, "shared@example.com"))
    worker.run_once()
    mem.save(User(2, "shared@example.com"))

    report = worker.run_once()

    (record,) = mem.store.list_dead()
    assert report.dead_records == 1
    assert record.last_error is not None and record.last_error.startswith("409 identifier_conflict")


def test_a_wrong_key_pauses_with_records_untouched(mem: MemoryApp, live_meisa: LiveMeisa) -> None:
    mem.save(User(1, "a@example.com"))
    wrong = "meisa_test_" + "0" * 40
    with (
        MeisaClient(wrong, base_url=live_meisa.base_url) as client,
        Worker(mem.sync_app, client) as worker,
    ):
        report = worker.run_once()
    assert report.auth_failed and report.released == 1
    (record,) = mem.store.records()
    assert record.attempts == 0 and record.last_error is None


def test_a_429_waits_retry_after_without_an_attempt(mem: MemoryApp, tmp_path: Path) -> None:
    limited = make_meisa_app(
        f"sqlite:///{tmp_path / 'limited.db'}", config=server_config(per_minute=2)
    )
    try:
        with (
            live_server(limited) as root,
            MeisaClient(server_config()["api_keys"][0]["key"], base_url=f"{root}/api/v1") as client,
            Worker(mem.sync_app, client, concurrency=1) as worker,
        ):
            for pk in range(3):
                mem.save(User(pk, f"u{pk}@example.com"))
            report = worker.run_once()
    finally:
        limited.state.meisa.close()

    assert (report.sent, report.rate_limited) == (2, 1)
    (record,) = mem.store.records()
    assert record.attempts == 0 and record.last_error is not None
    assert record.last_error.startswith("429 rate_limited")
    wait = record.available_at - record.created_at
    assert timedelta(seconds=1) <= wait <= timedelta(seconds=61)
