"""``SyncApp``: what a drain worker needs, found by the CLI with ``--app module:attribute``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meisa_sync.exceptions import ConfigurationError

if TYPE_CHECKING:
    from meisa_sync.mapping import ContactMapping
    from meisa_sync.source import ObjectSource
    from meisa_sync.store import OutboxStore

__all__ = ["SyncApp"]


@dataclass
class SyncApp:
    """A store, a source and the mappings by model label.

    The plugins build one (``meisa_sync_sqlalchemy.SQLAlchemySync``, ``meisa_sync_django``'s
    settings); tests build one from the in-memory twins.
    """

    store: OutboxStore
    source: ObjectSource
    mappings: Mapping[str, ContactMapping] = field(default_factory=dict)

    def mapping_for(self, model: str) -> ContactMapping:
        try:
            return self.mappings[model]
        except KeyError:
            known = ", ".join(sorted(self.mappings)) or "none"
            raise ConfigurationError(
                f"no mapping registered for model {model!r} (registered: {known}); "
                "register its ContactMapping with the app"
            ) from None

    @staticmethod
    def index(labelled: Iterable[tuple[str, ContactMapping]]) -> dict[str, ContactMapping]:
        return dict(labelled)
