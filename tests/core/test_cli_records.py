"""``meisa-sync status``, ``retry``, ``purge`` and how the commands find the outbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import click
import pytest
from click.testing import CliRunner

from meisa_sync.cli import main
from meisa_sync.cli._loading import connector, resolve_sync_app
from meisa_sync.cli.records import DURATION, format_age
from meisa_sync.records import NewChange, ObjectKey, Operation
from tests.core import sync_helpers
from tests.core.sync_helpers import FakeClock, MemoryApp, build_app

APP = "tests.core.sync_helpers:current_app"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mem(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryApp]:
    """A fresh in-memory app behind ``--app tests.core.sync_helpers:current_app``."""
    for variable in ("MEISA_APP", "MEISA_DATABASE_URL", "MEISA_DJANGO_SETTINGS"):
        monkeypatch.delenv(variable, raising=False)
    app = build_app(clock)
    monkeypatch.setattr(sync_helpers, "CURRENT", app)
    yield app


def run(*args: str, input: str | None = None) -> click.testing.Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def kill(mem: MemoryApp, pks: range, error: str = "409 identifier_conflict: taken") -> list[int]:
    """Enqueue changes to ``pks`` and make them dead; return their ids."""
    ids = mem.store.enqueue([NewChange(ObjectKey(sync_helpers.USER, str(pk))) for pk in pks])
    for claimed in mem.store.claim("test", limit=len(ids), lease=timedelta(seconds=60)):
        mem.store.dead("test", claimed.key, claimed.record_ids, error=error)
    return ids


# -- status ----------------------------------------------------------------------------------------


def test_status_shows_counts_age_and_errors(mem: MemoryApp, clock: FakeClock) -> None:
    dead = kill(mem, range(2))
    mem.store.enqueue([NewChange(ObjectKey(sync_helpers.USER, "9"), Operation.DELETE)] * 3)
    mem.store.claim("busy", limit=1, lease=timedelta(hours=1))
    clock.advance(timedelta(minutes=5, seconds=12))

    result = run("status", "--app", APP)

    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "pending: 3 (3 in flight)",
        "dead:    2",
        "oldest pending: 5m 12s",
        "last errors:",
        f"  #{dead[1]} tests.User:1 upsert (attempts 0): 409 identifier_conflict: taken",
        f"  #{dead[0]} tests.User:0 upsert (attempts 0): 409 identifier_conflict: taken",
    ]


def test_status_as_json(mem: MemoryApp, clock: FakeClock) -> None:
    (dead,) = kill(mem, range(1))
    mem.store.enqueue([NewChange(ObjectKey(sync_helpers.USER, "5"))])
    clock.advance(timedelta(seconds=90))

    result = run("status", "--app", APP, "--json", "--errors", "1")

    data = json.loads(result.output)
    assert data["pending"] == 1 and data["in_flight"] == 0 and data["dead"] == 1
    assert data["oldest_pending_age_seconds"] == 90
    (error,) = data["last_errors"]
    assert error["id"] == dead and error["object_pk"] == "0" and error["operation"] == "upsert"
    assert error["error"] == "409 identifier_conflict: taken"


def test_status_of_an_empty_outbox(mem: MemoryApp) -> None:
    result = run("status", "--app", APP)
    assert result.output.splitlines() == [
        "pending: 0 (0 in flight)",
        "dead:    0",
        "oldest pending: -",
    ]


def test_the_app_can_come_from_the_environment(
    mem: MemoryApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEISA_APP", APP)
    kill(mem, range(4))
    assert "dead:    4" in run("status").output


# -- retry -----------------------------------------------------------------------------------------


def test_retry_by_id(mem: MemoryApp) -> None:
    ids = kill(mem, range(3))
    result = run("retry", "--app", APP, "--id", str(ids[0]), "--id", str(ids[2]))
    assert result.exit_code == 0 and result.output == "requeued 2 dead records\n"
    assert [r.id for r in mem.store.list_dead()] == [ids[1]]


def test_retry_all(mem: MemoryApp) -> None:
    kill(mem, range(3))
    assert run("retry", "--app", APP, "--all").output == "requeued 3 dead records\n"
    assert mem.store.stats().pending == 3


@pytest.mark.parametrize("args", [[], ["--all", "--id", "1"]])
def test_retry_needs_ids_or_all(mem: MemoryApp, args: list[str]) -> None:
    result = run("retry", "--app", APP, *args)
    assert result.exit_code == 2
    assert "--id ID (repeatable) or --all" in result.output


# -- purge -----------------------------------------------------------------------------------------


def test_purge_asks_first(mem: MemoryApp) -> None:
    kill(mem, range(2))
    refused = run("purge", "--app", APP, input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert mem.store.stats().dead == 2

    agreed = run("purge", "--app", APP, input="y\n")
    assert agreed.exit_code == 0
    assert "Delete the dead records (all of them)?" in agreed.output
    assert agreed.output.endswith("purged 2 dead records\n")
    assert mem.store.stats().dead == 0


def test_purge_by_id_and_age_without_asking(mem: MemoryApp, clock: FakeClock) -> None:
    old = kill(mem, range(3))
    clock.advance(timedelta(days=31))
    kill(mem, range(10, 12))
    mem.store.enqueue([NewChange(ObjectKey(sync_helpers.USER, "50"))])

    result = run("purge", "--app", APP, "--older-than", "30d", "--id", str(old[0]), "--yes")
    assert result.output == "purged 1 dead record\n"
    assert (
        run("purge", "--app", APP, "--older-than", "30d", "-y").output == "purged 2 dead records\n"
    )
    assert mem.store.stats().dead == 2 and mem.store.stats().pending == 1


def test_purge_refuses_a_bad_duration(mem: MemoryApp) -> None:
    result = run("purge", "--app", APP, "--older-than", "a month", "--yes")
    assert result.exit_code == 2 and "is not a duration" in result.output


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("1.5h", 5400), ("30d", 2592000), ("2w", 1209600)],
)
def test_durations(text: str, seconds: float) -> None:
    assert DURATION.convert(text, None, None) == timedelta(seconds=seconds)


def test_ages_read_well() -> None:
    assert format_age(timedelta(0)) == "0s"
    assert format_age(timedelta(seconds=312)) == "5m 12s"
    assert format_age(timedelta(days=3, hours=4, minutes=5)) == "3d 4h"


# -- finding the outbox ----------------------------------------------------------------------------


def test_a_target_is_required(mem: MemoryApp) -> None:
    result = run("status")
    assert result.exit_code == 2 and "--app module:attr, --database-url URL" in result.output


def test_one_target_only(mem: MemoryApp) -> None:
    result = run("status", "--app", APP, "--database-url", "sqlite://")
    assert result.exit_code == 2 and "give one of --app, --database-url" in result.output


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.core.sync_helpers", "expected module:attribute"),
        ("tests.core.no_such_module:app", "cannot import 'tests.core.no_such_module'"),
        ("tests.core.sync_helpers:nothing", "has no attribute 'nothing'"),
        ("tests.core.sync_helpers:API_KEY", "is a str, not a SyncApp"),
    ],
)
def test_a_wrong_app_gets_a_clear_error(mem: MemoryApp, spec: str, message: str) -> None:
    result = run("status", "--app", spec)
    assert result.exit_code == 2
    assert message in result.output


def test_an_object_with_a_sync_app_or_a_factory_is_accepted(mem: MemoryApp) -> None:
    class Registration:
        sync_app = mem.sync_app

    class Factory:
        def sync_app(self) -> object:
            return mem.sync_app

    assert resolve_sync_app(mem.sync_app, "x") is mem.sync_app
    assert resolve_sync_app(Registration(), "x") is mem.sync_app
    assert resolve_sync_app(Factory(), "x") is mem.sync_app
    assert resolve_sync_app(lambda: Registration(), "x") is mem.sync_app
    assert "dead:    0" in run("status", "--app", "tests.core.sync_helpers:app").output


def test_an_unknown_connector_says_what_to_install() -> None:
    with pytest.raises(click.UsageError, match=r"pip install 'meisa-sync\[nosql\]'"):
        connector("nosql")


def test_the_database_url_goes_through_the_sqlalchemy_connector(tmp_path: object) -> None:
    pytest.importorskip("meisa_sync_sqlalchemy.connector")
    from sqlalchemy import MetaData, create_engine

    from meisa_sync_sqlalchemy.tables import outbox_tables

    url = f"sqlite:///{tmp_path}/outbox.db"
    missing = run("status", "--database-url", url)
    assert missing.exit_code != 0
    assert "meisa_sync_outbox" in missing.output

    engine = create_engine(url)
    metadata = MetaData()
    outbox_tables(metadata)
    metadata.create_all(engine)
    engine.dispose()
    store = connector("sqlalchemy")(url)
    try:
        ids = store.enqueue([NewChange(ObjectKey("users", "1"))])
    finally:
        store.close()
    data = json.loads(run("status", "--database-url", url, "--json").output)
    assert data["pending"] == len(ids) == 1
    assert run("retry", "--database-url", url, "--all").output == "requeued 0 dead records\n"
