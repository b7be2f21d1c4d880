"""Drain benchmarks (issue 4): the worker against the reference server over a real socket.

Every figure is a ratio or a count measured in one run, so it holds on a busy machine:

1. **Drain rate** (limits off): users synced per second by ``Worker.run_once`` (claim, load,
   build, hash, send over kept-alive connections, ack) ÷ the same by an *ideal client* (the same
   payloads built beforehand, sent by the same number of threads over one kept-alive client, each
   with an ``Idempotency-Key`` like the worker's, which the server stores).
   Target ≥ 0.8. Also ÷ the seed's *naive loop* (one ``requests.post`` per user, in order, a new
   connection each). Rounds are interleaved; each figure is the median of its rounds; the server's
   contacts are reset before every measured drain so each one creates the same contacts.
2. **Coalescing**: 10,000 changes over 1,000 users (each changed 10 times) cost ≤ 1,000 requests.
3. **Re-saving unchanged users costs 0**: a change to an unmapped column records nothing, and a
   backfill of every user (1,000 records) is drained without a request (no-op suppression).
4. **Pacing** (``--pacing-seconds``, at least 90): a key limited per minute; the worker with a
   ``Pacer`` runs that long with plenty to send. Target: no 429 and ≥ 95 % of the requests the
   limits admit in the same span (what a client sending the instant it may would get).

Usage::

    python bench/drain.py                                     # SQLite file, all four parts
    python bench/drain.py --database-url postgresql://postgres@127.0.0.1:5432/bench_drain
    python bench/drain.py --skip-pacing --rounds 5

The application database's tables are created and dropped by the run (don't point it at data you
keep). The reference server runs in a subprocess on its own SQLite file.
"""

from __future__ import annotations

import argparse
import bisect
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import requests  # noqa: E402
from sqlalchemy import Engine, create_engine, select, update  # noqa: E402
from sqlalchemy.orm import Session, selectinload, sessionmaker  # noqa: E402

from meisa_sync.client import MeisaClient  # noqa: E402
from meisa_sync.demo.mapping import UserMapping  # noqa: E402
from meisa_sync.demo.models import Base, Subscription, User  # noqa: E402
from meisa_sync.pacing import Pacer  # noqa: E402
from meisa_sync.report import DrainReport  # noqa: E402
from meisa_sync.worker import Worker  # noqa: E402
from meisa_sync_sqlalchemy import SQLAlchemySync  # noqa: E402
from tests.integration.processes import ServerProcess  # noqa: E402

RATE_TARGET = 0.8
PACING_TARGET = 0.95
PLANS = ("free", "pro", "churned")


@dataclass
class Application:
    """The demo application with meisa-sync registered on it."""

    engine: Engine
    sessions: sessionmaker[Session]
    sync: SQLAlchemySync

    def users(self) -> list[User]:
        with self.sessions() as session:
            query = select(User).options(selectinload(User.subscription)).order_by(User.id)
            return list(session.scalars(query))

    def pending(self) -> int:
        return self.sync.store.stats().pending

    def touch_all(self, marker: str, *, per_transaction: int = 100) -> None:
        """One mapped change per user (its last name), ``per_transaction`` users per commit."""
        ids = [user.id for user in self.users()]
        for start in range(0, len(ids), per_transaction):
            with self.sessions.begin() as session:
                chunk = ids[start : start + per_transaction]
                for user in session.scalars(select(User).where(User.id.in_(chunk))):
                    user.last_name = f"{marker}-{user.id}"


