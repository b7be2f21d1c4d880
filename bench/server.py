"""Throughput of the reference Meisa server: upserts per second against ``/health/`` per second.

Both are measured on the same server, in the same run, over a real socket: uvicorn runs the app in a
subprocess and one keep-alive HTTP client sends requests back to back. The server holds the seed's
sequences and four automations (CONTRACT.md §6), so every upsert below fires at least one rule:

- ``unique``: each upsert creates a new contact with ``plan: free`` (the signup rule: a tag and an
  enrollment);
- ``repeated``: a fixed set of contacts is upserted again and again, each time moving its plan
  along free → pro → churned → free (the upgrade, churn and signup rules).

The figure of merit is the ratio upserts/s ÷ health/s (target ≥ 0.3): it says what the upsert path
(validation, matching, merge, change set, automations, activity, one transaction) costs relative to
the server's fixed per-request cost, and it holds up on a busy machine where absolute rates do not.
Measurements are interleaved in short slices, each upsert slice between two health slices, and
each ratio is the median of the per-slice ratios: on a shared machine the load changes from one
second to the next, and only rates measured side by side compare.

Usage::

    python bench/server.py                                   # SQLite, and PostgreSQL if configured
    python bench/server.py --database-url postgresql://postgres@127.0.0.1:5432/bench --rounds 12

PostgreSQL is used when ``--database-url`` names it, or from ``MEISA_BENCH_POSTGRES_URL`` (else
``MEISA_TEST_POSTGRES_URL``). The server's tables in that database are dropped before and after.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

BENCH_KEY = "meisa_test_benchmark_key_00000000000000000001"
PLAN_CYCLE = ("free", "pro", "churned")
TARGET_RATIO = 0.3
STARTUP_TIMEOUT = 60.0


def serve(
    database_url: str, port: int, *, certificate: str | None = None, control_plane: bool = False
) -> None:
    """Run the server (the subprocess side): the seed's automations, one key with huge limits;
    HTTPS with ``certificate`` (key and chain in one PEM file)."""
    import uvicorn

    from meisa_sync.server import create_app
    from meisa_sync.server.credentials import ALL_SCOPES
    from meisa_sync.server.seed import seed_config

    config = seed_config(
        api_keys=[
            {
                "key": BENCH_KEY,
                "scopes": list(ALL_SCOPES),
                "per_minute": 1_000_000_000,
                "per_hour": 1_000_000_000,
            }
        ],
        jwt_secret="benchmark",
    )
    app = create_app(database_url, config=config, control_plane=control_plane)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        ssl_certfile=certificate,
    )


def drop_server_tables(database_url: str) -> None:
    """Leave no server table behind in a shared database server."""
    from meisa_sync.server.db import make_engine
    from meisa_sync.server.models import Base

    engine = make_engine(database_url)
    try:
        Base.metadata.drop_all(engine)
    finally:
        engine.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_server(
    database_url: str,
    *,
    certificate: Path | None = None,
    control_plane: bool = False,
    verify: ssl.SSLContext | bool = True,
) -> Iterator[str]:
    """Start the server in a subprocess; yield its API base URL; stop it.

    With ``certificate`` it serves HTTPS (``verify`` then trusts its CA); ``control_plane`` serves
    ``/_meisa/`` (chaos, for added latency).
    """
    port = free_port()
    command = [sys.executable, __file__, "--serve", database_url, "--port", str(port)]
    if certificate is not None:
        command += ["--certificate", str(certificate)]
    if control_plane:
        command.append("--control-plane")
    process = subprocess.Popen(command, cwd=Path(__file__).resolve().parent.parent)
    scheme = "http" if certificate is None else "https"
    base_url = f"{scheme}://127.0.0.1:{port}/api/v1"
    try:
        wait_until_up(base_url, process, verify=verify)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_up(
    base_url: str, process: subprocess.Popen[bytes], *, verify: ssl.SSLContext | bool = True
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode} while starting")
        try:
            if httpx.get(f"{base_url}/health/", timeout=1.0, verify=verify).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the server did not answer /health/ within {STARTUP_TIMEOUT:.0f} s")


Send = Callable[[httpx.Client, int], httpx.Response]


def health(client: httpx.Client, _: int) -> httpx.Response:
    return client.get("/health/")


def upsert_unique(run: str) -> Send:
    def send(client: httpx.Client, index: int) -> httpx.Response:
        return client.post(
            "/contacts/upsert/",
            json={
                "email": f"bench-{run}-{index}@example.com",
                "external_id": f"{run}-{index}",
                "first_name": "Ada",
                "custom_fields": {"plan": "free", "signup_source": "benchmark"},
            },
        )

    return send


def upsert_repeated(run: str, contacts: int) -> Send:
    def send(client: httpx.Client, index: int) -> httpx.Response:
        visit, contact = divmod(index, contacts)
        return client.post(
            "/contacts/upsert/",
            json={
                "email": f"repeat-{run}-{contact}@example.com",
                "custom_fields": {"plan": PLAN_CYCLE[visit % len(PLAN_CYCLE)], "mrr": visit},
            },
        )

    return send


@dataclass
class Counter:
    """Where a workload resumes, so its requests stay unique (or keep cycling) across rounds."""

    next_index: int = 0


def rate(client: httpx.Client, send: Send, counter: Counter, seconds: float) -> float:
    """Requests per second sending back to back for ``seconds``; every response must be 2xx."""
    count = 0
    started = time.perf_counter()
    while True:
        response = send(client, counter.next_index)
        counter.next_index += 1
        count += 1
        if not response.is_success:
            raise SystemExit(
                f"{response.request.method} {response.request.url.path}: "
                f"{response.status_code} {response.text[:300]}"
            )
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return count / elapsed


@dataclass(frozen=True)
class Result:
    """Median rates, and the median of each upsert workload's ratios to the health checks measured
    just before and just after it (with their range)."""

    backend: str
    health: float
    unique: float
    repeated: float
    unique_ratio: float
    repeated_ratio: float
    ratio_range: tuple[float, float]


def measure(database_url: str, *, seconds: float, rounds: int, contacts: int) -> Result:
    run = uuid.uuid4().hex[:8]
    health_counter = Counter()
    upserts: dict[str, tuple[Send, Counter]] = {
        "unique": (upsert_unique(run), Counter()),
        "repeated": (upsert_repeated(run, contacts), Counter()),
    }
    samples: dict[str, list[float]] = {name: [] for name in upserts}
    ratios: dict[str, list[float]] = {name: [] for name in upserts}
    with (
        running_server(database_url) as base_url,
        httpx.Client(base_url=base_url, headers={"X-API-Key": BENCH_KEY}, timeout=30) as client,
    ):
        # Warm up: connections, caches, the first contacts of the repeated set.
        for send, counter in upserts.values():
            rate(client, send, counter, min(seconds, 0.5))
        # Health checks bracket every upsert slice, so each ratio compares rates measured within
        # a second of each other: the machine's load changes slower than that.
        healths = [rate(client, health, health_counter, seconds)]
        for _ in range(rounds):
            for name, (send, counter) in upserts.items():
                sample = rate(client, send, counter, seconds)
                healths.append(rate(client, health, health_counter, seconds))
                samples[name].append(sample)
                ratios[name].append(sample / statistics.mean(healths[-2:]))
    every_ratio = [ratio for values in ratios.values() for ratio in values]
    return Result(
        backend=backend_label(database_url),
        health=statistics.median(healths),
        unique=statistics.median(samples["unique"]),
        repeated=statistics.median(samples["repeated"]),
        unique_ratio=statistics.median(ratios["unique"]),
        repeated_ratio=statistics.median(ratios["repeated"]),
        ratio_range=(min(every_ratio), max(every_ratio)),
    )


def backend_label(database_url: str) -> str:
    """``sqlite``, ``postgresql``..., then any connection options: they change the figures."""
    parts = urllib.parse.urlsplit(database_url)
    backend = parts.scheme.split("+", 1)[0]
    return f"{backend} {urllib.parse.unquote(parts.query)}" if parts.query else backend


def report(results: list[Result]) -> str:
    width = max(12, *(len(result.backend) + 2 for result in results))
    lines = [
        f"{'backend':<{width}}{'health/s':>10}{'unique/s':>10}{'ratio':>8}"
        f"{'repeated/s':>12}{'ratio':>8}{'ratio range':>14}",
    ]
    for result in results:
        low, high = result.ratio_range
        lines.append(
            f"{result.backend:<{width}}{result.health:>10.0f}{result.unique:>10.0f}"
            f"{result.unique_ratio:>8.2f}{result.repeated:>12.0f}{result.repeated_ratio:>8.2f}"
            f"{f'{low:.2f}-{high:.2f}':>14}"
        )
    worst = min(min(result.unique_ratio, result.repeated_ratio) for result in results)
    verdict = "met" if worst >= TARGET_RATIO else "NOT met"
    lines.append(f"lowest upsert/health ratio {worst:.2f}; target >= {TARGET_RATIO}: {verdict}")
    return "\n".join(lines)


def database_urls(given: list[str], scratch: Path) -> list[str]:
    if given:
        return given
    urls = [f"sqlite:///{scratch / 'bench-server.db'}"]
    postgres = os.environ.get("MEISA_BENCH_POSTGRES_URL") or os.environ.get(
        "MEISA_TEST_POSTGRES_URL"
    )
    if postgres:
        urls.append(postgres)
    return urls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", action="append", default=[], help="repeatable")
    parser.add_argument("--seconds", type=float, default=0.5, help="per slice of a workload")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--contacts", type=int, default=50, help="size of the repeated set")
    parser.add_argument("--serve", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--certificate", help=argparse.SUPPRESS)
    parser.add_argument("--control-plane", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, certificate=args.certificate, control_plane=args.control_plane)
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="meisa-bench-") as scratch:
        for url in database_urls(args.database_url, Path(scratch)):
            if not url.startswith("sqlite"):
                drop_server_tables(url)
            try:
                results.append(
                    measure(url, seconds=args.seconds, rounds=args.rounds, contacts=args.contacts)
                )
            finally:
                if not url.startswith("sqlite"):
                    drop_server_tables(url)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
