"""``DjangoSource``: loads the mapped objects of a batch through the ORM (``ObjectSource``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models

from meisa_sync_django.registry import resolve_model

if TYPE_CHECKING:
    from meisa_sync.mapping import ContactMapping

__all__ = ["DjangoSource", "relation_lookup"]


class DjangoSource:
    """Loads objects by primary key on database ``using``, in one query per batch.

    The mapping's related paths are joined in with ``select_related`` when every step is a
    single-valued relation (a foreign key, a one-to-one either way), and fetched with
    ``prefetch_related`` otherwise, so a batch costs one query plus one per multi-valued path.
    The default manager is bypassed (``_base_manager``): a manager hiding inactive users must not
    make their contacts look deleted.
    """

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._plans: dict[type[models.Model], tuple[list[str], list[str]]] = {}

    def load(self, model: str, pks: Sequence[str], mapping: ContactMapping) -> dict[str, object]:
        model_class = resolve_model(type(mapping).model, f"{type(mapping).__qualname__}.model")
        pk_field = model_class._meta.pk
        assert pk_field is not None
        wanted = []
        for pk in pks:
            try:
                wanted.append(pk_field.to_python(pk))
            except ValidationError:
                continue  # a key this model cannot hold names no object
        if not wanted:
            return {}
        joined, prefetched = self._plan(model_class, mapping)
        queryset = model_class._base_manager.using(self.using).filter(pk__in=wanted)
        if joined:
            queryset = queryset.select_related(*joined)
        if prefetched:
            queryset = queryset.prefetch_related(*prefetched)
        return {str(obj.pk): obj for obj in queryset}

    def _plan(
        self, model: type[models.Model], mapping: ContactMapping
    ) -> tuple[list[str], list[str]]:
        plan = self._plans.get(model)
        if plan is None:
            joined: list[str] = []
            prefetched: list[str] = []
            for path in sorted(mapping.related_paths):
                lookup = relation_lookup(model, path)
                if lookup is None:
                    continue  # a property or method: nothing to load ahead
                single_valued, django_path = lookup
                (joined if single_valued else prefetched).append(django_path)
            plan = self._plans[model] = (joined, prefetched)
        return plan


def relation_lookup(model: type[models.Model], path: str) -> tuple[bool, str] | None:
    """Whether the dotted relation path is single-valued all the way, and its ``__`` form.

    None when the path does not start with a relation (an attribute the ORM cannot load ahead);
    a path is cut where it stops being a relation.
    """
    steps: list[str] = []
    single_valued = True
    current: type[models.Model] | None = model
    for name in path.split("."):
        if current is None:
            break
        try:
            field = current._meta.get_field(name)
        except FieldDoesNotExist:
            break
        if not field.is_relation:
            break
        steps.append(name)
        if field.many_to_many or field.one_to_many:
            single_valued = False
        related = field.related_model
        current = related if isinstance(related, type) else None
    if not steps:
        return None
    return single_valued, "__".join(steps)
