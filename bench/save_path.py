"""Save-path benchmarks for the SQLAlchemy capture (issue 5).

Every figure is a ratio measured in one run, with the two sides interleaved round by round, so it
holds on a busy machine:

1. **Plugin overhead**: committing a change to a user (one UPDATE and the commit) in a session the
   registration watches (the UPDATE, one outbox INSERT, the commit) ÷ the same in a session it does
   not watch, on a SQLite file and on PostgreSQL. Target ≤ 1.3.
2. **Against the seed's way**: the seed's ``sync_user_to_meisa`` posts to Meisa with
   ``requests.post`` (no ``Session``) right after the save, in the request that saved. Meisa is
   ``https://api.meisa.io``, so the reference server (in a process of its own, started by
   ``bench/server.py``'s ``running_server``) serves HTTPS on a local socket, with no latency
   added. Each such call builds a new connection pool: urllib3 loads the CA bundle (certifi's,
   which the seed's code loads, plus the bench's throwaway CA; about 14 ms of CPU here) and does a
   TLS handshake, on every save, wherever Meisa is. Ratio of its time to the plugin's. Target
   ≥ 10. Also printed: the same over plain HTTP, which the seed's code never does (no TLS, no
   latency: the floor of its cost, for reference), and over HTTPS with ``--latency-ms`` (50) of
   latency added by the server's control plane, as a remote API has.
3. **Backfill rate**: users recorded per second by ``SQLAlchemySync.backfill`` ÷ rows per second of
   a plain bulk insert of as many rows, in batches of the same size, into a table of the outbox's
   shape. Target ≥ 0.5.

Usage::

    python bench/save_path.py                       # SQLite file; PostgreSQL when configured:
    python bench/save_path.py --postgres-url postgresql://postgres@127.0.0.1:5432/bench_save
    python bench/save_path.py --rounds 7 --commits 200 --backfill-users 20000

``--postgres-url`` defaults to ``MEISA_TEST_POSTGRES_URL``; the run creates and drops its tables
there (don't point it at data you keep).
"""

from __future__ import annotations

import argparse
import os
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import certifi  # noqa: E402
import requests  # noqa: E402
import trustme  # noqa: E402
from sqlalchemy import Engine, MetaData, create_engine, insert, select  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402
from sqlalchemy.sql.elements import quoted_name  # noqa: E402

from bench.server import BENCH_KEY, running_server  # noqa: E402
from meisa_sync.demo.mapping import UserMapping  # noqa: E402
from meisa_sync.demo.models import Base, Subscription, User  # noqa: E402
from meisa_sync.records import NewChange, ObjectKey, Priority  # noqa: E402
from meisa_sync_sqlalchemy import SQLAlchemySync  # noqa: E402
from meisa_sync_sqlalchemy.writing import OutboxWriter  # noqa: E402

USERS = 50


def median_of(rounds: list[float]) -> float:
    return statistics.median(rounds)


def prepare(engine: Engine) -> list[int]:
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        users = [
            User(email=f"u{i}@example.com", first_name="Bench", subscription=Subscription())
            for i in range(USERS)
        ]
        session.add_all(users)
        session.commit()
        return [user.id for user in users]


def commit_changes(
    maker: sessionmaker[Session],
    ids: list[int],
    commits: int,
    after: Callable[[User], None] | None = None,
) -> float:
    """Seconds per commit of a one-column change to a user."""
    started = time.perf_counter()
    for number in range(commits):
        with maker() as session:
            user = session.get_one(User, ids[number % len(ids)])
            user.first_name = f"Bench {number}"
            session.commit()
            if after is not None:
                after(user)
    return (time.perf_counter() - started) / commits


