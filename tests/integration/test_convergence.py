"""Convergence under concurrency and failure (issue 4's "Done when", CONTRACT.md §10).

The reference server runs in its own process with chaos on (20 % of requests fail with a 5xx, 5 %
have their connection dropped, half of those after the change was applied). Several drain worker
processes (2 on SQLite, 4 on PostgreSQL and MariaDB) drain the outbox of the demo application while
this process changes a few hundred users: the user row and its subscription row in concurrent
transactions, users created and deleted. Two workers are SIGKILLed mid-run (replacements start).

At the end, for every user, the server holds exactly the mapping of the user's committed state; a
deleted user has no contact; nothing is dead, nothing pending; and the request log shows that no
state of an object was ever sent after a newer one: each user's ``last_name`` carries a version of
the user row and ``mrr`` a version of the subscription row, and both only grow per contact.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from meisa_sync.demo.mapping import UserMapping
from meisa_sync.demo.models import Base, Subscription, User
from meisa_sync_sqlalchemy import SQLAlchemySync
from tests.integration.processes import ServerProcess, WorkerProcess

pytestmark = pytest.mark.slow

PLANS = ("free", "pro", "churned", "free", "pro")
# Transactions per writer, per user: with up to 4 users a transaction, each user's row and its
# subscription row change about 1.8 times each, and the hot users dozens of times.
TRANSACTIONS_PER_USER = 0.5
# Spread over about this long, so that workers send intermediate states while changes go on.
WRITE_SECONDS = 8.0
DRAIN_TIMEOUT = 60.0


@dataclass(frozen=True)
class Scenario:
    users: int
    workers: int


SCENARIOS = {
    "sqlite": Scenario(users=150, workers=2),
    "postgresql": Scenario(users=250, workers=4),
    "mysql": Scenario(users=250, workers=4),
}


@dataclass
class Counters:
    """Versions the writers hand out (per user), and what committed."""

    profile: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    billing: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    committed: int = 0
    conflicts: int = 0
    deleted: set[int] = field(default_factory=set)
    writers_done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url, pool_size=10)
    yield engine
    engine.dispose()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path / "server", request_log_size=1_000_000) as server:
        yield server


def transaction(
    sessions: sessionmaker[Session], counters: Counters, work: Callable[[Session], int]
) -> None:
    """Run ``work`` in its own transaction, retrying lock conflicts; count the changes committed."""
    for _ in range(20):
        try:
            with sessions.begin() as session:
                changed = work(session)
        except (DBAPIError, SQLAlchemyError):
            with counters.lock:
                counters.conflicts += 1
            time.sleep(random.uniform(0.005, 0.05))
            continue
        with counters.lock:
            counters.committed += changed
        return
    raise AssertionError("a writer transaction kept failing")


def new_user(user_id: int) -> User:
    return User(
        id=user_id,
        email=f"user{user_id}@example.com",
        first_name=f"User{user_id}",
        last_name="v0",
        subscription=Subscription(plan="free", mrr=Decimal(0)),
    )


def writers(
    sessions: sessionmaker[Session], counters: Counters, ids: list[int], seed: int
) -> list[threading.Thread]:
    """Three writers: profiles (user rows), billing (subscription rows), lifecycle (creates
    and deletes users until the other two are done)."""
    transactions = int(len(ids) * TRANSACTIONS_PER_USER)
    spacing = WRITE_SECONDS / transactions
    done = threading.Barrier(2, action=lambda: counters.writers_done.set())
    # Half the changes hit a small hot set, so the user and subscription writers often race on
    # the same user in concurrent transactions.
    hot = ids[: max(10, len(ids) // 10)]

    def pick(rng: random.Random) -> list[int]:
        chosen = {rng.choice(hot) if rng.random() < 0.5 else rng.choice(ids) for _ in range(4)}
        return sorted(chosen)

    def next_version(versions: dict[int, int], user_id: int) -> int:
        with counters.lock:
            versions[user_id] += 1
            return versions[user_id]

    def profiles() -> None:
        rng = random.Random(seed)

        def rename(session: Session, chosen: list[int]) -> int:
            users = session.scalars(
                select(User).where(User.id.in_(chosen)).order_by(User.id).with_for_update()
            ).all()
            for user in users:
                version = next_version(counters.profile, user.id)
                user.last_name = f"v{version}"
                if rng.random() < 0.2:
                    user.first_name = f"User{user.id}-{version}"
            return len(users)

        for _ in range(transactions):
            chosen = pick(rng)
            transaction(sessions, counters, functools.partial(rename, chosen=chosen))
            time.sleep(rng.uniform(0, 2 * spacing))
        done.wait()

    def billing() -> None:
        rng = random.Random(seed + 1)

        def change_plans(session: Session, chosen: list[int]) -> int:
            subscriptions = session.scalars(
                select(Subscription)
                .where(Subscription.user_id.in_(chosen))
                .order_by(Subscription.user_id)
                .with_for_update()
            ).all()
            for subscription in subscriptions:
                version = next_version(counters.billing, subscription.user_id)
                subscription.plan = PLANS[version % len(PLANS)]
                subscription.mrr = Decimal(version)
                subscription.billing_cycle = rng.choice(("monthly", "yearly", None))
            return len(subscriptions)

        for _ in range(transactions):
            chosen = pick(rng)
            transaction(sessions, counters, functools.partial(change_plans, chosen=chosen))
            time.sleep(rng.uniform(0, 2 * spacing))
        done.wait()

    def lifecycle() -> None:
        rng = random.Random(seed + 2)
        next_id = max(ids) + 1

        def create(session: Session, user_id: int) -> int:
            session.add(new_user(user_id))
            return 1

        def delete(session: Session, victim: int) -> int:
            user = session.get(User, victim)
            if user is None:
                return 0
            session.delete(user)
            return 1

        while not counters.writers_done.wait(rng.uniform(0.1, 0.3)):
            transaction(sessions, counters, functools.partial(create, user_id=next_id))
            next_id += 1
            victim = rng.choice(ids)
            if victim not in counters.deleted and victim not in hot:
                transaction(sessions, counters, functools.partial(delete, victim=victim))
                counters.deleted.add(victim)

    return [threading.Thread(target=target) for target in (profiles, billing, lifecycle)]


def wait_until_drained(sync: SQLAlchemySync, workers: list[WorkerProcess]) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while True:
        stats = sync.store.stats()
        if stats.pending == 0 and stats.in_flight == 0:
            return
        if time.monotonic() > deadline:
            logs = "\n".join(worker.log()[-3000:] for worker in workers)
            raise AssertionError(f"not drained in time: {stats}\n{logs}")
        time.sleep(0.2)


def expected_contacts(sessions: sessionmaker[Session]) -> dict[str, dict[str, Any]]:
    """What the mapping makes of every user's committed state, by external id."""
    mapping = UserMapping()
    with sessions() as session:
        users = session.scalars(select(User).options(selectinload(User.subscription))).all()
        return {str(user.id): mapping.build(user) for user in users if mapping.should_sync(user)}


