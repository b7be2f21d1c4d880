"""The object source interface: load the current, committed objects for a batch of keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from meisa_sync.mapping import ContactMapping

__all__ = ["ObjectSource"]


class ObjectSource(Protocol):
    """Loads the objects a batch of change records points at.

    ``load`` returns ``{pk: object}`` for the keys that still exist (a missing pk means the object
    is gone). Implementations load the mapping's related paths (``mapping.related_paths``) in as
    few queries as the framework allows, and must see committed state only.
    """

    def load(
        self, model: str, pks: Sequence[str], mapping: ContactMapping
    ) -> dict[str, object]: ...
