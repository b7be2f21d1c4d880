"""The errors the Django app adds to the core's tree.

::

    meisa_sync.MeisaSyncError
    ├── meisa_sync.ConfigurationError
    │   └── ImproperlyConfigured           also django.core.exceptions.ImproperlyConfigured:
    │                                      a MEISA_SYNC setting, mapping or model is wrong
    └── meisa_sync.StrictModeError         strict mode refused a save (re-exported from the core)

Everything the worker raises while talking to Meisa is the core's (``meisa_sync.exceptions``).
"""

from __future__ import annotations

from django.core import exceptions as django_exceptions

from meisa_sync.exceptions import ConfigurationError, StrictModeError

__all__ = ["ImproperlyConfigured", "StrictModeError"]


class ImproperlyConfigured(ConfigurationError, django_exceptions.ImproperlyConfigured):
    """A ``MEISA_SYNC`` setting, a mapping registration or a mapped model is missing or wrong.

    Catching the core's ``ConfigurationError`` or Django's ``ImproperlyConfigured`` catches it.
    """
