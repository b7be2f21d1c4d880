"""``SQLAlchemyStore`` on SQLite, PostgreSQL and MariaDB: the store contract, then what SQL adds
(claims from several processes, leases set by other hosts, no starvation behind leased objects,
timestamps across time zones)."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Connection, Engine, create_engine, event, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from meisa_sync.cli import main
from meisa_sync.exceptions import ConfigurationError
from meisa_sync.records import NewChange, ObjectKey, Priority
from meisa_sync.store import OutboxStore
from meisa_sync_sqlalchemy._backend import Backend
from meisa_sync_sqlalchemy.connector import store_from_url
from meisa_sync_sqlalchemy.exceptions import MissingTablesError, UnsupportedDatabaseError
from meisa_sync_sqlalchemy.store import SQLAlchemyStore
from tests.core.store_contract import LONG_LEASE, StoreContract, make_changes


class FakeClock:
    """The stores' time, moved by hand (starts at the wall clock, with microseconds)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(timezone.utc)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine, clock: FakeClock) -> SQLAlchemyStore:
    store = SQLAlchemyStore(engine, clock=clock)
    store.create_tables()
    return store


class TestSQLAlchemyStore(StoreContract):
    @pytest.fixture
    def advance(self, clock: FakeClock) -> Callable[[timedelta], None]:
        return clock.advance

    @pytest.fixture
    def now(self, clock: FakeClock) -> Callable[[], datetime]:
        return clock


