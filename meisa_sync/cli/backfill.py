"""``meisa-sync backfill``: record every existing user, in bulk, below live changes' priority.

::

    meisa-sync backfill --app myapp.sync:sync [--model users] [--batch-size 1000] [--restart]

``--app`` names an object (or a callable returning one) with ``backfill_models()`` and
``backfill(model, batch_size=, restart=, progress=)``, as ``meisa_sync_sqlalchemy.SQLAlchemySync``
has. Each batch commits with the backfill's cursor, so an interrupted run resumes where it stopped
when run again; a finished one does nothing unless ``--restart``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import click

from meisa_sync.cli._loading import import_target
from meisa_sync.exceptions import MeisaSyncError

__all__ = ["Backfiller", "backfill", "load_backfiller"]

logger = logging.getLogger("meisa_sync.backfill")


@runtime_checkable
class Backfiller(Protocol):
    """What ``meisa-sync backfill --app`` needs from a registration."""

    def backfill_models(self) -> list[str]: ...

    def backfill(
        self,
        model: str | None = None,
        *,
        batch_size: int = 1000,
        restart: bool = False,
        progress: Callable[[Any], None] | None = None,
    ) -> Sequence[Any]: ...


def load_backfiller(spec: str) -> Backfiller:
    """The registration ``module:attribute`` names (called first when it is a factory)."""
    target: Any = import_target(spec)
    if not isinstance(target, Backfiller) and callable(target):
        target = target()
    if not isinstance(target, Backfiller):
        raise click.BadParameter(
            f"{spec} is a {type(target).__name__}, which cannot backfill: point --app at your "
            "SQLAlchemySync registration",
            param_hint="--app",
        )
    return target


class _Bar:
    """One progress bar per model, opened once the first batch tells the total."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._model: str | None = None
        self._shown = 0

    def __call__(self, progress: Any) -> None:
        if progress.model != self._model:
            self.close()
            self._model = progress.model
            self._bar = click.progressbar(
                length=progress.total, label=f"backfill {progress.model}", file=sys.stderr
            )
            self._bar.__enter__()
            self._shown = 0
        self._bar.update(progress.recorded - self._shown)
        self._shown = progress.recorded
        if not sys.stderr.isatty():
            logger.info("%s: %d of %d recorded", progress.model, progress.recorded, progress.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


@click.command()
@click.option(
    "--app",
    "app_spec",
    required=True,
    envvar="MEISA_APP",
    help="Your registration, as module:attribute (e.g. myapp.sync:sync).",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    help="A mapped model's label (its table name); repeatable. Default: every mapped model.",
)
@click.option(
    "--batch-size",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Rows recorded per transaction.",
)
@click.option("--restart", is_flag=True, help="Start over from the first row, even if finished.")
def backfill(app_spec: str, models: tuple[str, ...], batch_size: int, restart: bool) -> None:
    """Record every existing user for syncing, at a priority below live changes."""
    registration = load_backfiller(app_spec)
    known = registration.backfill_models()
    for model in models:
        if model not in known:
            raise click.BadParameter(
                f"{model!r} is not a mapped model; models: {', '.join(known)}",
                param_hint="--model",
            )
    bar = _Bar()
    try:
        results = [
            result
            for model in models or known
            for result in registration.backfill(
                model, batch_size=batch_size, restart=restart, progress=bar
            )
        ]
    except MeisaSyncError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        bar.close()
    for result in results:
        if result.already_complete:
            click.echo(f"{result.model}: already backfilled; --restart to record every row again")
        elif result.resumed_after is not None:
            click.echo(
                f"{result.model}: {result.recorded} recorded, resumed after pk "
                f"{result.resumed_after}"
            )
        else:
            click.echo(f"{result.model}: {result.recorded} recorded")
