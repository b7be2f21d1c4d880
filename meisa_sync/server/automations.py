"""The automation engine (CONTRACT.md §6): rules, their validation, and which rules an upsert fires.

Pure: no web framework, no database. The server validates a posted rule with :func:`parse_rule`,
stores :meth:`RuleSpec.to_json`, rebuilds :class:`Rule` objects from its rows with
:meth:`Rule.from_stored`, and on every upsert asks :func:`evaluate` which rules fire for the
request's change set (:func:`meisa_sync.server.changes.change_set`). Applying the actions (tags,
enrollments) and logging them is the server's job.

A rule::

    {"name": "free to paid", "enabled": true, "position": 20,
     "trigger": {"field": "plan", "from": "free", "to": {"not_in": ["free", "churned"]}},
     "actions": [{"type": "add_tag", "tag": "paying-customer"},
                 {"type": "enroll", "sequence": "welcome-pro"}]}

``enabled`` defaults to ``true`` and ``position`` to ``0``: rules run by ascending position, then in
the order they were created, so rules posted without a position run in creation order. A partial
update (PATCH) is the stored rule's JSON updated with the sent keys and parsed again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from meisa_sync.contract import BODY_FIELD, CUSTOM_FIELD_NAME_RE, MAX_NAME_LENGTH
from meisa_sync.server.automation_actions import (
    Action,
    AddTag,
    Enroll,
    RemoveTag,
    Unenroll,
    parse_actions,
)
from meisa_sync.server.matchers import Matcher, RuleError, parse_matcher

__all__ = [
    "Action",
    "AddTag",
    "Enroll",
    "EventTrigger",
    "FieldTrigger",
    "Firing",
    "RemoveTag",
    "Rule",
    "RuleError",
    "RuleSpec",
    "Trigger",
    "Unenroll",
    "evaluate",
    "parse_rule",
]

# Positions are stored in a 32-bit integer column on every database the server supports.
POSITION_RANGE = range(-(2**31), 2**31)

CONTACT_CREATED = "contact_created"


@dataclass(frozen=True)
class FieldTrigger:
    """Fires when ``field`` is in the change set, ``from_`` matches the old value and ``to`` the
    new one; an omitted matcher (``None``) matches any value."""

    field: str
    from_: Matcher | None = None
    to: Matcher | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"field": self.field}
        if self.from_ is not None:
            data["from"] = self.from_.to_json()
        if self.to is not None:
            data["to"] = self.to.to_json()
        return data


@dataclass(frozen=True)
class EventTrigger:
    """Fires on an event rather than a field change; the only event is ``contact_created``."""

    event: Literal["contact_created"] = "contact_created"

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event}


Trigger: TypeAlias = FieldTrigger | EventTrigger


@dataclass(frozen=True)
class RuleSpec:
    """A validated rule as posted, before the server gives it an id."""

    name: str
    enabled: bool
    position: int
    trigger: Trigger
    actions: tuple[Action, ...]

    def to_json(self) -> dict[str, Any]:
        """The rule in its JSON grammar, what the server stores and shows."""
        return {
            "name": self.name,
            "enabled": self.enabled,
            "position": self.position,
            "trigger": self.trigger.to_json(),
            "actions": [action.to_json() for action in self.actions],
        }


@dataclass(frozen=True)
class Rule:
    """A stored rule. ``created_seq`` orders rules of equal ``position`` (lower runs first)."""

    id: str
    name: str
    enabled: bool
    position: int
    created_seq: int
    trigger: Trigger
    actions: tuple[Action, ...]

    @classmethod
    def from_spec(cls, spec: RuleSpec, *, id: str, created_seq: int) -> Rule:
        """The stored form of a validated rule."""
        return cls(
            id=id,
            name=spec.name,
            enabled=spec.enabled,
            position=spec.position,
            created_seq=created_seq,
            trigger=spec.trigger,
            actions=spec.actions,
        )

    @classmethod
    def from_stored(
        cls,
        *,
        id: str,
        created_seq: int,
        name: str,
        enabled: bool,
        position: int,
        trigger: Mapping[str, Any],
        actions: Sequence[Mapping[str, Any]],
    ) -> Rule:
        """Rebuild a rule from a database row holding :meth:`RuleSpec.to_json`'s parts.

        Sequences are not checked again: they were when the rule was saved.
        """
        spec = _parse_rule(
            {
                "name": name,
                "enabled": enabled,
                "position": position,
                "trigger": trigger,
                "actions": actions,
            },
            known_sequences=None,
        )
        return cls.from_spec(spec, id=id, created_seq=created_seq)

    def to_json(self) -> dict[str, Any]:
        """The rule as the API shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "enabled": self.enabled,
            "position": self.position,
            "trigger": self.trigger.to_json(),
            "actions": [action.to_json() for action in self.actions],
        }


