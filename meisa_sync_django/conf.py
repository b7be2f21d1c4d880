"""The ``MEISA_SYNC`` setting, read through one accessor.

::

    MEISA_SYNC = {
        "API_KEY": "meisa_live_...",            # required to drain
        "BASE_URL": "https://api.meisa.io/api/v1",
        "MAPPINGS": ["accounts.meisa.UserMapping"],   # optional: dotted paths; meisa.py modules are
        "AUTODISCOVER": True,                   #   discovered in every installed app anyway
        "STRICT": False,                        # build payloads at save time and raise (tests)
        "DELETE_POLICY": "erase",               # or "ignore": keep the contact of a deleted user
        "DATABASE": "default",                  # the alias the drain worker's store uses
        "WORKER": {"BATCH_SIZE": 100, "CONCURRENCY": 8, "LEASE_SECONDS": 60, "PROCESSES": 1},
    }

``sync_settings()`` returns the parsed, validated value; it is re-read when a test overrides the
setting (``override_settings`` / pytest-django's ``settings`` fixture).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from meisa_sync_django.exceptions import ImproperlyConfigured

__all__ = ["DEFAULT_BASE_URL", "DeletePolicy", "SyncSettings", "WorkerSettings", "sync_settings"]

DEFAULT_BASE_URL = "https://api.meisa.io/api/v1"

_KNOWN_KEYS = frozenset(
    {
        "API_KEY",
        "BASE_URL",
        "MAPPINGS",
        "AUTODISCOVER",
        "STRICT",
        "DELETE_POLICY",
        "DATABASE",
        "WORKER",
    }
)
_WORKER_KEYS = frozenset({"BATCH_SIZE", "CONCURRENCY", "LEASE_SECONDS", "PROCESSES"})


class DeletePolicy(str, enum.Enum):
    """What deleting a mapped object does on Meisa."""

    ERASE = "erase"
    """Record a delete: the worker erases the contact (CONTRACT.md §4, ``/contacts/delete/``)."""
    IGNORE = "ignore"
    """Record nothing: the contact stays on Meisa."""


@dataclass(frozen=True)
class WorkerSettings:
    """``MEISA_SYNC["WORKER"]``: defaults for ``manage.py meisa_sync drain``."""

    batch_size: int = 100
    concurrency: int = 8
    lease_seconds: float = 60.0
    processes: int = 1
    """How many drain processes you run against this database; only the system checks read it."""


@dataclass(frozen=True)
class SyncSettings:
    """The parsed ``MEISA_SYNC`` setting."""

    api_key: str | None = None
    base_url: str = DEFAULT_BASE_URL
    mappings: tuple[str, ...] = ()
    autodiscover: bool = True
    strict: bool = False
    delete_policy: DeletePolicy = DeletePolicy.ERASE
    database: str = "default"
    worker: WorkerSettings = field(default_factory=WorkerSettings)

    def require_api_key(self) -> str:
        """The API key, or an error saying which setting to add."""
        if not self.api_key:
            raise ImproperlyConfigured(
                'MEISA_SYNC["API_KEY"] is not set: add your Meisa API key to settings.MEISA_SYNC '
                '(for example MEISA_SYNC = {"API_KEY": os.environ["MEISA_API_KEY"]})'
            )
        return self.api_key


_cached: SyncSettings | None = None


def sync_settings() -> SyncSettings:
    """The ``MEISA_SYNC`` setting, parsed and validated (an unset setting gives the defaults)."""
    global _cached
    if _cached is None:
        _cached = parse(getattr(settings, "MEISA_SYNC", None))
    return _cached


@receiver(setting_changed)
def _forget_on_change(*, setting: str, **kwargs: Any) -> None:
    global _cached
    if setting == "MEISA_SYNC":
        _cached = None


def parse(raw: object) -> SyncSettings:
    """Validate a ``MEISA_SYNC`` value; every error names the key to fix."""
    if raw is None:
        return SyncSettings()
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(f"settings.MEISA_SYNC must be a dict, not {type(raw).__name__}")
    unknown = sorted(set(raw) - _KNOWN_KEYS)
    if unknown:
        raise ImproperlyConfigured(
            f"settings.MEISA_SYNC has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known keys: {', '.join(sorted(_KNOWN_KEYS))}"
        )
    api_key = raw.get("API_KEY")
    if api_key is not None and not isinstance(api_key, str):
        raise ImproperlyConfigured('MEISA_SYNC["API_KEY"] must be a string')
    base_url = raw.get("BASE_URL", DEFAULT_BASE_URL)
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ImproperlyConfigured(
            f'MEISA_SYNC["BASE_URL"] must be an http(s) URL such as {DEFAULT_BASE_URL!r}, '
            f"not {base_url!r}"
        )
    mappings = raw.get("MAPPINGS", ())
    if isinstance(mappings, str) or not all(isinstance(path, str) for path in mappings):
        raise ImproperlyConfigured(
            'MEISA_SYNC["MAPPINGS"] must be a list of dotted paths to ContactMapping classes, '
            'such as ["accounts.meisa.UserMapping"]'
        )
    policy = raw.get("DELETE_POLICY", DeletePolicy.ERASE.value)
    try:
        delete_policy = DeletePolicy(policy)
    except ValueError:
        raise ImproperlyConfigured(
            f'MEISA_SYNC["DELETE_POLICY"] must be "erase" or "ignore", not {policy!r}'
        ) from None
    database = raw.get("DATABASE", "default")
    if database not in settings.DATABASES:
        raise ImproperlyConfigured(
            f'MEISA_SYNC["DATABASE"] is {database!r}, which is not in settings.DATABASES '
            f"({', '.join(sorted(settings.DATABASES))})"
        )
    return SyncSettings(
        api_key=api_key or None,
        base_url=base_url.rstrip("/"),
        mappings=tuple(mappings),
        autodiscover=_flag(raw, "AUTODISCOVER", True),
        strict=_flag(raw, "STRICT", False),
        delete_policy=delete_policy,
        database=database,
        worker=_worker(raw.get("WORKER", {})),
    )


def _flag(raw: Mapping[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f'MEISA_SYNC["{key}"] must be True or False, not {value!r}')
    return value


def _worker(raw: object) -> WorkerSettings:
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured('MEISA_SYNC["WORKER"] must be a dict')
    unknown = sorted(set(raw) - _WORKER_KEYS)
    if unknown:
        raise ImproperlyConfigured(
            f'MEISA_SYNC["WORKER"] has unknown key(s) {", ".join(map(repr, unknown))}; '
            f"known keys: {', '.join(sorted(_WORKER_KEYS))}"
        )
    defaults = WorkerSettings()
    values: dict[str, Any] = {}
    for key, name, kind in (
        ("BATCH_SIZE", "batch_size", int),
        ("CONCURRENCY", "concurrency", int),
        ("LEASE_SECONDS", "lease_seconds", (int, float)),
        ("PROCESSES", "processes", int),
    ):
        value = raw.get(key, getattr(defaults, name))
        if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
            raise ImproperlyConfigured(
                f'MEISA_SYNC["WORKER"]["{key}"] must be a positive number, not {value!r}'
            )
        values[name] = value
    return WorkerSettings(**values)
