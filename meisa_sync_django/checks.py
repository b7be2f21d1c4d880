"""System checks (``manage.py check``), with stable ids.

=====================  =================================================================
id                     what
=====================  =================================================================
``meisa_sync.E001``    ``MEISA_SYNC["API_KEY"]`` is missing
``meisa_sync.E002``    a mapping cannot be imported (a ``meisa.py`` module or a MAPPINGS
                       entry raised), or the ``MEISA_SYNC`` setting itself is invalid
``meisa_sync.E003``    a mapping's model (or a related model) is not an installed model
``meisa_sync.W001``    several drain workers configured on a SQLite database
=====================  =================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from meisa_sync_django.exceptions import ImproperlyConfigured
from meisa_sync_django.registry import resolve_model

if TYPE_CHECKING:
    from meisa_sync.mapping import ContactMapping

__all__ = ["check_mappings", "check_meisa_sync", "register", "startup_errors"]

startup_errors: list[BaseException] = []
"""What went wrong while the app started (reading settings, importing mappings)."""


def register() -> None:
    """Register the checks (the app config does it in ``ready``)."""
    checks.register(check_meisa_sync, "meisa_sync")


def check_meisa_sync(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Every meisa-sync check."""
    from meisa_sync_django.conf import sync_settings
    from meisa_sync_django.registry import registry

    messages: list[checks.CheckMessage] = [
        checks.Error(
            f"meisa-sync could not start: {type(exc).__name__}: {exc}",
            hint=_hint_for(exc),
            id="meisa_sync.E002",
        )
        for exc in startup_errors
    ]
    try:
        configured = sync_settings()
    except ImproperlyConfigured as exc:
        if not startup_errors:
            messages.append(
                checks.Error(str(exc), hint="Fix settings.MEISA_SYNC.", id="meisa_sync.E002")
            )
        return messages
    if not configured.api_key:
        messages.append(
            checks.Error(
                'MEISA_SYNC["API_KEY"] is not set, so the drain worker cannot send anything.',
                hint='Add MEISA_SYNC = {"API_KEY": os.environ["MEISA_API_KEY"], ...} to your '
                "settings; create a key in the Meisa dashboard (or `meisa-sync serve` prints one).",
                id="meisa_sync.E001",
            )
        )
    for path in configured.mappings:
        try:
            import_string(path)
        except ImportError as exc:
            messages.append(
                checks.Error(
                    f'MEISA_SYNC["MAPPINGS"] lists {path!r}, which cannot be imported: {exc}',
                    hint="Fix the dotted path (module.ClassName) or the module's import error.",
                    id="meisa_sync.E002",
                )
            )
    messages += check_mappings(registry)
    database = settings.DATABASES.get(configured.database, {})
    if configured.worker.processes > 1 and "sqlite" in str(database.get("ENGINE", "")):
        messages.append(
            checks.Warning(
                f'MEISA_SYNC["WORKER"]["PROCESSES"] is {configured.worker.processes} on the '
                f"SQLite database {configured.database!r}: SQLite takes one writer at a time, so "
                "extra workers only wait for each other.",
                hint="Run one drain worker on SQLite, or move to PostgreSQL or MySQL for several.",
                id="meisa_sync.W001",
            )
        )
    return messages


def check_mappings(mappings: Iterable[ContactMapping]) -> list[checks.CheckMessage]:
    """E003 for each mapping whose model or related model is not an installed model."""
    messages: list[checks.CheckMessage] = []
    for mapping in mappings:
        name = type(mapping).__qualname__
        references = [(type(mapping).model, f"{name}.model")]
        references += [(model, f"{name}.related") for model in (type(mapping).related or {})]
        for reference, where in references:
            try:
                resolve_model(reference, where)
            except ImproperlyConfigured as exc:
                messages.append(
                    checks.Error(
                        str(exc),
                        hint="Point the mapping's `model` (and the keys of `related`) at installed "
                        "models: a class, or an 'app_label.ModelName' string.",
                        obj=type(mapping),
                        id="meisa_sync.E003",
                    )
                )
    return messages


def _hint_for(exc: BaseException) -> str:
    if isinstance(exc, ImportError):
        return (
            "A meisa.py module or a MEISA_SYNC['MAPPINGS'] entry failed to import; run "
            "`python -c 'import <module>'` to see the traceback."
        )
    return "Fix the mapping or settings.MEISA_SYNC; the message says what is wrong."
