"""Strict mode (CONTRACT.md §10.2): build the payloads at save time and refuse the save on error.

For test suites: a mapping error that production would only show as a dead record in the worker
fails the flush that caused it, naming the field. Runs after the flush, when the flushed objects are
persistent and their relationships loadable, so it sees what the worker will see once committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.orm import Session

from meisa_sync.exceptions import MeisaSyncError, PayloadError, StrictModeError
from meisa_sync.records import ObjectKey
from meisa_sync_sqlalchemy.watching import WatchedModel

__all__ = ["check_payloads"]


def check_payloads(
    session: Session, watched: Sequence[WatchedModel], keys: Iterable[ObjectKey]
) -> None:
    """Build the payload of each recorded object ``should_sync`` accepts; raise StrictModeError."""
    by_label = {model.label: model for model in watched}
    for key in sorted(keys):
        model = by_label[key.model]
        obj = _lookup(session, model, key)
        if obj is None or not model.mapping.should_sync(obj):
            continue
        try:
            model.mapping.build(obj)
        except PayloadError as exc:
            raise StrictModeError(
                f"{model.model.__name__} {key.pk}: {exc} (strict mode builds the payload at save "
                "time; turn strict off in production)"
            ) from exc
        except MeisaSyncError:
            raise
        except Exception as exc:
            raise StrictModeError(f"{model.model.__name__} {key.pk}: {exc!r}") from exc


def _lookup(session: Session, model: WatchedModel, key: ObjectKey) -> object | None:
    pk_type = model.mapper.primary_key[0].type
    try:
        pk: object = pk_type.python_type(key.pk)
    except (NotImplementedError, TypeError, ValueError):
        pk = key.pk
    with session.no_autoflush:
        return session.get(model.model, pk)
