"""``meisa-sync drain``: run a drain worker.

::

    meisa-sync drain --app myapp.sync:sync [--once] [--batch-size 100] [--concurrency 8]
                     [--lease 60s] [--api-key ...] [--base-url ...] [--no-pace]

Every option also reads a ``MEISA_*`` environment variable (``MEISA_APP``, ``MEISA_API_KEY``,
``MEISA_BATCH_SIZE``...). Without ``--once`` it runs until SIGTERM/SIGINT, then finishes the
requests in flight and releases the rest.

Exit codes: 0 everything claimed was settled without a dead record; 1 some records are dead (see
``meisa-sync status``); 2 usage or configuration error; 3 Meisa refused the credentials.
"""

from __future__ import annotations

import logging
import sys
from datetime import timedelta
from typing import Any

import click

from meisa_sync.cli._loading import open_app
from meisa_sync.cli.records import DURATION
from meisa_sync.client import MeisaClient
from meisa_sync.exceptions import ConfigurationError
from meisa_sync.pacing import Pacer
from meisa_sync.report import DrainReport
from meisa_sync.worker import Worker

__all__ = ["EXIT_AUTH_FAILED", "EXIT_DEAD", "EXIT_OK", "drain", "exit_code"]

EXIT_OK = 0
EXIT_DEAD = 1
EXIT_AUTH_FAILED = 3

logger = logging.getLogger("meisa_sync.drain")


def exit_code(report: DrainReport) -> int:
    """3 after an auth failure, 1 when records died, else 0."""
    if report.auth_failed:
        return EXIT_AUTH_FAILED
    if report.dead_records:
        return EXIT_DEAD
    return EXIT_OK


class _Progress:
    """A progress bar over the records pending at the start, on a terminal only."""

    def __init__(self, total: int) -> None:
        self._bar: Any = None
        if total and sys.stderr.isatty():
            self._bar = click.progressbar(length=total, label="draining", file=sys.stderr)
            self._bar.__enter__()

    def __call__(self, report: DrainReport) -> None:
        if self._bar is not None:
            self._bar.update(report.records)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


@click.command()
@click.option(
    "--app",
    "app_spec",
    envvar="MEISA_APP",
    metavar="MODULE:ATTR",
    help="Your SyncApp, or an object with .sync_app (e.g. myapp.sync:sync).",
)
@click.option(
    "--django-settings",
    envvar="MEISA_DJANGO_SETTINGS",
    metavar="MODULE",
    help="Your Django settings module, instead of --app.",
)
@click.option("--once", is_flag=True, help="Drain what is due now, then exit.")
@click.option(
    "--batch-size",
    envvar="MEISA_BATCH_SIZE",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Objects claimed at a time.",
)
@click.option(
    "--concurrency",
    envvar="MEISA_CONCURRENCY",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Requests in flight at once.",
)
@click.option(
    "--lease",
    envvar="MEISA_LEASE",
    type=DURATION,
    default="60s",
    show_default=True,
    help="How long a claimed object stays this worker's without renewal.",
)
@click.option(
    "--api-key", envvar="MEISA_API_KEY", help="The Meisa API key (default: $MEISA_API_KEY)."
)
@click.option("--base-url", envvar="MEISA_BASE_URL", help="The Meisa API base URL.")
@click.option(
    "--worker-id", envvar="MEISA_WORKER_ID", help="This worker's name (default: host:pid:random)."
)
@click.option(
    "--pace/--no-pace",
    envvar="MEISA_PACE",
    default=True,
    show_default=True,
    help="Pace requests to the key's rate limits (turn off only for keys without limits).",
)
def drain(
    app_spec: str | None,
    django_settings: str | None,
    once: bool,
    batch_size: int,
    concurrency: int,
    lease: timedelta,
    api_key: str | None,
    base_url: str | None,
    worker_id: str | None,
    pace: bool,
) -> None:
    """Send the outbox's changes to Meisa (until stopped, or --once)."""
    if lease <= timedelta(0):
        raise click.BadParameter("must be positive", param_hint="--lease")
    with open_app(app_spec, django_settings) as app:
        try:
            client = MeisaClient(api_key, base_url=base_url)
        except ConfigurationError as exc:
            raise click.UsageError(str(exc)) from exc
        pacer = Pacer() if pace else None
        with (
            client,
            Worker(
                app,
                client,
                worker_id=worker_id,
                batch_size=batch_size,
                concurrency=concurrency,
                lease=lease,
                pacer=pacer,
            ) as worker,
        ):
            logger.info("worker %s draining %s", worker.worker_id, client.base_url)
            if once:
                report = _drain_once(worker)
            else:
                report = worker.run()
            if pacer is not None:
                pacer.close()
    click.echo(report.summary())
    code = exit_code(report)
    if code == EXIT_DEAD:
        click.echo("some records are dead: see `meisa-sync status`", err=True)
    elif code == EXIT_AUTH_FAILED:
        click.echo("Meisa refused the API key: check MEISA_API_KEY and its scopes", err=True)
    click.get_current_context().exit(code)


def _drain_once(worker: Worker) -> DrainReport:
    progress = _Progress(worker.app.store.stats(last_errors=0).pending)
    try:
        with worker.graceful_shutdown():
            return worker.run_once(progress=progress)
    finally:
        progress.close()
