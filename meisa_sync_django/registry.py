"""Which mappings are registered, and which Django models they watch.

A mapping is registered explicitly (``register(UserMapping)`` or ``@register`` on the class), listed
in ``MEISA_SYNC["MAPPINGS"]``, or found in a ``meisa.py`` module of an installed app, which the app
imports at start (as the admin imports ``admin.py``).

Records name objects by the mapped model's label (``accounts.User``). A save through a proxy model
counts as a save of its concrete model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from django.apps import apps
from django.db import models
from django.utils.module_loading import autodiscover_modules, import_string

from meisa_sync_django.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from meisa_sync.mapping import ContactMapping

__all__ = ["MappedModel", "MappingRegistry", "RelatedModel", "register", "registry"]

MappingT = TypeVar("MappingT")


@dataclass(frozen=True)
class MappedModel:
    """A model whose rows are contacts."""

    label: str
    model: type[models.Model]
    mapping: ContactMapping
    watched_fields: frozenset[str] | None
    """Field names and attnames a save must touch to count; ``None``: every save counts."""


@dataclass(frozen=True)
class RelatedModel:
    """A model whose saves change a contact: ``path`` leads from its row to the mapped object."""

    target: MappedModel
    path: tuple[str, ...]
    fk_attname: str | None
    """For a one-step foreign key path, the column holding the target's pk (no query needed)."""

    def target_pk(self, instance: models.Model) -> object | None:
        """The primary key of the mapped object ``instance`` belongs to, or None."""
        if self.fk_attname is not None:
            pk: object | None = getattr(instance, self.fk_attname)
            return pk
        current: Any = instance
        for step in self.path:
            current = getattr(current, step, None)
            if current is None:
                return None
        target_pk: object | None = current.pk
        return target_pk


class MappingRegistry:
    """The registered mappings, resolved to models once the app registry is ready."""

    def __init__(self, *, connect_handlers: bool = False) -> None:
        self._connect_handlers = connect_handlers
        self._lock = threading.RLock()
        self._mappings: list[ContactMapping] = []
        self._mapped: dict[type[models.Model], MappedModel] | None = None
        self._related: dict[type[models.Model], tuple[RelatedModel, ...]] = {}
        self._by_sender: dict[type[Any], tuple[MappedModel | None, tuple[RelatedModel, ...]]] = {}

    def register(self, mapping: Any) -> None:
        """Register a ``ContactMapping`` subclass or instance (a second registration is ignored)."""
        from meisa_sync.mapping import ContactMapping

        if isinstance(mapping, type) and issubclass(mapping, ContactMapping):
            instance = mapping()
        elif isinstance(mapping, ContactMapping):
            instance = mapping
        else:
            raise ImproperlyConfigured(
                f"register() takes a ContactMapping subclass or instance, not {mapping!r}"
            )
        with self._lock:
            if any(type(known) is type(instance) for known in self._mappings):
                return
            self._mappings.append(instance)
            self._forget()
        try:
            self._changed()
        except Exception:
            self.unregister(instance)
            raise

    def unregister(self, mapping: Any) -> None:
        """Forget a mapping class (or instance); for tests."""
        cls = mapping if isinstance(mapping, type) else type(mapping)
        with self._lock:
            self._mappings = [known for known in self._mappings if type(known) is not cls]
            self._forget()
        self._changed()

    def load_settings_mappings(self, dotted_paths: tuple[str, ...]) -> None:
        """Import and register each ``MEISA_SYNC["MAPPINGS"]`` entry."""
        for path in dotted_paths:
            try:
                mapping = import_string(path)
            except ImportError as exc:
                raise ImproperlyConfigured(
                    f'MEISA_SYNC["MAPPINGS"] lists {path!r}, which cannot be imported: {exc}'
                ) from exc
            self.register(mapping)

    @staticmethod
    def autodiscover() -> None:
        """Import the ``meisa`` module of every installed app that has one."""
        autodiscover_modules("meisa")

    # -- what the handlers, the store and the source read --------------------------------------

    def mapped_models(self) -> list[MappedModel]:
        """Every mapped model, in registration order."""
        return list(self._resolved().values())

    def by_label(self) -> dict[str, ContactMapping]:
        """The mappings by record label, what ``SyncApp.mappings`` holds."""
        return {mapped.label: mapped.mapping for mapped in self.mapped_models()}

    def model_for_label(self, label: str) -> type[models.Model]:
        for mapped in self.mapped_models():
            if mapped.label == label:
                return mapped.model
        known = ", ".join(mapped.label for mapped in self.mapped_models()) or "none"
        raise ImproperlyConfigured(f"no mapping is registered for {label!r} (registered: {known})")

    def for_sender(self, sender: type[Any]) -> tuple[MappedModel | None, tuple[RelatedModel, ...]]:
        """What a save of ``sender`` means: the mapped model it is, the contacts it belongs to."""
        found = self._by_sender.get(sender)
        if found is None:
            found = self._classify(sender)
            self._by_sender[sender] = found
        return found

    def senders(self) -> list[type[models.Model]]:
        """The model classes whose signals matter: mapped and related models with their proxies."""
        concrete = set(self._resolved()) | set(self._related)
        return [model for model in apps.get_models() if model._meta.concrete_model in concrete]

    def __iter__(self) -> Iterator[ContactMapping]:
        return iter(list(self._mappings))

    # -- internals -----------------------------------------------------------------------------

    def _changed(self) -> None:
        # Once models are loaded (from the app configs' ready() on), a registration takes effect at
        # once; earlier ones are wired by this app's ready().
        if self._connect_handlers and apps.models_ready:
            from meisa_sync_django import handlers

            handlers.connect()

    def _forget(self) -> None:
        self._mapped = None
        self._related = {}
        self._by_sender = {}

    def _classify(self, sender: type[Any]) -> tuple[MappedModel | None, tuple[RelatedModel, ...]]:
        meta = getattr(sender, "_meta", None)
        if meta is None:
            return None, ()
        concrete = meta.concrete_model
        mapped = self._resolved()
        return mapped.get(concrete), self._related.get(concrete, ())

    def _resolved(self) -> dict[type[models.Model], MappedModel]:
        mapped = self._mapped
        if mapped is not None:
            return mapped
        with self._lock:
            if self._mapped is not None:
                return self._mapped
            resolved: dict[type[models.Model], MappedModel] = {}
            related: dict[type[models.Model], list[RelatedModel]] = {}
            for mapping in self._mappings:
                entry = _mapped_model(mapping)
                if entry.model in resolved:
                    other = type(resolved[entry.model].mapping).__qualname__
                    raise ImproperlyConfigured(
                        f"{entry.label} is mapped twice, by {other} and "
                        f"{type(mapping).__qualname__}; register one mapping per model"
                    )
                resolved[entry.model] = entry
                for related_model, path in (getattr(type(mapping), "related", None) or {}).items():
                    model = resolve_model(related_model, f"{type(mapping).__qualname__}.related")
                    concrete = model._meta.concrete_model or model
                    related.setdefault(concrete, []).append(_related_model(entry, model, path))
            self._related = {model: tuple(entries) for model, entries in related.items()}
            self._mapped = resolved
            return resolved


