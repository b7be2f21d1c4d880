"""Claim scaling (issue 4): claim + ack of a batch of 100 objects with 1,000,000 records waiting
vs 1,000, on PostgreSQL (and MariaDB). Target: at most 2 times slower. Also with 1,000 due behind
1,000,000 backing off (older records, due in an hour: Meisa was down), held to the same target.

Each size is loaded server-side (``INSERT ... SELECT`` over ``generate_series``, or MariaDB's
``seq_1_to_N``: one pending record per object, and a state row for every object as if each had
been synced before, so the claim's anti-join to leased objects meets a state table as large as the
outbox; the backing-off records belong to other objects and have older ids), then analysed. A
round is one ``SQLAlchemyStore.claim(limit=100)`` followed by one ``ack`` per claimed object, as
the drain worker does (then, untimed, the same objects change again, so the count waiting stays
put). Each size's figure is the median of its rounds, after a warm-up round; the sizes live side
by side (schemas, or databases on MariaDB, ``meisa_bench_claim_1k``, ``..._1m`` and
``..._1m_backoff``) and their rounds are interleaved, so the ratios hold on a busy machine.

Usage::

    python bench/claim.py                                       # MEISA_TEST_POSTGRES_URL or local
    python bench/claim.py --database-url postgresql://postgres@127.0.0.1:5432/bench --rounds 21
    python bench/claim.py --database-url mysql+pymysql://root@127.0.0.1:3306/test   # MariaDB
    python bench/claim.py --explain                             # also print the candidate plan

The run creates and drops those two schemas (or databases).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, MetaData, create_engine, text

from meisa_sync.records import NewChange
from meisa_sync_sqlalchemy.store import SQLAlchemyStore

BATCH = 100
LEASE = timedelta(minutes=5)
SMALL = 1_000


def sizes(large: int) -> dict[str, tuple[int, int]]:
    """schema: (records due, records backing off)."""
    return {
        "meisa_bench_claim_1k": (SMALL, 0),
        "meisa_bench_claim_1m": (large, 0),
        "meisa_bench_claim_1m_backoff": (SMALL, large),
    }


BACKING_OFF_PK = 10_000_000  # their objects' primary keys start here


@dataclass
class Outbox:
    schema: str
    records: int
    backing_off: int
    store: SQLAlchemyStore
    claim_ms: list[float] = field(default_factory=list)
    round_ms: list[float] = field(default_factory=list)


def numbers(engine: Engine, count: int) -> str:
    """A FROM clause yielding ``n`` = 1..count."""
    if engine.dialect.name == "postgresql":
        return f"generate_series(1, {count}) AS n"
    return f"(SELECT seq AS n FROM seq_1_to_{count}) AS numbers"


def drop(engine: Engine, schema: str) -> None:
    kind = "SCHEMA" if engine.dialect.name == "postgresql" else "DATABASE"
    cascade = " CASCADE" if engine.dialect.name == "postgresql" else ""
    with engine.begin() as connection:
        connection.execute(text(f"DROP {kind} IF EXISTS {schema}{cascade}"))


def load(engine: Engine, schema: str, records: int, backing_off: int) -> SQLAlchemyStore:
    """A store in ``schema``: ``records`` due pending records, one per object, after
    ``backing_off`` older ones due in an hour; a state row for every object."""
    drop(engine, schema)
    kind = "SCHEMA" if engine.dialect.name == "postgresql" else "DATABASE"
    with engine.begin() as connection:
        connection.execute(text(f"CREATE {kind} {schema}"))
    store = SQLAlchemyStore(engine, metadata=MetaData(schema=schema))
    store.create_tables()
    postgres = engine.dialect.name == "postgresql"
    now = "now()" if postgres else "utc_timestamp(6)"
    later = "now() + interval '1 hour'" if postgres else "utc_timestamp(6) + interval 1 hour"
    batches = [(BACKING_OFF_PK, backing_off, later, 3)] if backing_off else []
    batches.append((0, records, now, 0))
    with engine.begin() as connection:
        for first_pk, count, due, attempts in batches:
            pk = f"(n + {first_pk})::text" if postgres else f"CAST(n + {first_pk} AS CHAR)"
            connection.execute(
                text(
                    f"INSERT INTO {schema}.meisa_sync_outbox (model, object_pk, operation,"
                    f" priority, state, attempts, created_at, available_at)"
                    f" SELECT 'users', {pk}, 'upsert', 0, 'pending', {attempts}, {now}, {due}"
                    f" FROM {numbers(engine, count)}"
                )
            )
            connection.execute(
                text(
                    f"INSERT INTO {schema}.meisa_sync_object_state (model, object_pk,"
                    f" payload_hash, remote_id, last_sent_at)"
                    f" SELECT 'users', {pk}, md5({pk}), md5({pk}), {now}"
                    f" FROM {numbers(engine, count)}"
                )
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in ("meisa_sync_outbox", "meisa_sync_object_state"):
            if postgres:
                connection.execute(text(f"VACUUM ANALYZE {schema}.{table}"))
            else:
                connection.execute(text(f"ANALYZE TABLE {schema}.{table}")).all()
    return store


def one_round(outbox: Outbox, worker: str) -> None:
    started = time.perf_counter()
    claimed = outbox.store.claim(worker, limit=BATCH, lease=LEASE)
    claimed_at = time.perf_counter()
    for claim in claimed:
        outbox.store.ack(worker, claim.key, claim.record_ids, payload_hash="0" * 64)
    finished = time.perf_counter()
    if len(claimed) != BATCH:
        raise SystemExit(f"{outbox.schema}: claimed {len(claimed)} objects, expected {BATCH}")
    outbox.claim_ms.append((claimed_at - started) * 1000)
    outbox.round_ms.append((finished - started) * 1000)
    # The same objects change again: as many records wait after the round as before it.
    outbox.store.enqueue([NewChange(claim.key) for claim in claimed])


def explain(engine: Engine, schema: str) -> str:
    """The plan of the claim's first candidate page, as the store runs it."""
    now = "now()" if engine.dialect.name == "postgresql" else "utc_timestamp(6)"
    query = f"""
        SELECT o.id, o.available_at, o.model, o.object_pk, s.model
        FROM {schema}.meisa_sync_outbox o
        LEFT OUTER JOIN {schema}.meisa_sync_object_state s
          ON s.model = o.model AND s.object_pk = o.object_pk
        WHERE o.state = 'pending' AND o.priority = 0 AND o.available_at <= {now}
          AND (s.model IS NULL OR s.lease_expires_at IS NULL OR s.lease_expires_at <= {now}
               OR s.lease_owner = 'bench')
        ORDER BY o.available_at, o.id LIMIT 200"""
    analyse = "EXPLAIN (ANALYZE, BUFFERS)" if engine.dialect.name == "postgresql" else "EXPLAIN"
    with engine.connect() as connection:
        rows = connection.execute(text(f"{analyse} {query}"))
        return "\n".join(" | ".join(str(value) for value in row) for row in rows)