def seed_way(base_url: str) -> Callable[[User], None]:
    """The seed documentation's ``sync_user_to_meisa``, called right after the save."""

    def sync_user_to_meisa(user: User) -> None:
        response = requests.post(
            f"{base_url}/contacts/upsert/",
            headers={"X-API-Key": BENCH_KEY, "Content-Type": "application/json"},
            json={
                "email": user.email,
                "external_id": str(user.id),
                "first_name": user.first_name,
                "last_name": user.last_name,
                "custom_fields": {
                    "plan": user.subscription.plan if user.subscription else "free",
                    "mrr": float(user.subscription.mrr) if user.subscription else 0,
                    "signup_date": user.created_at.isoformat(),
                },
            },
            timeout=30,
        )
        response.raise_for_status()

    return sync_user_to_meisa


@dataclass(frozen=True)
class Meisa:
    """The reference server twice, on local sockets: over HTTPS (as Meisa) and over plain HTTP."""

    https_url: str
    http_url: str


@contextmanager
def local_meisa(folder: Path) -> Iterator[Meisa]:
    """Serve both, each in a process of its own (Meisa is another machine, not a thread of the
    app); point ``requests`` at certifi's bundle plus the throwaway CA that signed ours."""
    ca = trustme.CA()
    certificate = folder / "meisa-cert.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(certificate))
    bundle = folder / "ca-bundle.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes() + ca.cert_pem.bytes())
    os.environ["REQUESTS_CA_BUNDLE"] = str(bundle)
    trusting = ssl.create_default_context(cafile=str(bundle))
    with (
        running_server(
            f"sqlite:///{folder / 'meisa-https.db'}",
            certificate=certificate,
            control_plane=True,
            verify=trusting,
        ) as https_url,
        running_server(f"sqlite:///{folder / 'meisa-http.db'}") as http_url,
    ):
        yield Meisa(https_url, http_url)


def seed_way_with_latency(
    url: str, rounds: int, commits: int, base_url: str, latency_ms: float, plugin: float
) -> None:
    """The seed's way when Meisa is a remote API: the control plane adds ``latency_ms``."""
    engine = create_engine(url)
    try:
        ids = prepare(engine)
        plain = sessionmaker(engine, expire_on_commit=False)
        chaos = f"{base_url.removesuffix('/api/v1')}/_meisa/chaos/"
        requests.post(chaos, json={"latency_ms": [latency_ms, latency_ms]}, timeout=10)
        try:
            seed = [commit_changes(plain, ids, commits, seed_way(base_url)) for _ in range(rounds)]
        finally:
            requests.post(chaos, json={}, timeout=10)
        seeds = median_of(seed)
        print(
            f"[{engine.dialect.name}] the seed's way over HTTPS with {latency_ms:.0f} ms of API "
            f"latency: {seeds * 1e3:.3f} ms: the plugin is {seeds / plugin:.1f}x faster"
        )
        Base.metadata.drop_all(engine)
    finally:
        engine.dispose()


def overhead(url: str, rounds: int, commits: int, meisa: Meisa | None) -> float:
    """Print the plugin's overhead (and the seed's way); return the plugin's seconds per save."""
    engine = create_engine(url)
    try:
        ids = prepare(engine)
        watched = sessionmaker(engine, expire_on_commit=False)
        plain = sessionmaker(engine, expire_on_commit=False)
        with SQLAlchemySync(watched, [UserMapping()]):
            Base.metadata.create_all(engine)
            commit_changes(watched, ids, commits)  # warm up both
            commit_changes(plain, ids, commits)
            with_plugin: list[float] = []
            without: list[float] = []
            seed_https: list[float] = []
            seed_http: list[float] = []
            for _ in range(rounds):
                without.append(commit_changes(plain, ids, commits))
                with_plugin.append(commit_changes(watched, ids, commits))
                if meisa is not None:
                    few = commits // 8 or 1
                    https = seed_way(meisa.https_url)
                    seed_https.append(commit_changes(plain, ids, few, https))
                    http = seed_way(meisa.http_url)
                    seed_http.append(commit_changes(plain, ids, few, http))
        backend = engine.dialect.name
        plugin, baseline = median_of(with_plugin), median_of(without)
        print(
            f"[{backend}] commit of a user change: {baseline * 1e3:.3f} ms without the plugin, "
            f"{plugin * 1e3:.3f} ms with it: ratio {plugin / baseline:.2f} (target <= 1.3)"
        )
        if meisa is not None:
            https_time, http_time = median_of(seed_https), median_of(seed_http)
            print(
                f"[{backend}] the seed's way (save, then requests.post to Meisa over HTTPS; "
                f"loopback, no latency): {https_time * 1e3:.3f} ms: the plugin is "
                f"{https_time / plugin:.1f}x faster (target >= 10)"
            )
            print(
                f"[{backend}]   the same over plain HTTP, which the seed's code never does: "
                f"{http_time * 1e3:.3f} ms: {http_time / plugin:.1f}x (the floor, for reference)"
            )
        Base.metadata.drop_all(engine)
        return plugin
    finally:
        engine.dispose()


