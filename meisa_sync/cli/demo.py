"""``meisa-sync demo``: the whole product in one command, on embedded SQLite, nothing to set up.

The demo's code (``meisa_sync/demo/``) is a readable example of using meisa-sync with SQLAlchemy.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

__all__ = ["demo"]


@click.command()
@click.option(
    "--users",
    default=1000,
    show_default=True,
    type=click.IntRange(0, 100_000),
    help="How many users join the crowd after the story.",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the databases in this folder instead of a temporary one.",
)
def demo(users: int, keep: Path | None) -> None:
    """Play the seed's story against a local Meisa reference server and show the outcome."""
    try:
        from meisa_sync.demo.run import run_demo
    except ImportError as exc:
        raise click.ClickException(
            f"the demo needs the server and SQLAlchemy extras ({exc}): "
            "pip install 'meisa-sync[server,sqlalchemy]'"
        ) from exc
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # One line per request would drown the story; -vv shows them.
        for name in ("httpx", "meisa_sync"):
            logging.getLogger(name).setLevel(logging.WARNING)
    summary, _ = run_demo(users=users, keep=keep, say=click.echo)
    if summary.drain.dead_records or summary.drain.auth_failed:
        raise SystemExit(1)
