"""The app config: discovery of mappings, the signal handlers and the system checks."""

from __future__ import annotations

import logging

from django.apps import AppConfig

logger = logging.getLogger("meisa_sync_django")


class MeisaSyncConfig(AppConfig):
    """``"meisa_sync_django"`` in ``INSTALLED_APPS``; its label is ``meisa_sync``."""

    name = "meisa_sync_django"
    label = "meisa_sync"
    verbose_name = "Meisa sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from meisa_sync_django import checks, handlers
        from meisa_sync_django.conf import sync_settings
        from meisa_sync_django.registry import registry

        checks.register()
        # A broken mapping must not stop the project from starting: the checks report it
        # (meisa_sync.E002/E003) and manage.py check fails loudly instead.
        try:
            configured = sync_settings()
            registry.load_settings_mappings(configured.mappings)
            if configured.autodiscover:
                registry.autodiscover()
            handlers.connect()
        except Exception as exc:
            logger.error("meisa-sync is not recording changes: %s: %s", type(exc).__name__, exc)
            checks.startup_errors.append(exc)
