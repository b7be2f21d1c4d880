"""meisa-sync for Django: add ``"meisa_sync_django"`` to ``INSTALLED_APPS``.

The public API: ``register`` (a mapping, or ``@register`` on its class), ``record_change`` (one
object, with one-off extra fields), ``record_queryset`` (after ``QuerySet.update()``), and
``DjangoStore`` / ``DjangoSource`` / ``sync_app()`` for running a worker by hand.
See docs/django.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meisa_sync_django.registry import register

if TYPE_CHECKING:
    from meisa_sync_django.connector import sync_app
    from meisa_sync_django.outbox import record_change, record_queryset
    from meisa_sync_django.source import DjangoSource
    from meisa_sync_django.store import DjangoStore

__all__ = [
    "DjangoSource",
    "DjangoStore",
    "record_change",
    "record_queryset",
    "register",
    "sync_app",
]

# These import models, so they load on first use: importing this package (as settings and meisa.py
# modules do) must work before the app registry is ready.
_LAZY = {
    "DjangoSource": "meisa_sync_django.source",
    "DjangoStore": "meisa_sync_django.store",
    "record_change": "meisa_sync_django.outbox",
    "record_queryset": "meisa_sync_django.outbox",
    "sync_app": "meisa_sync_django.connector",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'meisa_sync_django' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
