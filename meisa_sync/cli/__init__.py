"""The ``meisa-sync`` command line.

Each command lives in its own module and is imported only when it runs, so ``meisa-sync status``
never imports FastAPI and ``meisa-sync serve`` never imports a worker.
"""

from __future__ import annotations

import importlib
import logging

import click

__all__ = ["main"]

_COMMANDS = {
    "backfill": "meisa_sync.cli.backfill:backfill",
    "demo": "meisa_sync.cli.demo:demo",
    "drain": "meisa_sync.cli.drain:drain",
    "purge": "meisa_sync.cli.records:purge",
    "retry": "meisa_sync.cli.records:retry",
    "serve": "meisa_sync.cli.serve:serve",
    "status": "meisa_sync.cli.records:status",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = _COMMANDS[cmd_name].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="meisa-sync")
def main(verbose: int) -> None:
    """Keep your users in sync with Meisa."""
    level = logging.WARNING - 10 * min(verbose, 2) if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
