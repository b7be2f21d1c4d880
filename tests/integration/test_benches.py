"""The benchmarks under ``bench/`` still run, end to end, at toy sizes.

Each bench runs as a subprocess, as a person would run it, and must exit 0 and print its report
lines. Their figures are not checked: at these sizes, and on a shared machine, they mean nothing
(docs/benchmarks.md has the real runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.databases import server_url

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_bench(name: str, *arguments: str, **environment: str) -> str:
    completed = subprocess.run(
        [sys.executable, str(BENCH / name), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **environment},
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def test_save_path() -> None:
    output = run_bench(
        "save_path.py",
        *("--rounds", "1", "--commits", "8", "--backfill-users", "50", "--batch-size", "20"),
        *("--latency-ms", "5", "--postgres-url", ""),
    )
    assert "[sqlite] commit of a user change:" in output
    assert "the seed's way (save, then requests.post to Meisa over HTTPS" in output
    assert "the same over plain HTTP" in output
    assert "the seed's way over HTTPS with 5 ms of API latency" in output
    assert "[sqlite] backfill of 50 users:" in output


def test_django_save() -> None:
    output = run_bench(
        "django_save.py", "--rounds", "1", "--saves", "8", MEISA_TEST_POSTGRES_URL=""
    )
    assert "SQLite      atomic" in output and "SQLite      autocommit" in output


def test_drain(tmp_path: Path) -> None:
    output = run_bench(
        "drain.py",
        *("--users", "20", "--rounds", "1", "--skip-pacing"),
        *("--database-url", f"sqlite:///{tmp_path / 'app.db'}"),
    )
    assert "drain rate:" in output
    assert "coalescing: 200 changes over 20 users cost 20 requests" in output


def test_server() -> None:
    output = run_bench("server.py", "--seconds", "0.2", "--rounds", "1", "--contacts", "10")
    assert "lowest upsert/health ratio" in output


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_claim(backend: str) -> None:
    output = run_bench(
        "claim.py", "--database-url", server_url(backend), "--rounds", "1", "--large", "3000"
    )
    assert "3,000 due vs 1,000 due: claim" in output
    assert "1,000 due behind 3,000 backing off vs 1,000 due: claim" in output