def resolve_model(reference: object, where: str) -> type[models.Model]:
    """A model class from a class or an ``"app_label.ModelName"`` string."""
    if isinstance(reference, str):
        try:
            return apps.get_model(reference)
        except (LookupError, ValueError) as exc:
            raise ImproperlyConfigured(
                f"{where} names the model {reference!r}, which is not installed: {exc}"
            ) from exc
    if isinstance(reference, type) and issubclass(reference, models.Model):
        if reference._meta.abstract:
            raise ImproperlyConfigured(f"{where} is the abstract model {reference.__qualname__}")
        return reference
    raise ImproperlyConfigured(
        f"{where} must be a Django model class or an 'app_label.ModelName' string, "
        f"not {reference!r}"
    )


def _mapped_model(mapping: ContactMapping) -> MappedModel:
    name = type(mapping).__qualname__
    reference = getattr(type(mapping), "model", None)
    if reference is None:
        raise ImproperlyConfigured(
            f"{name} has no model: set `model = YourModel` (or 'app_label.ModelName') on it"
        )
    model = resolve_model(reference, f"{name}.model")
    attributes = mapping.local_attributes
    watched: frozenset[str] | None = None
    if attributes is not None:
        names: set[str] = set()
        for attribute in attributes:
            names.add(attribute)
            try:
                field = model._meta.get_field(attribute)
            except Exception:
                continue  # a property or a reverse relation: its name is all a save can mention
            names.add(field.name)
            attname = getattr(field, "attname", None)
            if attname:
                names.add(attname)
        watched = frozenset(names)
    return MappedModel(model._meta.label, model, mapping, watched)


def _related_model(target: MappedModel, model: type[models.Model], path: object) -> RelatedModel:
    where = f"{type(target.mapping).__qualname__}.related[{model.__qualname__}]"
    if not isinstance(path, str) or not path:
        raise ImproperlyConfigured(
            f"{where} must be the dotted path from a {model.__name__} to its "
            f"{target.model.__name__}, such as 'user'"
        )
    steps = tuple(path.split("."))
    fk_attname = None
    if len(steps) == 1:
        try:
            field = model._meta.get_field(steps[0])
        except Exception as exc:
            raise ImproperlyConfigured(
                f"{where} is {path!r}, but {model.__name__} has no field {steps[0]!r}"
            ) from exc
        if not (field.many_to_one or field.one_to_one) or field.related_model is None:
            raise ImproperlyConfigured(
                f"{where} is {path!r}, which must be a ForeignKey or OneToOneField to "
                f"{target.model.__name__}"
            )
        if field.concrete:
            fk_attname = field.get_attname()
    return RelatedModel(target, steps, fk_attname)


registry = MappingRegistry(connect_handlers=True)
"""The process-wide registry the app wires its signal handlers to."""


def register(mapping: MappingT) -> MappingT:
    """Register a ``ContactMapping`` class or instance; usable as a class decorator::

    @meisa_sync_django.register
    class UserMapping(ContactMapping):
        model = User
        ...
    """
    registry.register(mapping)
    return mapping
