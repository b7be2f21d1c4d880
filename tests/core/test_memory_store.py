"""The store contract on ``InMemoryStore``, with a fake clock so leases expire without sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from meisa_sync.memory import InMemorySource, InMemoryStore, utc_now
from meisa_sync.records import NewChange, ObjectKey
from tests.core.store_contract import StoreContract
from tests.core.sync_helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class TestInMemoryStore(StoreContract):
    @pytest.fixture
    def store(self, clock: FakeClock) -> InMemoryStore:
        return InMemoryStore(clock=clock)

    @pytest.fixture
    def advance(self, clock: FakeClock) -> Callable[[timedelta], None]:
        return clock.advance

    @pytest.fixture
    def now(self, clock: FakeClock) -> Callable[[], datetime]:
        return clock


def test_the_default_clock_is_aware_utc() -> None:
    assert utc_now().utcoffset() == timedelta(0)


def test_the_store_remembers_the_last_payload_and_remote_id(clock: FakeClock) -> None:
    store = InMemoryStore(clock=clock)
    store.enqueue([NewChange(ObjectKey("m", "1"))])
    (claimed,) = store.claim("w", limit=1, lease=timedelta(seconds=5))
    store.ack("w", claimed.key, claimed.record_ids, payload_hash="h", payload="{}", remote_id="c1")
    assert store.last_payload(claimed.key) == "{}"
    assert store.remote_id(claimed.key) == "c1"
    assert store.records() == []


def test_the_source_returns_only_existing_objects() -> None:
    source = InMemorySource()
    alice, bob = object(), object()
    assert source.put("tests.User", 1, alice) == ObjectKey("tests.User", "1")
    source.put("tests.User", "2", bob)
    source.remove("tests.User", 2)
    source.remove("tests.Unknown", 7)

    loaded = source.load("tests.User", ["1", "2", "3"], mapping=None)  # type: ignore[arg-type]

    assert loaded == {"1": alice}
    assert source.load("tests.Lead", ["1"], mapping=None) == {}  # type: ignore[arg-type]
    assert source.loads == 2
