"""The ``pre_save``/``post_save``/``post_delete`` receivers that record changes.

What a save costs: a dictionary lookup for models nobody mapped; for a mapped or watched model, one
INSERT on the save's own database alias, inside its transaction (CONTRACT.md §10.1). No mapping code
runs on save; a delete runs ``mapping.identifiers`` to capture what erasing the contact needs.

Not recorded: a save whose ``update_fields`` touch no field the mapping reads; ``raw`` saves
(``loaddata``; backfill them with ``manage.py meisa_sync backfill``); ``QuerySet.update()`` and
``bulk_update()``, which send no signals (follow them with ``record_queryset``).

Outside ``transaction.atomic`` (autocommit, no ``ATOMIC_REQUESTS``) the save and the record are two
statements, each committed on its own; wrap saves in ``atomic`` to make them one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import models
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save

from meisa_sync.exceptions import MeisaSyncError, StrictModeError
from meisa_sync.records import NewChange, ObjectKey, Operation
from meisa_sync_django.conf import DeletePolicy, sync_settings
from meisa_sync_django.outbox import write_changes
from meisa_sync_django.registry import MappedModel, RelatedModel, registry

__all__ = ["connect", "disconnect"]

logger = logging.getLogger(__name__)

_SIGNALS = {
    "pre_save": pre_save,
    "post_save": post_save,
    "pre_delete": pre_delete,
    "post_delete": post_delete,
}
_connected: list[tuple[str, type[models.Model]]] = []


def connect() -> None:
    """Connect the receivers to the mapped and watched models (the app config does it at start).

    Receivers are connected per model, never to every model: a ``post_delete`` receiver on all
    models would turn Django's fast deletes off project-wide.
    """
    disconnect()
    receivers: dict[str, Callable[..., None]] = {
        "pre_save": _before_save,
        "post_save": _after_save,
        "pre_delete": _before_delete,
        "post_delete": _after_delete,
    }
    for model in registry.senders():
        for name, signal in _SIGNALS.items():
            signal.connect(
                receivers[name], sender=model, weak=False, dispatch_uid=_uid(name, model)
            )
            _connected.append((name, model))


def disconnect() -> None:
    """Stop recording changes in this process (a data migration script may want it)."""
    while _connected:
        name, model = _connected.pop()
        _SIGNALS[name].disconnect(sender=model, dispatch_uid=_uid(name, model))


def _uid(signal: str, model: type[models.Model]) -> str:
    return f"meisa_sync_django.{signal}.{model._meta.label}"


def _before_save(
    sender: type[models.Model], instance: models.Model, raw: bool = False, **kwargs: Any
) -> None:
    # Only strict mode works here: it refuses the save before any SQL runs.
    mapped, _ = registry.for_sender(sender)
    if mapped is None or raw or not sync_settings().strict:
        return
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and not _touches(mapped, update_fields):
        return
    _strict_build(mapped, instance)


def _after_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool = False,
    raw: bool = False,
    using: str = "default",
    update_fields: frozenset[str] | None = None,
    **kwargs: Any,
) -> None:
    mapped, related = registry.for_sender(sender)
    if raw or (mapped is None and not related):
        return
    keys: list[ObjectKey] = []
    if mapped is not None and (update_fields is None or _touches(mapped, update_fields)):
        keys.append(ObjectKey(mapped.label, str(instance.pk)))
    for watch in related:
        target_pk = watch.target_pk(instance)
        if target_pk is not None:
            keys.append(ObjectKey(watch.target.label, str(target_pk)))
            if sync_settings().strict:
                _strict_build_related(watch, target_pk, using)
    if keys:
        write_changes(using, [NewChange(key) for key in keys])


def _before_delete(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    # Strict mode refuses a delete it could not erase before any row is gone.
    mapped, _ = registry.for_sender(sender)
    settings = sync_settings()
    if mapped is not None and settings.strict and settings.delete_policy is DeletePolicy.ERASE:
        _identifiers(mapped, instance)


def _after_delete(
    sender: type[models.Model], instance: models.Model, using: str = "default", **kwargs: Any
) -> None:
    mapped, related = registry.for_sender(sender)
    if mapped is None and not related:
        return
    changes: list[NewChange] = []
    if mapped is not None and sync_settings().delete_policy is DeletePolicy.ERASE:
        changes.append(
            NewChange(
                ObjectKey(mapped.label, str(instance.pk)),
                operation=Operation.DELETE,
                identifiers=_identifiers(mapped, instance),
            )
        )
    for watch in related:
        # The contact stays; what it was built from changed. If the contact is being deleted
        # in the same cascade, the worker finds it gone and drops this record.
        target_pk = watch.target_pk(instance)
        if target_pk is not None:
            changes.append(NewChange(ObjectKey(watch.target.label, str(target_pk))))
    if changes:
        write_changes(using, changes)


def _touches(mapped: MappedModel, update_fields: frozenset[str]) -> bool:
    return mapped.watched_fields is None or not mapped.watched_fields.isdisjoint(update_fields)


def _identifiers(mapped: MappedModel, instance: models.Model) -> dict[str, str] | None:
    try:
        return mapped.mapping.identifiers(instance)
    except MeisaSyncError as exc:
        if sync_settings().strict:
            raise StrictModeError(
                f"{mapped.label}:{instance.pk}: cannot capture the identifiers to erase: {exc}"
            ) from exc
        # The delete goes ahead; the worker marks this record dead for want of identifiers.
        logger.exception("meisa-sync: cannot capture the identifiers of %s", instance)
        return None


def _strict_build(mapped: MappedModel, instance: models.Model) -> None:
    mapping = mapped.mapping
    try:
        if mapping.should_sync(instance):
            mapping.build(instance)
    except Exception as exc:
        raise StrictModeError(
            f"{mapped.label}:{instance.pk}: the mapping {type(mapping).__qualname__} "
            f"cannot build a payload: {exc}"
        ) from exc


def _strict_build_related(watch: RelatedModel, target_pk: object, using: str) -> None:
    target = watch.target
    instance = target.model._base_manager.using(using).filter(pk=target_pk).first()
    if instance is not None:
        _strict_build(target, instance)
