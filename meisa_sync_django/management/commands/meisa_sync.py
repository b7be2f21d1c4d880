"""``manage.py meisa_sync drain|status|retry|purge|backfill``: the core CLI on this project.

A thin wrapper: it runs the ``meisa-sync`` click command of the same name with ``--app`` pointing
at this project (``meisa_sync_django.connector:sync_app``, or the backfill registration), and for
``drain`` the API key, base URL and worker options of ``settings.MEISA_SYNC`` unless given on the
command line. Every other option is the core command's: ``manage.py meisa_sync drain --help``.
"""

from __future__ import annotations

import argparse
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from meisa_sync_django.conf import sync_settings

APP = "meisa_sync_django.connector:sync_app"
BACKFILL_APP = "meisa_sync_django.backfill:project_backfill"
SUBCOMMANDS = ("drain", "status", "retry", "purge", "backfill")


class Command(BaseCommand):
    help = (
        "Drain the outbox to Meisa, show its status, retry or purge dead records, backfill users."
    )
    # The drain worker runs for days; checks ran when the project started it.
    requires_system_checks: ClassVar[list[str]] = []  # type: ignore[misc]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("subcommand", choices=SUBCOMMANDS)
        parser.add_argument(
            "arguments",
            nargs=argparse.REMAINDER,
            help="Options of the meisa-sync command (see `manage.py meisa_sync drain --help`).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from meisa_sync.cli import main

        subcommand: str = options["subcommand"]
        arguments: list[str] = list(options["arguments"])
        argv = [subcommand, *self._defaults(subcommand, arguments), *arguments]
        try:
            main.main(args=argv, prog_name="manage.py meisa_sync", standalone_mode=True)
        except DatabaseError as exc:
            raise CommandError(
                f"{exc} (has `manage.py migrate meisa_sync` run on the database "
                f"{sync_settings().database!r}?)"
            ) from exc
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
            if code:
                raise CommandError(
                    f"meisa-sync {subcommand} exited with status {code}", returncode=code
                ) from None

    @staticmethod
    def _defaults(subcommand: str, given: list[str]) -> list[str]:
        """The options this project supplies, unless the command line gives them."""

        def absent(option: str) -> bool:
            return not any(arg == option or arg.startswith(option + "=") for arg in given)

        if any(arg in {"-h", "--help"} for arg in given):
            return []
        if subcommand == "backfill":
            return ["--app", BACKFILL_APP] if absent("--app") else []
        defaults = ["--app", APP] if absent("--app") else []
        if subcommand != "drain":
            return defaults
        configured = sync_settings()
        worker = configured.worker
        for option, value in (
            ("--api-key", configured.api_key),
            ("--base-url", configured.base_url),
            ("--batch-size", worker.batch_size),
            ("--concurrency", worker.concurrency),
            ("--lease", worker.lease_seconds),
        ):
            if value is not None and absent(option):
                defaults += [option, str(value)]
        return defaults