def backfill_rate(url: str, rounds: int, users: int, batch_size: int) -> None:
    engine = create_engine(url)
    try:
        Base.metadata.drop_all(engine)
        sync = SQLAlchemySync(sessionmaker(engine), [UserMapping()])
        Base.metadata.create_all(engine)
        with engine.begin() as connection:
            now = datetime.now(timezone.utc)
            connection.execute(
                insert(User),
                [
                    {"email": f"b{i}@example.com", "first_name": "B", "created_at": now}
                    for i in range(users)
                ],
            )
        plain_metadata = MetaData()
        plain_table = sync.tables.outbox.to_metadata(plain_metadata, name="bench_plain_outbox")
        for index in list(plain_table.indexes):  # the same indexes, under names of their own
            index.name = quoted_name(f"bench_plain_{index.name}", None)
        plain_metadata.create_all(engine)
        writer = OutboxWriter(plain_table)
        with engine.connect() as connection:
            pks = [str(pk) for pk in connection.scalars(select(User.id).order_by(User.id))]
        changes = [NewChange(ObjectKey("users", pk), priority=Priority.BACKFILL) for pk in pks]

        def plain_insert() -> float:
            started = time.perf_counter()
            for start in range(0, len(changes), batch_size):
                with engine.begin() as connection:
                    writer.write(connection, changes[start : start + batch_size])
            return time.perf_counter() - started

        def backfill() -> float:
            started = time.perf_counter()
            [result] = sync.backfill(batch_size=batch_size, restart=True)
            assert result.recorded == users
            return time.perf_counter() - started

        plain_times, backfill_times = [], []
        for _ in range(rounds):
            plain_times.append(plain_insert())
            backfill_times.append(backfill())
        plain_rate = users / median_of(plain_times)
        backfill_rate = users / median_of(backfill_times)
        print(
            f"[{engine.dialect.name}] backfill of {users} users: {backfill_rate:,.0f} records/s; "
            f"plain bulk insert {plain_rate:,.0f} rows/s: ratio {backfill_rate / plain_rate:.2f} "
            "(target >= 0.5)"
        )
        sync.close()
        Base.metadata.drop_all(engine)
        plain_metadata.drop_all(engine)
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres-url", default=os.environ.get("MEISA_TEST_POSTGRES_URL"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commits", type=int, default=200, help="commits per side per round")
    parser.add_argument("--backfill-users", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=50.0,
        help="also time the seed's way over HTTPS with this API latency added (0: off)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meisa-bench-") as folder:
        urls = [f"sqlite:///{Path(folder) / 'app.db'}"]
        if args.postgres_url:
            urls.append(args.postgres_url)
        with local_meisa(Path(folder)) as meisa:
            plugin = [overhead(url, args.rounds, args.commits, meisa) for url in urls]
            if args.latency_ms:
                seed_way_with_latency(
                    urls[0], args.rounds, 20, meisa.https_url, args.latency_ms, plugin[0]
                )
        for url in urls:
            backfill_rate(url, args.rounds, args.backfill_users, args.batch_size)


if __name__ == "__main__":
    main()
