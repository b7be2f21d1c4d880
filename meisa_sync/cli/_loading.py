"""Finding what a command works on: a ``SyncApp`` (``--app``, ``--django-settings``) or just the
outbox store (``--database-url``).

The core never imports a plugin by name: ``--database-url`` and ``--django-settings`` go through the
entry-point group ``meisa_sync.connectors`` (``sqlalchemy``: ``store_from_url(url)``, ``django``:
``app_from_settings(settings_module)``), so a missing extra is an install hint, not a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

import click

from meisa_sync.app import SyncApp
from meisa_sync.exceptions import ConfigurationError
from meisa_sync.store import OutboxStore

__all__ = [
    "CONNECTOR_GROUP",
    "connector",
    "find_sync_app",
    "open_app",
    "open_store",
    "resolve_sync_app",
    "target_options",
]

CONNECTOR_GROUP = "meisa_sync.connectors"
_EXTRAS = {"sqlalchemy": "sqlalchemy", "django": "django"}


def target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--app``, ``--database-url`` and ``--django-settings`` (also from ``MEISA_*`` variables)."""
    options = [
        click.option(
            "--django-settings",
            envvar="MEISA_DJANGO_SETTINGS",
            metavar="MODULE",
            help="Your Django settings module (the meisa_sync_django app configured in it).",
        ),
        click.option(
            "--database-url",
            envvar="MEISA_DATABASE_URL",
            metavar="URL",
            help="The database holding the outbox tables (SQLAlchemy URL).",
        ),
        click.option(
            "--app",
            "app_spec",
            envvar="MEISA_APP",
            metavar="MODULE:ATTR",
            help="Your SyncApp, or an object with .sync_app (e.g. myapp.sync:sync).",
        ),
    ]
    for option in options:
        command = option(command)
    return command


def connector(name: str) -> Callable[[str], Any]:
    """The plugin function registered under ``name`` in ``meisa_sync.connectors``."""
    extra = _EXTRAS.get(name, name)
    hint = f"pip install 'meisa-sync[{extra}]'"
    found = [ep for ep in metadata.entry_points(group=CONNECTOR_GROUP) if ep.name == name]
    if not found:
        raise click.UsageError(f"the {name} connector is not installed: {hint}")
    try:
        function: Callable[[str], Any] = found[0].load()
    except ImportError as exc:
        raise click.UsageError(f"the {name} connector cannot be imported ({exc}): {hint}") from exc
    return function


def _call_connector(name: str, argument: str, option: str) -> Any:
    function = connector(name)
    try:
        return function(argument)
    except (ConfigurationError, ImportError) as exc:
        raise click.BadParameter(f"{argument!r}: {exc}", param_hint=option) from exc


def resolve_sync_app(target: object, where: str) -> SyncApp:
    """``target`` as a SyncApp: itself, its ``.sync_app`` (attribute or method), or what calling
    it returns (a factory), in that order."""
    for _ in range(3):
        if isinstance(target, SyncApp):
            return target
        nested = getattr(target, "sync_app", None)
        if nested is not None:
            target = nested() if callable(nested) and not isinstance(nested, SyncApp) else nested
        elif callable(target):
            target = target()
        else:
            break
    raise click.UsageError(
        f"{where} is a {type(target).__name__}, not a SyncApp: point --app at a SyncApp, an object "
        "with a .sync_app (such as meisa_sync_sqlalchemy.SQLAlchemySync), or a function returning "
        "one"
    )


def import_target(spec: str, *, param_hint: str = "--app") -> object:
    """The object ``module:attribute`` (dotted attributes allowed) names."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter(f"{spec!r}: expected module:attribute", param_hint=param_hint)
    # As with celery -A and flask --app: the project in the working directory is importable.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint=param_hint
        ) from exc
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise click.BadParameter(
                f"module {module_name!r} has no attribute {attribute!r}", param_hint=param_hint
            ) from None
    return target


def find_sync_app(spec: str) -> SyncApp:
    """The SyncApp that ``module:attribute`` (dotted attributes allowed) names."""
    return resolve_sync_app(import_target(spec), spec)


def _one_target(app_spec: str | None, database_url: str | None, django_settings: str | None) -> str:
    given = [
        name
        for name, value in (
            ("--app", app_spec),
            ("--database-url", database_url),
            ("--django-settings", django_settings),
        )
        if value
    ]
    if len(given) > 1:
        raise click.UsageError(f"give one of {', '.join(given)}, not several")
    if not given:
        raise click.UsageError(
            "say where the outbox is: --app module:attr, --database-url URL or "
            "--django-settings MODULE (or MEISA_APP / MEISA_DATABASE_URL / MEISA_DJANGO_SETTINGS)"
        )
    return given[0]


@contextmanager
def open_app(app_spec: str | None, django_settings: str | None) -> Iterator[SyncApp]:
    """The SyncApp for ``drain``: from ``--app`` or ``--django-settings``."""
    if _one_target(app_spec, None, django_settings) == "--app":
        assert app_spec is not None
        yield find_sync_app(app_spec)
        return
    assert django_settings is not None
    found = _call_connector("django", django_settings, "--django-settings")
    yield resolve_sync_app(found, f"--django-settings {django_settings}")


@contextmanager
def open_store(
    app_spec: str | None, database_url: str | None, django_settings: str | None
) -> Iterator[OutboxStore]:
    """The outbox store for ``status``/``retry``/``purge``; one built from a URL is closed after."""
    kind = _one_target(app_spec, database_url, django_settings)
    if kind != "--database-url":
        with open_app(app_spec, django_settings) as app:
            yield app.store
        return
    assert database_url is not None
    store = _call_connector("sqlalchemy", database_url, "--database-url")
    if not isinstance(store, OutboxStore):
        raise click.UsageError(f"the sqlalchemy connector returned a {type(store).__name__}")
    try:
        yield store
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()