def report(outboxes: list[Outbox], rounds: int) -> None:
    print(f"\nclaim + ack of {BATCH} objects, median of {rounds} rounds:")
    for outbox in outboxes:
        claim = statistics.median(outbox.claim_ms)
        whole = statistics.median(outbox.round_ms)
        behind = f" (behind {outbox.backing_off:,} backing off)" if outbox.backing_off else ""
        print(
            f"  {outbox.records:>9,} due{behind:<30}: claim {claim:6.1f} ms, "
            f"claim + ack {whole:6.1f} ms"
        )
    small, *others = outboxes
    for large in others:
        claim_ratio = statistics.median(large.claim_ms) / statistics.median(small.claim_ms)
        round_ratio = statistics.median(large.round_ms) / statistics.median(small.round_ms)
        label = (
            f"{SMALL:,} due behind {large.backing_off:,} backing off"
            if large.backing_off
            else f"{large.records:,} due"
        )
        print(
            f"  {label} vs {SMALL:,} due: claim {claim_ratio:.2f}x, claim + ack {round_ratio:.2f}x "
            f"(target <= 2: {'met' if round_ratio <= 2 else 'NOT met'})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "MEISA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument(
        "--large",
        type=int,
        default=1_000_000,
        help="records in the large outboxes (the tests run the bench with a few thousand)",
    )
    arguments = parser.parse_args()

    engine = create_engine(arguments.database_url)
    if engine.dialect.name not in {"postgresql", "mysql"}:
        raise SystemExit("bench/claim.py measures PostgreSQL or MariaDB: pass such a URL")
    try:
        outboxes = []
        for schema, (records, backing_off) in sizes(arguments.large).items():
            started = time.perf_counter()
            store = load(engine, schema, records, backing_off)
            outboxes.append(Outbox(schema, records, backing_off, store))
            loaded = records + backing_off
            print(f"loaded {loaded:>9,} records in {time.perf_counter() - started:.1f} s")
        if arguments.explain:
            for outbox in outboxes:
                print(f"\n{outbox.schema}:\n{explain(engine, outbox.schema)}")
        for outbox in outboxes:
            one_round(outbox, "warm-up")
            outbox.claim_ms.clear()
            outbox.round_ms.clear()
        for round_ in range(arguments.rounds):
            for outbox in outboxes if round_ % 2 else reversed(outboxes):
                one_round(outbox, f"bench-{round_}")
        report(outboxes, arguments.rounds)
    finally:
        for schema in sizes(arguments.large):
            drop(engine, schema)
        engine.dispose()


if __name__ == "__main__":
    main()