@dataclass(frozen=True)
class Firing:
    """One rule that fired on an upsert: the change that fired it and the actions to apply in order.

    ``field``, ``old`` and ``new`` are ``None`` for a ``contact_created`` rule.
    """

    rule: Rule
    field: str | None
    old: Any
    new: Any
    actions: tuple[Action, ...]


def evaluate(
    rules: Sequence[Rule], changes: Mapping[str, tuple[Any, Any]], *, created: bool
) -> list[Firing]:
    """The rules that fire on one upsert, in the order their actions must be applied.

    ``changes`` is the request's change set, ``{field: (old, new)}``; ``created`` says whether the
    upsert created the contact. Every rule sees the same change set (actions change no fields, so
    nothing cascades) and fires at most once; disabled rules never fire.
    """
    firings: list[Firing] = []
    for rule in sorted(rules, key=lambda rule: (rule.position, rule.created_seq)):
        if not rule.enabled:
            continue
        trigger = rule.trigger
        if isinstance(trigger, EventTrigger):
            if created:
                firings.append(Firing(rule, None, None, None, rule.actions))
        elif trigger.field in changes:
            old, new = changes[trigger.field]
            if (trigger.from_ is None or trigger.from_.matches(old)) and (
                trigger.to is None or trigger.to.matches(new)
            ):
                firings.append(Firing(rule, trigger.field, old, new, rule.actions))
    return firings


def parse_rule(data: Mapping[str, Any], *, known_sequences: Collection[str]) -> RuleSpec:
    """Validate a posted rule; raise :class:`RuleError` naming the first bad field.

    ``known_sequences`` holds the slugs of existing sequences: a rule that enrolls in, or unenrolls
    from, any other sequence is refused.
    """
    return _parse_rule(data, known_sequences=known_sequences)


_RULE_KEYS = ("name", "enabled", "position", "trigger", "actions")


def _parse_rule(data: Any, *, known_sequences: Collection[str] | None) -> RuleSpec:
    if not isinstance(data, Mapping):
        raise RuleError(BODY_FIELD, "a rule is a JSON object")
    for key in data:
        if key not in _RULE_KEYS:
            raise RuleError(str(key), f"unknown field; a rule has {', '.join(_RULE_KEYS)}")
    for key in ("name", "trigger", "actions"):
        if key not in data:
            raise RuleError(key, "is required")
    return RuleSpec(
        name=_parse_name(data["name"]),
        enabled=_parse_enabled(data.get("enabled", True)),
        position=_parse_position(data.get("position", 0)),
        trigger=_parse_trigger(data["trigger"]),
        actions=parse_actions(data["actions"], known_sequences),
    )


def _parse_name(data: Any) -> str:
    if not isinstance(data, str):
        raise RuleError("name", "must be a string")
    name = data.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise RuleError("name", f"must be 1 to {MAX_NAME_LENGTH} characters")
    return name


def _parse_enabled(data: Any) -> bool:
    if not isinstance(data, bool):
        raise RuleError("enabled", "must be true or false")
    return data


def _parse_position(data: Any) -> int:
    if not isinstance(data, int) or isinstance(data, bool):
        raise RuleError("position", "must be an integer")
    if data not in POSITION_RANGE:
        raise RuleError("position", f"must be between {POSITION_RANGE[0]} and {POSITION_RANGE[-1]}")
    return data


def _parse_trigger(data: Any) -> Trigger:
    if not isinstance(data, Mapping):
        raise RuleError("trigger", 'must be {"field": NAME, "from"?, "to"?} or {"event": ...}')
    if "event" in data:
        for key in data:
            if key != "event":
                raise RuleError(f"trigger.{key}", "an event trigger has only an event")
        if data["event"] != CONTACT_CREATED:
            raise RuleError("trigger.event", f'unknown event; the only one is "{CONTACT_CREATED}"')
        return EventTrigger()
    if "field" not in data:
        raise RuleError("trigger", 'must name a "field" or an "event"')
    for key in data:
        if key not in ("field", "from", "to"):
            raise RuleError(f"trigger.{key}", "unknown field; a field trigger has field, from, to")
    field = data["field"]
    if not isinstance(field, str) or CUSTOM_FIELD_NAME_RE.fullmatch(field) is None:
        raise RuleError(
            "trigger.field", "must be a custom field name (^[A-Za-z_][A-Za-z0-9_]{0,63}$)"
        )
    return FieldTrigger(
        field=field,
        from_=parse_matcher(data["from"], "trigger.from") if "from" in data else None,
        to=parse_matcher(data["to"], "trigger.to") if "to" in data else None,
    )