@contextmanager
def application(database_url: str, users: int) -> Iterator[Application]:
    engine = create_engine(database_url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    sync = SQLAlchemySync(sessions, [UserMapping()])
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    try:
        with sessions.begin() as session:
            for n in range(1, users + 1):
                session.add(
                    User(
                        id=n,
                        email=f"user{n}@example.com",
                        first_name=f"User{n}",
                        last_name="Initial",
                        subscription=Subscription(plan=PLANS[n % 3], mrr=Decimal(n % 200)),
                    )
                )
        yield Application(engine, sessions, sync)
    finally:
        sync.close()
        Base.metadata.drop_all(engine)
        engine.dispose()


def drain(app: Application, client: MeisaClient, concurrency: int) -> tuple[DrainReport, float]:
    with Worker(app.sync.sync_app, client, concurrency=concurrency, batch_size=100) as worker:
        started = time.perf_counter()
        report = worker.run_once()
        return report, time.perf_counter() - started


def ideal(
    payloads: Sequence[dict[str, Any]], client: MeisaClient, concurrency: int, run: str
) -> float:
    """Seconds for the same payloads, prebuilt, over ``concurrency`` threads sharing ``client``.

    Each request carries an ``Idempotency-Key`` as the worker's do (CONTRACT.md §1: the server
    stores the response), so both make the server do the same work.
    """

    def send(numbered: tuple[int, dict[str, Any]]) -> int:
        number, payload = numbered
        return client.upsert(payload, idempotency_key=f"{run}-{number}").status_code

    with ThreadPoolExecutor(concurrency) as pool:
        started = time.perf_counter()
        for status in pool.map(send, enumerate(payloads)):
            assert status in {200, 201}
        return time.perf_counter() - started


def naive(users: Sequence[User], server: ServerProcess) -> float:
    """The seed's ``sync_user_to_meisa`` for each user in turn (its Decimal made a float)."""
    started = time.perf_counter()
    for user in users:
        assert user.subscription is not None
        response = requests.post(
            f"{server.base_url}/contacts/upsert/",
            headers={"X-API-Key": server.api_key, "Content-Type": "application/json"},
            json={
                "email": user.email,
                "external_id": str(user.id),
                "first_name": user.first_name,
                "last_name": user.last_name,
                "custom_fields": {
                    "plan": user.subscription.plan,
                    "mrr": float(user.subscription.mrr),
                    "signup_date": user.created_at.isoformat(),
                },
            },
            timeout=30,
        )
        response.json()
        assert response.status_code in {200, 201}
    return time.perf_counter() - started


def drain_rates(
    app: Application, server: ServerProcess, *, rounds: int, concurrency: int
) -> tuple[float, float]:
    """Median of (worker rate ÷ ideal rate) and of (worker rate ÷ naive rate) over ``rounds``."""
    mapping = UserMapping()
    ideal_ratios, naive_ratios = [], []
    with MeisaClient(server.api_key, base_url=server.base_url) as client:
        for round_ in range(rounds):
            app.touch_all(f"rate{round_}")
            users = app.users()
            server.reset()
            report, worker_seconds = drain(app, client, concurrency)
            assert report.sent == len(users) and report.requests == len(users), report.summary()
            payloads = [mapping.build(user) for user in users]
            server.reset()
            ideal_seconds = ideal(payloads, client, concurrency, f"ideal-{round_}")
            server.reset()
            naive_seconds = naive(users, server)
            rate = len(users) / worker_seconds
            ideal_ratios.append(ideal_seconds / worker_seconds)
            naive_ratios.append(naive_seconds / worker_seconds)
            print(
                f"  round {round_ + 1}: worker {rate:.0f} users/s, "
                f"ideal {len(users) / ideal_seconds:.0f}/s, "
                f"naive {len(users) / naive_seconds:.0f}/s"
            )
    return statistics.median(ideal_ratios), statistics.median(naive_ratios)


def coalescing(app: Application, server: ServerProcess, *, concurrency: int) -> None:
    users = len(app.users())
    before = app.pending()
    for change in range(10):
        app.touch_all(f"change{change}")
    changes = app.pending() - before
    logged = len(server.requests())
    with MeisaClient(server.api_key, base_url=server.base_url) as client:
        report, _ = drain(app, client, concurrency)
    requests_seen = len(server.requests()) - logged
    verdict = "OK" if report.requests <= users and requests_seen == report.requests else "FAIL"
    print(
        f"coalescing: {changes} changes over {users} users cost {report.requests} requests "
        f"(server saw {requests_seen}; {report.coalesced_records} records coalesced)  "
        f"[target <= {users}] {verdict}"
    )


def resave(app: Application, server: ServerProcess, *, concurrency: int) -> None:
    users = len(app.users())
    before = app.pending()
    with app.sessions.begin() as session:
        session.execute(update(User).values(last_login_at=User.created_at))
    unmapped = app.pending() - before
    app.sync.backfill()
    backfilled = app.pending()
    logged = len(server.requests())
    with MeisaClient(server.api_key, base_url=server.base_url) as client:
        report, _ = drain(app, client, concurrency)
    requests_seen = len(server.requests()) - logged
    verdict = "OK" if unmapped == 0 and report.requests == 0 and requests_seen == 0 else "FAIL"
    print(
        f"re-save: an unmapped change to {users} users recorded {unmapped} changes; "
        f"a backfill of {backfilled} records cost {report.requests} requests "
        f"({report.unchanged} unchanged; server saw {requests_seen})  [target 0] {verdict}"
    )


def admissible(windows: Sequence[tuple[int, float]], duration: float) -> int:
    """What the limits admit in ``duration`` to a client that sends the instant it may."""
    admitted: list[float] = []
    t = 0.0
    while True:
        for limit, seconds in windows:
            inside = admitted[bisect.bisect_right(admitted, t - seconds) :]
            if len(inside) >= limit:
                t = max(t, inside[len(inside) - limit] + seconds)
        if t >= duration:
            return len(admitted)
        admitted.append(t)


def pacing(app: Application, workdir: Path, *, seconds: float, per_minute: int) -> None:
    windows = ((per_minute, 60.0), (1000, 3600.0))
    with ServerProcess(
        workdir / "paced", per_minute=per_minute, per_hour=1000, request_log_size=100_000
    ) as server:
        app.touch_all("paced")
        stop = threading.Event()
        with MeisaClient(server.api_key, base_url=server.base_url) as client:
            worker = Worker(app.sync.sync_app, client, concurrency=8, pacer=Pacer(), idle_poll=0.5)
            runner = threading.Thread(
                target=worker.run, args=(stop,), kwargs={"handle_signals": False}
            )
            started = time.monotonic()
            runner.start()
            time.sleep(seconds)
            stop.set()
            elapsed = time.monotonic() - started
            runner.join()
            worker.close()
        log = [entry for entry in server.requests() if entry["path"].startswith("/api/v1/contacts")]
    admitted = sum(1 for entry in log if entry["status"] in {200, 201})
    refused = sum(1 for entry in log if entry["status"] == 429)
    budget = admissible(windows, elapsed)
    share = admitted / budget
    verdict = "OK" if refused == 0 and share >= PACING_TARGET else "FAIL"
    print(
        f"pacing: {elapsed:.0f} s at {per_minute}/min: {admitted} admitted, "
        f"{refused} refused (429), "
        f"{share:.1%} of the {budget} the limits admit  [target no 429, >= 95%] {verdict}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="the application database (default: a SQLite file)")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pacing-seconds", type=float, default=95.0)
    parser.add_argument("--per-minute", type=int, default=60)
    parser.add_argument("--skip-pacing", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_pacing and args.pacing_seconds < 90:
        parser.error("--pacing-seconds: the pacing run lasts at least 90 s")
    with tempfile.TemporaryDirectory(prefix="meisa-bench-drain-") as tmp:
        workdir = Path(tmp)
        database_url = args.database_url or f"sqlite:///{workdir / 'app.db'}"
        print(f"application database: {database_url.split('@')[-1]}; {args.users} users")
        with (
            application(database_url, args.users) as app,
            ServerProcess(workdir / "server", request_log_size=1_000_000) as server,
        ):
            with MeisaClient(server.api_key, base_url=server.base_url) as client:
                drain(app, client, args.concurrency)  # the initial sync; warms both sides up
            vs_ideal, vs_naive = drain_rates(
                app, server, rounds=args.rounds, concurrency=args.concurrency
            )
            verdict = "OK" if vs_ideal >= RATE_TARGET else "FAIL"
            print(
                f"drain rate: {vs_ideal:.2f} x the ideal client  [target >= {RATE_TARGET}] "
                f"{verdict}; {vs_naive:.1f} x the seed's naive loop"
            )
            coalescing(app, server, concurrency=args.concurrency)
            resave(app, server, concurrency=args.concurrency)
            if not args.skip_pacing:
                pacing(app, workdir, seconds=args.pacing_seconds, per_minute=args.per_minute)
    return 0


if __name__ == "__main__":
    sys.exit(main())
