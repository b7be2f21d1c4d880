"""``meisa-sync drain`` against the reference server: every exit code, options from the
environment, and a SIGTERM ending a long-running drain gracefully."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import click
import pytest
from click.testing import CliRunner

from meisa_sync import signals
from meisa_sync.cli import main
from tests.core import sync_helpers
from tests.core.sync_helpers import MemoryApp, User, build_app
from tests.fixtures.server import LiveMeisa

APP = "tests.core.sync_helpers:current_app"


@pytest.fixture
def mem(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryApp]:
    for variable in list(os.environ):
        if variable.startswith("MEISA_"):
            monkeypatch.delenv(variable)
    app = build_app()
    monkeypatch.setattr(sync_helpers, "CURRENT", app)
    yield app


def drain(live_meisa: LiveMeisa, *args: str, key: str | None = None) -> click.testing.Result:
    options = ["--api-key", key or live_meisa.api_key, "--base-url", live_meisa.base_url]
    return CliRunner().invoke(
        main, ["drain", "--app", APP, "--no-pace", *options, *args], catch_exceptions=False
    )


def test_drain_once_sends_everything_and_exits_0(mem: MemoryApp, live_meisa: LiveMeisa) -> None:
    for pk in range(5):
        mem.save(User(pk, f"u{pk}@example.com"))
        mem.save(User(pk, f"u{pk}@example.com", plan="pro"))

    result = drain(live_meisa, "--once", "--batch-size", "2", "--concurrency", "2")

    assert result.exit_code == 0, result.output
    assert "5 sent in 5 requests" in result.output
    assert "5 records coalesced" in result.output
    assert mem.store.records() == []
    assert live_meisa.contact(external_id="3")["custom_fields"] == {"plan": "pro"}


def test_options_come_from_the_environment(
    mem: MemoryApp,
    live_meisa: LiveMeisa,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("MEISA_APP", APP)
    monkeypatch.setenv("MEISA_API_KEY", live_meisa.api_key)
    monkeypatch.setenv("MEISA_BASE_URL", live_meisa.base_url)
    monkeypatch.setenv("MEISA_BATCH_SIZE", "1")
    monkeypatch.setenv("MEISA_PACE", "false")
    monkeypatch.setenv("MEISA_WORKER_ID", "env-worker")
    caplog.set_level(logging.INFO)
    mem.save(User(1, "a@example.com"))
    mem.save(User(2, "b@example.com"))

    result = CliRunner().invoke(main, ["drain", "--once"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert f"worker env-worker draining {live_meisa.base_url}" in caplog.text
    assert caplog.text.count("batch: 1 object (") == 2  # MEISA_BATCH_SIZE=1
    assert live_meisa.contact(external_id="1") is not None


def test_dead_records_exit_1(mem: MemoryApp, live_meisa: LiveMeisa) -> None:
    mem.save(User(1, "shared@example.com"))
    mem.save(User(2, "shared@example.com"))
    result = drain(live_meisa, "--once", "--concurrency", "1")
    assert result.exit_code == 1
    assert "1 record dead" in result.output
    assert "meisa-sync status" in result.output
    assert mem.store.stats().dead == 1


def test_an_auth_failure_exits_3(mem: MemoryApp, live_meisa: LiveMeisa) -> None:
    mem.save(User(1, "a@example.com"))
    result = drain(live_meisa, "--once", key="meisa_test_" + "9" * 40)
    assert result.exit_code == 3
    assert "AUTH FAILED" in result.output
    assert len(mem.store.records()) == 1


def test_a_missing_api_key_is_a_usage_error(mem: MemoryApp) -> None:
    result = CliRunner().invoke(main, ["drain", "--app", APP, "--once"])
    assert result.exit_code == 2
    assert "MEISA_API_KEY" in result.output


def test_drain_needs_the_mappings(mem: MemoryApp) -> None:
    result = CliRunner().invoke(main, ["drain", "--once", "--api-key", "meisa_test_" + "x" * 32])
    assert result.exit_code == 2
    assert "--app module:attr" in result.output


def test_a_bad_lease_is_a_usage_error(mem: MemoryApp, live_meisa: LiveMeisa) -> None:
    assert drain(live_meisa, "--once", "--lease", "0s").exit_code == 2
    assert drain(live_meisa, "--once", "--lease", "soon").exit_code == 2


def test_sigterm_ends_a_running_drain_gracefully(mem: MemoryApp, live_meisa: LiveMeisa) -> None:
    def terminate(sender: Any, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        # The handler runs in the main thread; hold this sender until it did, so that what
        # follows is deterministic (the next object is released, not sent).
        deadline = time.monotonic() + 10
        while not sender.stopping and time.monotonic() < deadline:
            time.sleep(0.005)

    for pk in range(3):
        mem.save(User(pk, f"u{pk}@example.com"))
    signals.sent.connect(terminate)
    try:
        result = drain(live_meisa, "--concurrency", "1", "--batch-size", "10")
    finally:
        signals.sent.disconnect(terminate)

    assert result.exit_code == 0, result.output
    assert "1 sent in 1 request" in result.output
    assert "2 released" in result.output
    assert len(mem.store.records()) == 2 and mem.store.stats().in_flight == 0