def as_stored(payload: dict[str, Any]) -> dict[str, Any]:
    """The contact fields an upsert of ``payload`` leaves on a contact created by upserts alone."""
    custom = {k: v for k, v in payload.get("custom_fields", {}).items() if v is not None}
    return {
        "email": payload["email"],
        "external_id": payload["external_id"],
        "first_name": payload.get("first_name"),
        "last_name": payload.get("last_name"),
        "custom_fields": custom,
    }


def check_versions_only_grow(log: list[dict[str, Any]]) -> int:
    """No state of a contact was sent after a newer one; returns the upserts checked."""
    last: dict[str, tuple[int, float]] = {}
    checked = 0
    for entry in log:
        body = entry.get("body")
        if not entry["path"].startswith("/api/v1/contacts/upsert") or not isinstance(body, dict):
            continue
        key = str(body["external_id"])
        profile = int(str(body["last_name"]).removeprefix("v"))
        billing = float(body["custom_fields"]["mrr"])
        before = last.get(key, (0, 0.0))
        assert profile >= before[0], f"user {key}: last_name v{profile} sent after v{before[0]}"
        assert billing >= before[1], f"user {key}: mrr {billing} sent after {before[1]}"
        last[key] = (profile, billing)
        checked += 1
    return checked


def test_workers_converge_under_chaos_and_kills(
    database_backend: str, database_url: str, engine: Engine, server: ServerProcess, tmp_path: Path
) -> None:
    scenario = SCENARIOS[database_backend]
    sessions = sessionmaker(engine, expire_on_commit=False)
    sync = SQLAlchemySync(sessions, [UserMapping()])
    counters = Counters()
    workers: list[WorkerProcess] = []
    try:
        Base.metadata.create_all(engine)
        ids = list(range(1, scenario.users + 1))
        with sessions.begin() as session:
            session.add_all(new_user(user_id) for user_id in ids)
        server.chaos(error_rate=0.2, statuses=[500, 502, 503], drop_rate=0.05)

        def start_worker() -> WorkerProcess:
            worker = WorkerProcess(database_url, server, tmp_path / f"worker-{len(workers)}.log")
            workers.append(worker)
            return worker

        for _ in range(scenario.workers):
            start_worker()
        threads = writers(sessions, counters, ids, seed=len(database_backend))
        for thread in threads:
            thread.start()
        # Kill two workers mid-run, without any chance to clean up; replacements join.
        expected_changes = 2 * 3.5 * int(len(ids) * TRANSACTIONS_PER_USER)
        for share in (1 / 4, 1 / 2):
            while (
                counters.committed < share * expected_changes and not counters.writers_done.is_set()
            ):
                time.sleep(0.05)
            victim = next(worker for worker in workers if worker.alive())
            victim.kill()
            start_worker()
        for thread in threads:
            thread.join()

        wait_until_drained(sync, workers)
        stats = sync.store.stats()
        assert stats.dead == 0, [record.last_error for record in sync.store.list_dead()]
        for worker in workers:
            if worker.alive():
                assert worker.stop() == 0, worker.log()[-3000:]
        assert sum(1 for worker in workers if worker.process.returncode == -9) == 2

        server.chaos()
        expected = {key: as_stored(payload) for key, payload in expected_contacts(sessions).items()}
        stored = {
            contact["external_id"]: {
                "email": contact["email"],
                "external_id": contact["external_id"],
                "first_name": contact["first_name"],
                "last_name": contact["last_name"],
                "custom_fields": contact["custom_fields"],
            }
            for contact in server.contacts()
        }
        # A few hundred users, each changed several times on average.
        assert counters.committed >= 3 * scenario.users
        assert counters.deleted, "the lifecycle writer deleted no one"
        assert not {str(user_id) for user_id in counters.deleted} & set(stored)
        assert sorted(stored) == sorted(expected)
        mismatched = {
            key: (stored[key], expected[key]) for key in expected if stored[key] != expected[key]
        }
        assert not mismatched, list(mismatched.items())[:5]
        log = server.requests()
        checked = check_versions_only_grow(log)
        assert checked >= len(expected)
        outcomes: dict[int | None, int] = defaultdict(int)
        for entry in log:
            outcomes[entry["status"]] += 1
        print(
            f"\n{database_backend}: {counters.committed} committed changes "
            f"({counters.conflicts} conflicts retried), {len(counters.deleted)} deleted, "
            f"{len(expected)} contacts; {checked} upserts checked; statuses {dict(outcomes)}"
        )
    finally:
        for worker in workers:
            if worker.alive():
                worker.stop()
        sync.close()
