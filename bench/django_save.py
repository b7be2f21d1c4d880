"""Save-path benchmark for the Django app (issue 6): ``user.save()`` with the app ÷ without it.

"With" is the project as configured: the mapped user's ``post_save`` handler writes one outbox row
on the save's database, in its transaction. "Without" is the same process with the handlers
disconnected (``meisa_sync_django.handlers.disconnect()``), so the two sides differ only by what
the app adds. Rounds alternate between the sides and each figure is the median round, so the ratio
holds on a busy machine. Two ways of saving are measured:

- ``atomic``: each save in its own ``transaction.atomic()`` (what ``ATOMIC_REQUESTS`` gives a view):
  BEGIN, UPDATE, [INSERT], COMMIT. Target ≤ 1.3.
- ``autocommit``: a bare ``user.save()`` outside any transaction: the UPDATE commits on its own and
  the outbox INSERT is a second commit (see docs/django.md on why to prefer ``atomic``).

Usage::

    python bench/django_save.py                  # SQLite file; PostgreSQL when configured:
    python bench/django_save.py --postgres-url postgresql://postgres@127.0.0.1:5432/bench
    python bench/django_save.py --rounds 9 --saves 300

``--postgres-url`` defaults to ``MEISA_TEST_POSTGRES_URL``; the run creates a database named after
it with a ``_django_bench`` suffix and drops it at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

USERS = 20


def configure(sqlite_path: Path, postgres_url: str | None) -> list[str]:
    """Set Django up on a SQLite file (and PostgreSQL); return the aliases to measure."""
    import django
    from django.conf import settings

    databases: dict[str, dict[str, Any]] = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(sqlite_path),
            "TEST": {"NAME": str(sqlite_path)},
        }
    }
    if postgres_url:
        parts = urlsplit(postgres_url)
        databases["postgres"] = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "TEST": {"NAME": f"{parts.path.lstrip('/')}_django_bench"},
        }
    settings.configure(
        SECRET_KEY="bench",
        USE_TZ=True,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "meisa_sync_django",
            "tests.django.testapp",
        ],
        AUTH_USER_MODEL="testapp.User",
        DATABASES=databases,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        MEISA_SYNC={"API_KEY": "meisa_test_bench"},
    )
    django.setup()
    return list(databases)


def measure(alias: str, *, atomic: bool, saves: int, rounds: int) -> tuple[float, float]:
    """Median seconds per save (with the app, without it) on ``alias``."""
    from django.db import transaction

    from meisa_sync_django import handlers
    from meisa_sync_django.models import OutboxRecord
    from tests.django.testapp.models import Subscription, User

    users = []
    for index in range(USERS):
        user = User.objects.db_manager(alias).create_user(
            username=f"bench{index}", email=f"bench{index}@example.com", first_name="Ada"
        )
        Subscription.objects.using(alias).create(user=user, plan="free")
        users.append(user)

    def save_all(count: int) -> float:
        started = time.perf_counter()
        for index in range(count):
            user = users[index % USERS]
            user.first_name = "Ada" if index % 2 else "Augusta"
            if atomic:
                with transaction.atomic(using=alias):
                    user.save(using=alias)
            else:
                user.save(using=alias)
        return (time.perf_counter() - started) / count

    def side(connected: bool) -> Callable[[], float]:
        def run() -> float:
            (handlers.connect if connected else handlers.disconnect)()
            try:
                return save_all(saves)
            finally:
                handlers.connect()

        return run

    with_app, without_app = side(True), side(False)
    save_all(saves // 4)  # warm up: connections, statement caches
    timings: dict[str, list[float]] = {"with": [], "without": []}
    for round_number in range(rounds):
        order = [("with", with_app), ("without", without_app)]
        for name, run in order if round_number % 2 else reversed(order):
            timings[name].append(run())
    written = OutboxRecord.objects.using(alias).count()
    expected = USERS * 2 + (saves // 4) + saves * rounds
    assert written == expected, f"the app wrote {written} records, expected {expected}"
    User.objects.using(alias).all().delete()
    OutboxRecord.objects.using(alias).all().delete()
    return statistics.median(timings["with"]), statistics.median(timings["without"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres-url", default=os.environ.get("MEISA_TEST_POSTGRES_URL"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--saves", type=int, default=200, help="saves per round and side")
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        aliases = configure(Path(directory) / "bench.db", arguments.postgres_url)
        from django.test.utils import setup_databases, teardown_databases

        old = setup_databases(verbosity=0, interactive=False, aliases=dict.fromkeys(aliases))
        try:
            print(f"user.save() with meisa_sync_django ÷ without, {arguments.rounds} rounds of")
            print(f"{arguments.saves} saves per side, median round:")
            print(f"{'database':<11} {'mode':<11} {'with µs':>9} {'without µs':>11} {'ratio':>6}")
            for alias in aliases:
                name = "SQLite" if alias == "default" else "PostgreSQL"
                for mode in ("atomic", "autocommit"):
                    with_app, without_app = measure(
                        alias,
                        atomic=mode == "atomic",
                        saves=arguments.saves,
                        rounds=arguments.rounds,
                    )
                    print(
                        f"{name:<11} {mode:<11} {with_app * 1e6:>9.0f} {without_app * 1e6:>11.0f}"
                        f" {with_app / without_app:>6.2f}"
                    )
        finally:
            teardown_databases(old, verbosity=0)


if __name__ == "__main__":
    main()
