"""Recording changes the flush listeners cannot see, or cannot know about.

- ``record_change(session, user, extras={"churn_reason": reason})``: one-off extra fields (the
  seed's ``upgraded_at``, ``churn_reason``) sent with the user's next sync, in the current
  transaction.
- ``record_select(session, select(User).where(...))``: records the rows a select returns; use it
  after a bulk ``update()`` statement, which bypasses the ORM's events.

Both write through the session's connection, so a rollback takes the records with it. With an
``AsyncSession``, call them through ``await session.run_sync(record_change, user, extras)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, inspect
from sqlalchemy.orm import Session, scoped_session

from meisa_sync.exceptions import ConfigurationError
from meisa_sync.records import NewChange, Operation, Priority
from meisa_sync.serialization import to_json_value
from meisa_sync_sqlalchemy.events import capture_for, pending_extras

__all__ = ["record_change", "record_select", "serialise_extras"]


def serialise_extras(extras: Mapping[str, Any]) -> dict[str, Any]:
    """JSON values for one-off custom fields; a bad name or value raises PayloadError naming it."""
    from meisa_sync.contract import check_custom_field_name

    return {
        check_custom_field_name(name, f"extras.{name}"): to_json_value(value, f"extras.{name}")
        for name, value in extras.items()
    }


def _sync_session(session: Session | scoped_session[Any]) -> Session:
    if hasattr(session, "sync_session"):  # an AsyncSession
        raise ConfigurationError(
            "record_change/record_select flush the session, which an AsyncSession does with await: "
            "call `await session.run_sync(record_change, obj, extras)` instead"
        )
    if isinstance(session, scoped_session):
        current: Session = session()
        return current
    return session


def record_change(
    session: Session | scoped_session[Any],
    obj: object,
    extras: Mapping[str, Any] | None = None,
) -> None:
    """Record ``obj`` (a mapped user, or a related object: its user) with one-off ``extras``.

    The record joins the session's current transaction. When ``obj`` has unflushed changes, they and
    the extras make one record; otherwise a record of their own. Extras are merged over the mapped
    custom fields when the worker builds the payload (later extras win).
    """
    sync_session = _sync_session(session)
    capture = capture_for(sync_session, obj)
    serialised = serialise_extras(extras or {})
    state = inspect(obj)
    pending_extras(sync_session).setdefault(state, {}).update(serialised)
    try:
        sync_session.flush()
    finally:
        # Taken: the flush recorded obj, extras included. Still waiting: the flush did not touch
        # obj. Either way nothing stays behind for a later flush, even when this one failed.
        leftover = pending_extras(sync_session).pop(state, None)
    if leftover is None:
        return
    keys = capture.upsert_keys(obj)
    if not keys:
        raise ConfigurationError(
            f"{type(obj).__name__} has no primary key (or user) yet: add it to the session first"
        )
    changes = [NewChange(key, Operation.UPSERT, extras=leftover or None) for key in sorted(keys)]
    capture.write(sync_session, changes, mapper_of=obj)


def record_select(
    session: Session | scoped_session[Any],
    statement: Select[Any],
    *,
    priority: int = Priority.LIVE,
) -> int:
    """Record an upsert for every row ``statement`` (``select(User)...``) returns; return how many.

    Only the primary keys are selected, in the session's transaction, and written in one INSERT.
    """
    sync_session = _sync_session(session)
    descriptions = statement.column_descriptions
    entity = descriptions[0].get("entity") if descriptions else None
    if entity is None:
        raise ConfigurationError("record_select needs a select() of a mapped class: select(User)")
    capture = capture_for(sync_session, entity)
    watched = capture.watched_for(entity)
    if watched is None:
        raise ConfigurationError(
            f"record_select needs a select() of a mapped user model, not of {entity.__name__}"
        )
    pk_column = getattr(entity, watched.pk_attribute)
    pks = sync_session.scalars(
        statement.with_only_columns(pk_column, maintain_column_froms=True)
    ).all()
    changes = [NewChange(watched.key_for_pk(pk), Operation.UPSERT, priority=priority) for pk in pks]
    capture.write(sync_session, changes, mapper_of=entity)
    return len(changes)
