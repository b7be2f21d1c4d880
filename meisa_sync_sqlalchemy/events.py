"""Session listeners that write a change record for every new, changed or deleted mapped object.

The records go through the flushing session's own connection, in its transaction (CONTRACT.md
§10.1): a rollback leaves nothing, a commit leaves the records, and a rolled-back savepoint
(``begin_nested``) leaves nothing of its own. Per flush:

- a new mapped object, or a persistent one with a change to an attribute the mapping reads
  (``mapping.local_attributes``; every attribute when that is ``None``), records an upsert;
- a new, changed or deleted related object (``mapping.related``: ``{Subscription: "user"}``) records
  an upsert of its user(s), before and after a move to another user;
- a deleted mapped object records, under ``delete_policy="erase"``, a delete carrying
  ``mapping.identifiers(obj)`` captured before the row goes; under ``"ignore"``, nothing;
- one record per object (a delete wins over an upsert of the same object), all in one executemany
  INSERT. Several flushes in one transaction may write several records; the worker coalesces them.

The save path runs no mapping code but ``identifiers`` on delete, except in strict mode (§10.2),
where the payload is also built once the flush is done and a ``PayloadError`` becomes
``StrictModeError``.

Bulk ``update()``/``delete()`` statements and ``Session.execute(insert(...))`` bypass the ORM's unit
of work, so no listener sees them: record those rows with ``recording.record_select``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import event, inspect
from sqlalchemy.orm import InstanceState, Session, UOWTransaction

from meisa_sync.exceptions import ConfigurationError, StrictModeError
from meisa_sync.records import NewChange, ObjectKey, Operation
from meisa_sync_sqlalchemy.strict import check_payloads
from meisa_sync_sqlalchemy.watching import RelatedPath, WatchedModel, any_changed
from meisa_sync_sqlalchemy.writing import OutboxWriter

__all__ = ["ChangeCapture", "DeletePolicy", "capture_for"]

logger = logging.getLogger("meisa_sync.sqlalchemy")

DeletePolicy = Literal["erase", "ignore"]

# Per-session scratch space, in ``session.info`` so it lives and dies with the session.
_DELETED = "meisa_sync.deleted"  # InstanceState -> identifiers or related keys, taken before flush
_EXTRAS = "meisa_sync.extras"  # InstanceState -> extras waiting for the next flush (record_change)
_STRICT = "meisa_sync.strict"  # keys whose payload strict mode builds after the flush


_Deletion = tuple[ObjectKey | None, Mapping[str, str] | None, set[ObjectKey]]


@dataclass
class _FlushChanges:
    """The records one flush produces, one per object key."""

    upserts: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    deletes: dict[ObjectKey, Mapping[str, str]] = field(default_factory=dict)

    def upsert(self, key: ObjectKey, extras: Mapping[str, Any] | None = None) -> None:
        merged = self.upserts.setdefault(key, {})
        if extras:
            merged.update(extras)

    def delete(self, key: ObjectKey, identifiers: Mapping[str, str]) -> None:
        self.deletes[key] = identifiers

    def changes(self) -> list[NewChange]:
        records = [
            NewChange(key, Operation.DELETE, identifiers=identifiers)
            for key, identifiers in self.deletes.items()
        ]
        records.extend(
            NewChange(key, Operation.UPSERT, extras=extras or None)
            for key, extras in self.upserts.items()
            if key not in self.deletes
        )
        return records


class ChangeCapture:
    """The listeners of one registration, installed on a Session class or a sessionmaker."""

    def __init__(
        self,
        watched: Sequence[WatchedModel],
        related: Sequence[RelatedPath],
        writer: OutboxWriter,
        *,
        delete_policy: DeletePolicy = "erase",
        strict: bool = False,
    ) -> None:
        if delete_policy not in ("erase", "ignore"):
            raise ValueError(f"delete_policy must be 'erase' or 'ignore', not {delete_policy!r}")
        self.watched = tuple(watched)
        self.related = tuple(related)
        self.writer = writer
        self.delete_policy = delete_policy
        self.strict = strict
        self._watched_classes = tuple(w.model for w in self.watched) + tuple(
            r.model for r in self.related
        )
        self._targets: list[Any] = []

    # -- installation -------------------------------------------------------------------------

    def install(self, target: Any) -> None:
        """Listen on ``target``: a Session subclass or a ``sessionmaker``."""
        event.listen(target, "before_flush", self._before_flush)
        event.listen(target, "after_flush", self._after_flush)
        if self.strict:
            event.listen(target, "after_flush_postexec", self._after_flush_postexec)
        self._targets.append(target)
        if self not in _INSTALLED:
            _INSTALLED.append(self)

    def listens_to(self, session: Session) -> bool:
        """Whether ``session`` is one this capture listens on."""
        return any(isinstance(session, _session_class(target)) for target in self._targets)

    def remove(self) -> None:
        """Stop listening everywhere this capture was installed."""
        for target in self._targets:
            event.remove(target, "before_flush", self._before_flush)
            event.remove(target, "after_flush", self._after_flush)
            if self.strict:
                event.remove(target, "after_flush_postexec", self._after_flush_postexec)
        self._targets.clear()
        if self in _INSTALLED:
            _INSTALLED.remove(self)

    def covers(self, obj: object) -> bool:
        """Whether ``obj`` (an instance or a class) is a watched or related model here."""
        if isinstance(obj, type):
            return issubclass(obj, self._watched_classes)
        return isinstance(obj, self._watched_classes)

    # -- what an object means -----------------------------------------------------------------

    def watched_for(self, obj: object) -> WatchedModel | None:
        """The watched model ``obj`` (an instance or a class) belongs to, if any."""
        cls = obj if isinstance(obj, type) else type(obj)
        for watched in self.watched:
            if issubclass(cls, watched.model):
                return watched
        return None

    def upsert_keys(self, obj: object) -> set[ObjectKey]:
        """The contacts an object stands for: itself, or the user(s) a related object belongs to."""
        keys: set[ObjectKey] = set()
        watched = self.watched_for(obj)
        if watched is not None:
            key = watched.key(obj)
            if key is not None:
                keys.add(key)
        for related in self.related:
            if isinstance(obj, related.model):
                keys |= related.keys(obj)
        return keys

    def write(self, session: Session, changes: Sequence[NewChange], *, mapper_of: object) -> None:
        """Insert ``changes`` through ``session``'s connection for ``mapper_of``'s table."""
        if not changes:
            return
        info = inspect(mapper_of)
        mapper = info if isinstance(mapper_of, type) else info.mapper
        connection = session.connection(bind_arguments={"mapper": mapper})
        self.writer.write(connection, changes)

    # -- listeners ----------------------------------------------------------------------------

    def _before_flush(
        self, session: Session, flush_context: UOWTransaction, instances: Any
    ) -> None:
        # Deleted rows cannot be read after the flush: take what the records need now.
        deleted = [obj for obj in session.deleted if self.covers(obj)]
        if not deleted:
            return
        taken: dict[InstanceState[Any], Any] = session.info.setdefault(_DELETED, {})
        for obj in deleted:
            taken[inspect(obj)] = self._deletion(obj)

    def _deletion(self, obj: object) -> _Deletion:
        """(own key, identifiers under the erase policy, its users' keys) of a deleted object."""
        watched = self.watched_for(obj)
        key = identifiers = None
        if watched is not None:
            key = watched.key(obj)
            if self.delete_policy == "erase" and key is not None:
                identifiers = self._identifiers(watched, obj, key)
        related_keys: set[ObjectKey] = set()
        for related in self.related:
            if isinstance(obj, related.model):
                related_keys |= related.keys(obj)
        return key, identifiers, related_keys

    def _identifiers(self, watched: WatchedModel, obj: object, key: ObjectKey) -> Mapping[str, str]:
        """The identifiers to erase; a mapping error never breaks the delete (strict mode aside)."""
        try:
            return watched.mapping.identifiers(obj)
        except Exception as exc:
            if self.strict:
                raise StrictModeError(f"{watched.model.__name__} {key.pk}: {exc}") from exc
            # Recorded without identifiers, the delete goes dead in the worker, which says why:
            # visible in `meisa-sync status` instead of lost.
            logger.error("cannot read the identifiers of deleted %s: %s", key, exc)
            return {}

    def _after_flush(self, session: Session, flush_context: UOWTransaction) -> None:
        taken: dict[InstanceState[Any], Any] = session.info.pop(_DELETED, {})
        pending_extras: dict[InstanceState[Any], dict[str, Any]] = session.info.get(_EXTRAS, {})
        flushed = _FlushChanges()
        ignored: set[ObjectKey] = set()
        anchor: object | None = None

        for obj in session.new:
            if self.covers(obj):
                anchor = anchor or obj
                for key in self.upsert_keys(obj):
                    flushed.upsert(key)

        for obj in session.dirty:
            if self.covers(obj) and self._changed(obj, inspect(obj)):
                anchor = anchor or obj
                for key in self.upsert_keys(obj):
                    flushed.upsert(key)

        for obj in session.deleted:
            if not self.covers(obj):
                continue
            anchor = anchor or obj
            state = inspect(obj)
            pending_extras.pop(state, None)  # a deleted object's extras go nowhere
            own_key, identifiers, related_keys = taken.get(state) or self._deletion(obj)
            if own_key is not None and identifiers is not None:
                flushed.delete(own_key, identifiers)
            elif own_key is not None:
                ignored.add(own_key)
            for related_key in related_keys:
                flushed.upsert(related_key)
        # Under "ignore" a deleted user records nothing, not even through its deleted subscription.
        for key in ignored:
            flushed.upserts.pop(key, None)
        self._take_extras(pending_extras, flushed)

        changes = flushed.changes()
        if anchor is None or not changes:
            return
        self.write(session, changes, mapper_of=anchor)
        if self.strict:
            to_build = flushed.upserts.keys() - flushed.deletes.keys()
            session.info.setdefault(_STRICT, set()).update(to_build)

    def _take_extras(
        self, pending: dict[InstanceState[Any], dict[str, Any]], flushed: _FlushChanges
    ) -> None:
        """Merge ``record_change`` extras into this flush's records of the same contacts."""
        for state, extras in list(pending.items()):
            obj = state.obj()
            if obj is None or not self.covers(obj):
                continue
            keys = self.upsert_keys(obj) & flushed.upserts.keys()
            for key in keys:
                flushed.upsert(key, extras)
            if keys:
                del pending[state]

    def _changed(self, obj: object, state: InstanceState[Any]) -> bool:
        watched = self.watched_for(obj)
        if watched is not None and watched.changed(state):
            return True
        # A related object counts on any column change: the mapping may read any of them.
        return any(isinstance(obj, r.model) for r in self.related) and any_changed(state)

    def _after_flush_postexec(self, session: Session, flush_context: UOWTransaction) -> None:
        check_payloads(session, self.watched, session.info.pop(_STRICT, set()))


_INSTALLED: list[ChangeCapture] = []


def _session_class(target: Any) -> type[Session]:
    cls = target if isinstance(target, type) else target.class_
    assert issubclass(cls, Session)
    return cls


def capture_for(session: Session, obj: object) -> ChangeCapture:
    """The installed capture that listens on ``session`` and watches ``obj``'s class."""
    for capture in reversed(_INSTALLED):
        if capture.covers(obj) and capture.listens_to(session):
            return capture
    raise ConfigurationError(
        f"no meisa-sync registration watches {type(obj).__name__} on this session; register its "
        "ContactMapping with SQLAlchemySync (on this session's class or sessionmaker) first"
    )


def pending_extras(session: Session) -> dict[InstanceState[Any], dict[str, Any]]:
    """Extras ``record_change`` left for the next flush of ``session``."""
    extras: dict[InstanceState[Any], dict[str, Any]] = session.info.setdefault(_EXTRAS, {})
    return extras
