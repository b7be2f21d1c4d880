"""How the core CLI reaches a Django project.

``meisa-sync drain --django-settings mysite.settings`` loads the entry point below.

``app_from_settings`` is the ``meisa_sync.connectors:django`` entry point; ``sync_app`` builds the
``SyncApp`` of the project already set up (``manage.py meisa_sync`` passes it as ``--app``).
"""

from __future__ import annotations

import os

from meisa_sync.app import SyncApp

__all__ = ["app_from_settings", "sync_app"]


def app_from_settings(settings_module: str) -> SyncApp:
    """Set Django up with ``settings_module`` (unless it already is) and return its ``SyncApp``."""
    import django
    from django.apps import apps
    from django.conf import settings

    if not settings.configured:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    if not apps.ready:
        django.setup()
    return sync_app()


def sync_app(using: str | None = None) -> SyncApp:
    """The ``SyncApp`` of the running project: its mappings, a store and a source on the database
    ``MEISA_SYNC["DATABASE"]`` (or ``using``)."""
    from meisa_sync_django.checks import startup_errors
    from meisa_sync_django.conf import sync_settings
    from meisa_sync_django.exceptions import ImproperlyConfigured
    from meisa_sync_django.registry import registry
    from meisa_sync_django.source import DjangoSource
    from meisa_sync_django.store import DjangoStore

    if startup_errors:
        error = startup_errors[0]
        raise ImproperlyConfigured(
            f"meisa-sync could not start: {type(error).__name__}: {error} "
            "(run `manage.py check` for details)"
        ) from error
    alias = using or sync_settings().database
    return SyncApp(DjangoStore(alias), DjangoSource(alias), registry.by_label())