class TestSQLAlchemyStoreUnderSQLitesSavepointRecipe(StoreContract):
    """On an engine set up as SQLAlchemy's docs suggest for SAVEPOINT on pysqlite (the driver's
    own transaction handling off, an engine "begin" listener saying BEGIN), so that a transaction
    is already open when the store begins its own."""

    @pytest.fixture
    def store(self, tmp_path: Path, clock: FakeClock) -> Iterator[SQLAlchemyStore]:
        engine = create_engine(f"sqlite:///{tmp_path / 'recipe.db'}")

        @event.listens_for(engine, "connect")
        def no_driver_transactions(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN")

        store = SQLAlchemyStore(engine, clock=clock, busy_timeout=5)
        store.create_tables()
        yield store
        engine.dispose()

    @pytest.fixture
    def advance(self, clock: FakeClock) -> Callable[[timedelta], None]:
        return clock.advance

    @pytest.fixture
    def now(self, clock: FakeClock) -> Callable[[], datetime]:
        return clock


# -- several processes ---------------------------------------------------------------------------


def _claim_until_empty(
    url: str, worker_id: str, barrier: Any, results: Any
) -> None:  # pragma: no cover - runs in a child process
    engine = create_engine(url)
    try:
        store = SQLAlchemyStore(engine)
        barrier.wait(timeout=60)
        keys: list[str] = []
        # A worker may claim again what it holds: each round is a new worker id, so that it may not.
        for round_ in itertools.count():
            claimed = store.claim(f"{worker_id}.{round_}", limit=7, lease=timedelta(minutes=10))
            if not claimed:
                break
            keys.extend(str(c.key) for c in claimed)
        results.put((worker_id, keys))
    except BaseException as exc:
        results.put((worker_id, exc))
        raise
    finally:
        engine.dispose()


def test_claims_from_several_processes_never_share_an_object(
    store: SQLAlchemyStore, database_url: str
) -> None:
    # Leases are long and never given back, so any object leased twice shows up twice.
    objects, processes = 240, 3
    store.enqueue(make_changes(objects) + make_changes(objects))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=_claim_until_empty, args=(database_url, f"p{i}", barrier, results))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = dict(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
    results.close()
    results.join_thread()

    claimed = [key for keys in outcomes.values() for key in keys]
    assert all(isinstance(keys, list) for keys in outcomes.values()), outcomes
    assert len(claimed) == len(set(claimed)) == objects
    assert [worker.exitcode for worker in workers] == [0] * processes


# -- leases ----------------------------------------------------------------------------------------


def test_a_lease_expired_on_another_hosts_clock(store: SQLAlchemyStore, clock: FakeClock) -> None:
    store.enqueue(make_changes(1))
    (first,) = store.claim("host-a", limit=1, lease=timedelta(seconds=30))
    # Host B's clock runs 31 s ahead (or 31 s passed): by its clock, A's lease has run out.
    other_host = SQLAlchemyStore(store.engine, clock=FakeClock(clock() + timedelta(seconds=31)))

    (second,) = other_host.claim("host-b", limit=1, lease=timedelta(seconds=30))

    assert second.record_ids == first.record_ids
    assert store.renew("host-a", [first.key], timedelta(seconds=30)) == set()
    assert other_host.renew("host-b", [first.key], timedelta(seconds=30)) == {first.key}
    # A's late ack deletes what it sent, but leaves B's lease alone.
    store.ack("host-a", first.key, first.record_ids, payload_hash="a")
    assert store.claim("host-c", limit=1, lease=LONG_LEASE) == []
    store.enqueue(make_changes(1))
    assert store.claim("host-c", limit=1, lease=LONG_LEASE) == []


def test_objects_behind_many_leased_ones_are_claimed(store: SQLAlchemyStore) -> None:
    # Every early record belongs to five leased objects: the claim must walk past all of them.
    leased_objects = 5
    store.enqueue(make_changes(leased_objects))
    held = store.claim("w1", limit=leased_objects, lease=LONG_LEASE)
    for _ in range(60):
        store.enqueue(make_changes(leased_objects) * 10)
    store.enqueue(make_changes(3, start=100))

    claimed = store.claim("w2", limit=10, lease=LONG_LEASE)

    assert [c.key.pk for c in claimed] == ["100", "101", "102"]
    assert len(held) == leased_objects


def test_a_claim_takes_the_next_objects_when_the_first_are_locked(
    store: SQLAlchemyStore,
) -> None:
    # A claim that skips a locked state row (SKIP LOCKED) or a leased one goes on to later objects.
    store.enqueue(make_changes(6))
    store.claim("w1", limit=2, lease=LONG_LEASE)
    claimed = store.claim("w2", limit=2, lease=LONG_LEASE)
    assert [c.key.pk for c in claimed] == ["3", "4"]


def test_a_state_row_locked_by_another_transaction_is_skipped_not_waited_for(
    store: SQLAlchemyStore, database_backend: str
) -> None:
    if database_backend == "sqlite":
        pytest.skip("SQLite has no row locks: see the single-writer test")
    store.enqueue(make_changes(2))
    store.claim("w0", limit=2, lease=timedelta(0))  # creates the state rows; leases nothing
    state = store.tables.state
    with store.engine.connect() as other:
        with other.begin():
            # Another worker's claim transaction, caught between its lock and its commit.
            # By primary key: MySQL would lock every row a scan reads.
            locking = select(state.c.model).where(
                state.c.model == "tests.User", state.c.object_pk == "1"
            )
            other.execute(locking.with_for_update()).all()
            claimed = store.claim("w1", limit=2, lease=LONG_LEASE)
            assert [c.key.pk for c in claimed] == ["2"]
    (later,) = store.claim("w2", limit=2, lease=LONG_LEASE)
    assert later.key.pk == "1"


def test_sqlite_claims_wait_for_the_single_writer(
    database_backend: str, database_url: str, clock: FakeClock
) -> None:
    if database_backend != "sqlite":
        pytest.skip("SQLite's single writer")
    engine = create_engine(database_url)
    try:
        store = SQLAlchemyStore(engine, clock=clock, busy_timeout=0.2)
        store.create_tables()
        store.enqueue(make_changes(1))
        with engine.connect() as other:
            other.exec_driver_sql("BEGIN IMMEDIATE")
            with pytest.raises(OperationalError, match="database is locked"):
                store.claim("w1", limit=1, lease=LONG_LEASE)
            other.exec_driver_sql("ROLLBACK")
        assert len(store.claim("w1", limit=1, lease=LONG_LEASE)) == 1
    finally:
        engine.dispose()


def test_mariadb_before_10_6_is_refused(store: SQLAlchemyStore, database_backend: str) -> None:
    if database_backend != "mysql":
        pytest.skip("a MySQL/MariaDB version check")
    dialect: Any = store.engine.dialect
    store.stats()  # connected: the dialect knows the server's version
    dialect.server_version_info = (10, 5, 9) if dialect.is_mariadb else (5, 7, 40)
    with pytest.raises(UnsupportedDatabaseError, match="no FOR UPDATE SKIP LOCKED"):
        store.claim("w1", limit=1, lease=LONG_LEASE)


def test_an_object_with_more_records_than_one_statement_takes(store: SQLAlchemyStore) -> None:
    # 1,200 records of one object: acted on in several statements (chunks of 500 ids).
    ids = store.enqueue(make_changes(1) * 1200)
    (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
    assert claimed.record_ids == tuple(ids)

    store.dead("w1", claimed.key, claimed.record_ids, error="400")
    assert store.stats().dead == 1200
    assert store.requeue(ids) == 1200
    (again,) = store.claim("w1", limit=1, lease=LONG_LEASE)
    store.ack("w1", again.key, again.record_ids, payload_hash="h")
    assert store.stats().pending == 0


def test_keys_and_worker_ids_too_long_for_the_columns_are_refused(
    store: SQLAlchemyStore,
) -> None:
    with pytest.raises(ValueError, match=r"key\.pk: must be 1 to 64 characters"):
        store.enqueue([NewChange(ObjectKey("tests.User", "9" * 65))])
    with pytest.raises(ValueError, match=r"key\.model: must be 1 to 100 characters"):
        store.enqueue([NewChange(ObjectKey("", "1"))])
    with pytest.raises(ValueError, match=r"worker_id: must be 1 to 100 characters"):
        store.claim("w" * 101, limit=1, lease=LONG_LEASE)
    assert store.stats().pending == 0


def test_a_real_deadlock_is_recognised_as_worth_running_again(
    store: SQLAlchemyStore, database_backend: str
) -> None:
    if database_backend == "sqlite":
        pytest.skip("SQLite has one writer: no deadlocks")
    store.enqueue(make_changes(2))
    store.claim("w0", limit=2, lease=timedelta(0))  # creates the two state rows
    state = store.tables.state

    def touch(connection: Connection, pk: str) -> None:
        where = (state.c.model == "tests.User", state.c.object_pk == pk)
        connection.execute(update(state).where(*where).values(lease_owner="x"))

    errors: list[DBAPIError] = []

    def second_lock(connection: Connection, pk: str) -> None:
        try:
            touch(connection, pk)
        except DBAPIError as exc:
            errors.append(exc)
            connection.rollback()

    with store.engine.connect() as first, store.engine.connect() as second:
        touch(first, "1")
        touch(second, "2")
        waiting = threading.Thread(target=second_lock, args=(first, "2"))
        waiting.start()
        second_lock(second, "1")
        waiting.join(timeout=30)
        first.rollback()
        second.rollback()

    assert len(errors) == 1
    assert Backend(store.engine, write_lock_table=state).is_transient(errors[0])


def test_enqueue_without_insert_returning(store: SQLAlchemyStore) -> None:
    # MySQL has no INSERT ... RETURNING: the store inserts row by row and reads each id.
    dialect: Any = store.engine.dialect
    dialect.insert_executemany_returning_sort_by_parameter_order = False
    ids = store.enqueue(make_changes(3))
    claimed = store.claim("w1", limit=3, lease=LONG_LEASE)
    assert [c.record_ids[0] for c in claimed] == ids == sorted(ids)
    assert [c.key.pk for c in claimed] == ["1", "2", "3"]


def test_claim_limit_zero_claims_nothing(store: SQLAlchemyStore) -> None:
    store.enqueue(make_changes(2))
    assert store.claim("w1", limit=0, lease=LONG_LEASE) == []
    assert len(store.claim("w1", limit=5, lease=LONG_LEASE)) == 2


def test_claim_counts_statements_not_records(store: SQLAlchemyStore, engine: Engine) -> None:
    # 100 objects with 20 records each: one page of candidates, one insert, one lock, one lease,
    # one read of the records, whatever the number of records.
    for _ in range(20):
        store.enqueue(make_changes(100, priority=Priority.BACKFILL))
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        claimed = store.claim("w1", limit=100, lease=LONG_LEASE)
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert len(claimed) == 100 and all(len(c.records) == 20 for c in claimed)
    data = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE"))]
    assert len(data) <= 8, data


# -- time ------------------------------------------------------------------------------------------


def test_timestamps_round_trip_as_aware_utc_from_any_zone(engine: Engine, clock: FakeClock) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    at = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=india)
    store = SQLAlchemyStore(engine, clock=lambda: at)
    store.create_tables()
    store.enqueue(make_changes(1))

    (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)

    record = claimed.records[0]
    assert record.created_at == at and record.created_at.tzinfo == timezone.utc
    assert record.created_at.microsecond == 123456
    later = at + timedelta(minutes=5, microseconds=7)
    store.retry("w1", claimed.key, claimed.record_ids, available_at=later, error="503")
    assert store.claim("w1", limit=1, lease=LONG_LEASE) == []
    at = later
    (again,) = store.claim("w1", limit=1, lease=LONG_LEASE)
    assert again.records[0].available_at == later


def test_stored_timestamps_are_utc(store: SQLAlchemyStore, clock: FakeClock) -> None:
    store.enqueue(make_changes(1))
    with store.engine.connect() as connection:
        stored = connection.execute(select(store.tables.outbox.c.created_at)).scalar_one()
    if stored.tzinfo is None:  # MySQL and SQLite keep naive UTC
        stored = stored.replace(tzinfo=timezone.utc)
    assert stored == clock()


def test_a_naive_datetime_is_refused_naming_the_argument(store: SQLAlchemyStore) -> None:
    store.enqueue(make_changes(1))
    (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
    with pytest.raises(ValueError, match="available_at"):
        store.retry(
            "w1", claimed.key, claimed.record_ids, available_at=datetime(2030, 1, 1), error="e"
        )


def test_postgresql_session_time_zone_does_not_matter(
    database_backend: str, database_url: str, clock: FakeClock
) -> None:
    if database_backend != "postgresql":
        pytest.skip("a PostgreSQL session setting")
    engine = create_engine(database_url, connect_args={"options": "-c timezone=Asia/Kolkata"})
    try:
        store = SQLAlchemyStore(engine, clock=clock)
        store.create_tables()
        store.enqueue(make_changes(1))
        (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
        assert claimed.records[0].created_at == clock()
        assert claimed.records[0].created_at.utcoffset() == timedelta(0)
    finally:
        engine.dispose()


# -- the tables --------------------------------------------------------------------------------


def test_the_state_row_keeps_the_last_payload(store: SQLAlchemyStore, clock: FakeClock) -> None:
    store.enqueue(make_changes(1))
    (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
    store.ack("w1", claimed.key, claimed.record_ids, payload_hash="h" * 64, payload='{"a":1}')
    state = store.tables.state
    with store.engine.connect() as connection:
        row = connection.execute(select(state)).mappings().one()
    assert (row["model"], row["object_pk"]) == ("tests.User", "1")
    assert row["payload"] == '{"a":1}' and row["payload_hash"] == "h" * 64
    assert row["lease_owner"] is None and row["lease_expires_at"] is None
    assert row["last_sent_at"] is not None


def test_ack_without_a_claim_creates_the_state_row(store: SQLAlchemyStore) -> None:
    (record_id,) = store.enqueue(make_changes(1))
    store.ack("w1", ObjectKey("tests.User", "1"), [record_id], payload_hash="h", remote_id="c1")
    store.enqueue(make_changes(1))
    (claimed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
    assert (claimed.last_payload_hash, claimed.remote_id) == ("h", "c1")


def test_create_tables_twice_is_harmless(store: SQLAlchemyStore) -> None:
    store.create_tables()
    assert store.enqueue(make_changes(1)) == [1]


def test_store_is_an_outbox_store(store: SQLAlchemyStore) -> None:
    assert isinstance(store, OutboxStore)
    assert "SQLAlchemyStore(" in repr(store)


# -- store_from_url (meisa-sync status/retry/purge --database-url) ---------------------------------


def test_store_from_url_reaches_the_outbox_through_the_cli(
    store: SQLAlchemyStore, database_url: str
) -> None:
    store.enqueue(make_changes(3))
    (doomed,) = store.claim("w1", limit=1, lease=LONG_LEASE)
    store.dead("w1", doomed.key, doomed.record_ids, error="400 validation_error: email")

    result = CliRunner().invoke(main, ["status", "--json", "--database-url", database_url])

    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert (status["pending"], status["dead"]) == (2, 1)
    assert "400 validation_error: email" in result.output

    retried = CliRunner().invoke(main, ["retry", "--all", "--database-url", database_url])
    assert retried.exit_code == 0, retried.output
    assert store.stats().dead == 0 and store.stats().pending == 3


def test_store_from_url_owns_and_closes_its_engine(
    store: SQLAlchemyStore, database_url: str
) -> None:
    from_url = store_from_url(database_url)
    try:
        assert from_url.enqueue(make_changes(1)) == [1]
        assert store.stats().pending == 1
    finally:
        from_url.close()
    store.close()  # an engine passed in stays usable
    assert store.stats().pending == 1


def test_store_from_url_without_the_tables(database_url: str) -> None:
    with pytest.raises(MissingTablesError, match="meisa_sync_outbox or meisa_sync_object_state"):
        store_from_url(database_url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not a database URL"),
        ("nosuchdb://host/db", "no driver for 'nosuchdb'"),
        ("postgresql+nosuchdriver://u:secret@h/db", r"u:\*\*\*@h/db.*no driver"),
    ],
)
def test_store_from_url_explains_a_bad_url(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        store_from_url(url)
    assert "secret" not in str(raised.value)


def test_store_from_url_explains_an_unreachable_server() -> None:
    with pytest.raises(
        ConfigurationError, match=r"cannot reach postgresql://u:\*\*\*@127.0.0.1:1/db"
    ):
        store_from_url("postgres://u:secret@127.0.0.1:1/db")


def test_store_from_url_reads_an_asyncio_url_with_a_sync_driver(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    creator = SQLAlchemyStore.from_url(f"sqlite:///{path}")
    creator.create_tables()
    creator.close()
    store = store_from_url(f"sqlite+aiosqlite:///{path}")
    try:
        assert store.engine.dialect.driver == "pysqlite"
        assert store.stats().pending == 0
    finally:
        store.close()
