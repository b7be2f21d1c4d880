"""From claimed objects to requests: coalescing, loading and building (CONTRACT.md §10.4, §10.5).

``plan_batch`` turns one claim's worth of ``ClaimedObject`` into one ``Plan`` per object, without
any network I/O: what to send (an upsert payload or a delete's identifiers), or why nothing is sent
(unchanged, ``should_sync`` said no, the object is gone), or why the records are dead (a mapping
error) or must wait (the source failed). The worker sends the plans that have something to send.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meisa_sync.exceptions import ConfigurationError, MeisaSyncError
from meisa_sync.payload import canonical_json, payload_hash
from meisa_sync.records import ClaimedObject, ObjectKey, Operation

if TYPE_CHECKING:
    from meisa_sync.app import SyncApp
    from meisa_sync.mapping import ContactMapping

__all__ = ["Action", "Coalesced", "Plan", "SkipReason", "coalesce", "describe_error", "plan_batch"]

logger = logging.getLogger(__name__)


class Action(str, enum.Enum):
    """What the worker does with an object's records."""

    SEND = "send"  # a request goes out
    SKIP = "skip"  # acknowledged without a request; ``reason`` says why
    DEAD = "dead"  # a mapping error: the records die with ``error``
    RETRY = "retry"  # the object could not be loaded: try again later


class SkipReason(str, enum.Enum):
    UNCHANGED = "unchanged"
    SHOULD_SYNC = "should_sync"
    GONE = "gone"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class Coalesced:
    """All pending records of an object as one operation: newest operation wins, extras merged."""

    operation: Operation
    extras: dict[str, Any]
    identifiers: Mapping[str, str] | None


def coalesce(claimed: ClaimedObject) -> Coalesced:
    """Fold an object's records (oldest first) into the one request they need.

    The newest record decides the operation; a delete carries the identifiers captured when the
    object was deleted. Extras of every upsert record are merged, a later value winning.
    """
    extras: dict[str, Any] = {}
    for record in claimed.records:
        if record.operation is Operation.UPSERT and record.extras:
            extras.update(record.extras)
    newest = claimed.newest
    return Coalesced(
        operation=newest.operation,
        extras=extras,
        identifiers=dict(newest.identifiers) if newest.identifiers is not None else None,
    )


@dataclass(frozen=True)
class Plan:
    """What to do with one claimed object.

    For ``SEND``: ``body`` is the upsert payload or the delete's identifiers, ``payload_hash`` and
    ``canonical`` identify an upsert payload (``None`` for deletes). ``error`` explains ``DEAD`` and
    ``RETRY``; ``cause`` is the exception behind it.
    """

    claimed: ClaimedObject
    action: Action
    operation: Operation
    body: Mapping[str, Any] | None = None
    payload_hash: str | None = None
    canonical: str | None = None
    reason: SkipReason | None = None
    error: str | None = None
    cause: BaseException | None = None

    @property
    def key(self) -> ObjectKey:
        return self.claimed.key

    @property
    def idempotency_key(self) -> str:
        """The newest record id plus the payload's hash: a resend of the same change replays."""
        digest = self.payload_hash or payload_hash({"delete": dict(self.body or {})})
        return f"{self.claimed.newest.id}-{digest[:16]}"


def plan_batch(app: SyncApp, batch: Sequence[ClaimedObject]) -> list[Plan]:
    """One plan per claimed object, loading each model's objects in one ``source.load`` call."""
    plans: dict[ObjectKey, Plan] = {}
    upserts: dict[str, list[tuple[ClaimedObject, Coalesced]]] = {}
    for claimed in batch:
        change = coalesce(claimed)
        if change.operation is Operation.DELETE:
            plans[claimed.key] = _plan_delete(claimed, change)
        else:
            upserts.setdefault(claimed.key.model, []).append((claimed, change))
    for model, changes in upserts.items():
        for plan in _plan_upserts(app, model, changes):
            plans[plan.key] = plan
    return [plans[claimed.key] for claimed in batch]


def _plan_delete(claimed: ClaimedObject, change: Coalesced) -> Plan:
    if not change.identifiers:
        return Plan(
            claimed,
            Action.DEAD,
            Operation.DELETE,
            error="delete record carries no identifiers (email or external_id) to erase",
        )
    return Plan(claimed, Action.SEND, Operation.DELETE, body=change.identifiers)


def _plan_upserts(
    app: SyncApp, model: str, changes: list[tuple[ClaimedObject, Coalesced]]
) -> list[Plan]:
    try:
        mapping = app.mapping_for(model)
    except ConfigurationError as exc:
        return [_dead(claimed, exc) for claimed, _ in changes]
    pks = [claimed.key.pk for claimed, _ in changes]
    try:
        objects = app.source.load(model, pks, mapping)
    except Exception as exc:
        logger.exception("loading %d %s objects failed; they will be retried", len(pks), model)
        return [
            Plan(claimed, Action.RETRY, Operation.UPSERT, error=describe_error(exc), cause=exc)
            for claimed, _ in changes
        ]
    return [
        _plan_upsert(mapping, claimed, change, objects.get(claimed.key.pk, _GONE))
        for claimed, change in changes
    ]


_GONE = object()


def _plan_upsert(
    mapping: ContactMapping, claimed: ClaimedObject, change: Coalesced, obj: object
) -> Plan:
    if obj is _GONE:
        # Deleted since the change: its delete record, if the policy wrote one, erases the contact.
        return Plan(claimed, Action.SKIP, Operation.UPSERT, reason=SkipReason.GONE)
    try:
        if not mapping.should_sync(obj):
            return Plan(claimed, Action.SKIP, Operation.UPSERT, reason=SkipReason.SHOULD_SYNC)
        payload = mapping.build(obj, change.extras or None)
        canonical = canonical_json(payload)
    except Exception as exc:
        # User code (transforms, callables, should_sync) can raise anything: it is a mapping error.
        return _dead(claimed, exc)
    digest = payload_hash(payload)
    if digest == claimed.last_payload_hash:
        return Plan(
            claimed,
            Action.SKIP,
            Operation.UPSERT,
            payload_hash=digest,
            canonical=canonical,
            reason=SkipReason.UNCHANGED,
        )
    return Plan(
        claimed,
        Action.SEND,
        Operation.UPSERT,
        body=payload,
        payload_hash=digest,
        canonical=canonical,
    )


def _dead(claimed: ClaimedObject, exc: BaseException) -> Plan:
    return Plan(
        claimed, Action.DEAD, claimed.newest.operation, error=describe_error(exc), cause=exc
    )


def describe_error(exc: BaseException) -> str:
    """The message stored on dead records: the error's own words, typed unless it is ours."""
    if isinstance(exc, MeisaSyncError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
