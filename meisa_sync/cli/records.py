"""``meisa-sync status``, ``retry`` and ``purge``: looking after the outbox's records.

::

    meisa-sync status [--json] [--errors 5]         counts, oldest pending age, last errors
    meisa-sync retry (--id ID ... | --all)          dead records become pending, due now
    meisa-sync purge [--older-than 30d] [--id ID ...] [--yes]      delete dead records

Each needs only where the outbox is: ``--database-url`` (or ``--app`` / ``--django-settings``).
Nothing is deleted without a confirmation, unless ``--yes``.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import click

from meisa_sync.cli._loading import open_store, target_options
from meisa_sync.records import ChangeRecord, OutboxStats

__all__ = ["DURATION", "Duration", "format_age", "purge", "retry", "status"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


class Duration(click.ParamType):  # type: ignore[type-arg]
    """``90``, ``90s``, ``15m``, ``12h``, ``30d``, ``2w`` as a ``timedelta`` (bare numbers are
    seconds)."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = _DURATION.match(str(value))
        if match is None:
            self.fail(f"{value!r} is not a duration: use e.g. 90s, 15m, 12h or 30d", param, ctx)
        number, unit = match.groups()
        return timedelta(seconds=float(number) * _UNITS[unit or "s"])


DURATION = Duration()


def format_age(age: timedelta) -> str:
    """``3d 4h``, ``5m 12s``, ``0s``: the two largest units."""
    seconds = int(age.total_seconds())
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])


def _record_json(record: ChangeRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "model": record.key.model,
        "object_pk": record.key.pk,
        "operation": record.operation.value,
        "attempts": record.attempts,
        "created_at": record.created_at.isoformat(),
        "error": record.last_error,
    }


def _stats_json(stats: OutboxStats) -> dict[str, Any]:
    age = stats.oldest_pending_age
    return {
        "pending": stats.pending,
        "in_flight": stats.in_flight,
        "dead": stats.dead,
        "oldest_pending_age_seconds": None if age is None else round(age.total_seconds(), 3),
        "last_errors": [_record_json(record) for record in stats.last_errors],
    }


def _stats_text(stats: OutboxStats) -> str:
    age = stats.oldest_pending_age
    lines = [
        f"pending: {stats.pending} ({stats.in_flight} in flight)",
        f"dead:    {stats.dead}",
        f"oldest pending: {'-' if age is None else format_age(age)}",
    ]
    if stats.last_errors:
        lines.append("last errors:")
        for record in stats.last_errors:
            lines.append(
                f"  #{record.id} {record.key} {record.operation.value} "
                f"(attempts {record.attempts}): {record.last_error}"
            )
    return "\n".join(lines)


@click.command()
@target_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option(
    "--errors", default=5, show_default=True, type=click.IntRange(min=0), help="Last errors shown."
)
def status(
    app_spec: str | None,
    database_url: str | None,
    django_settings: str | None,
    as_json: bool,
    errors: int,
) -> None:
    """Show the outbox: records by state, the oldest pending age and the last errors."""
    with open_store(app_spec, database_url, django_settings) as store:
        stats = store.stats(last_errors=errors)
    click.echo(json.dumps(_stats_json(stats), indent=2) if as_json else _stats_text(stats))


@click.command()
@target_options
@click.option("--id", "ids", type=int, multiple=True, help="A dead record's id; repeatable.")
@click.option("--all", "every", is_flag=True, help="Every dead record.")
def retry(
    app_spec: str | None,
    database_url: str | None,
    django_settings: str | None,
    ids: tuple[int, ...],
    every: bool,
) -> None:
    """Make dead records pending again, due now (after fixing what killed them)."""
    if bool(ids) == every:
        raise click.UsageError("say which dead records to retry: --id ID (repeatable) or --all")
    with open_store(app_spec, database_url, django_settings) as store:
        count = store.requeue(None if every else list(ids))
    click.echo(f"requeued {count} dead record{'' if count == 1 else 's'}")


@click.command()
@target_options
@click.option(
    "--older-than", type=DURATION, help="Only records dead for longer than this (e.g. 30d)."
)
@click.option("--id", "ids", type=int, multiple=True, help="A dead record's id; repeatable.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def purge(
    app_spec: str | None,
    database_url: str | None,
    django_settings: str | None,
    older_than: timedelta | None,
    ids: tuple[int, ...],
    yes: bool,
) -> None:
    """Delete dead records for good (pending records are never touched)."""
    which = []
    if ids:
        which.append("with id " + ", ".join(map(str, ids)))
    if older_than is not None:
        which.append(f"dead for longer than {format_age(older_than)}")
    described = " and ".join(which) if which else "(all of them)"
    with open_store(app_spec, database_url, django_settings) as store:
        if not yes:
            click.confirm(f"Delete the dead records {described}?", abort=True)
        count = store.purge(older_than=older_than, record_ids=list(ids) or None)
    click.echo(f"purged {count} dead record{'' if count == 1 else 's'}")
