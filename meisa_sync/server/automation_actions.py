"""Actions of automation rules (CONTRACT.md §6): what a rule does when it fires.

``add_tag {tag}``, ``remove_tag {tag}``, ``enroll {sequence}``, ``unenroll {sequence}``. The engine
only says which actions to run; the server applies them (tags are idempotent, enrollment follows
CONTRACT.md §5) and logs each as ``applied`` or ``no_op``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from meisa_sync.contract import MAX_TAG_LENGTH, SEQUENCE_SLUG_RE
from meisa_sync.server.matchers import RuleError

__all__ = ["Action", "AddTag", "Enroll", "RemoveTag", "Unenroll", "parse_actions"]

MAX_ACTIONS = 50


@dataclass(frozen=True)
class AddTag:
    """Add the tag (created if new); a no-op when the contact has it."""

    type: ClassVar[str] = "add_tag"
    tag: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "tag": self.tag}


@dataclass(frozen=True)
class RemoveTag:
    """Remove the tag; a no-op when the contact lacks it."""

    type: ClassVar[str] = "remove_tag"
    tag: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "tag": self.tag}


@dataclass(frozen=True)
class Enroll:
    """Enroll in the sequence, following the enrollment rules of CONTRACT.md §5."""

    type: ClassVar[str] = "enroll"
    sequence: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "sequence": self.sequence}


@dataclass(frozen=True)
class Unenroll:
    """End the active enrollment in the sequence (it becomes ``exited``); a no-op when none."""

    type: ClassVar[str] = "unenroll"
    sequence: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "sequence": self.sequence}


Action: TypeAlias = AddTag | RemoveTag | Enroll | Unenroll


def parse_actions(data: Any, known_sequences: Collection[str] | None) -> tuple[Action, ...]:
    """Validate a rule's ``actions`` list; ``known_sequences=None`` skips the sequence check."""
    if not isinstance(data, list):
        raise RuleError("actions", "must be a list of actions")
    if not 1 <= len(data) <= MAX_ACTIONS:
        raise RuleError("actions", f"must hold 1 to {MAX_ACTIONS} actions")
    return tuple(
        _parse_action(item, f"actions[{index}]", known_sequences) for index, item in enumerate(data)
    )


def _parse_action(data: Any, path: str, known_sequences: Collection[str] | None) -> Action:
    if not isinstance(data, Mapping):
        raise RuleError(path, 'must be an object like {"type": "add_tag", "tag": "vip"}')
    kind = data.get("type")
    if kind in (AddTag.type, RemoveTag.type):
        _only_keys(data, path, "tag")
        tag = _parse_tag(data.get("tag"), f"{path}.tag")
        return AddTag(tag) if kind == AddTag.type else RemoveTag(tag)
    if kind in (Enroll.type, Unenroll.type):
        _only_keys(data, path, "sequence")
        slug = _parse_sequence(data.get("sequence"), f"{path}.sequence", known_sequences)
        return Enroll(slug) if kind == Enroll.type else Unenroll(slug)
    raise RuleError(f"{path}.type", "must be add_tag, remove_tag, enroll or unenroll")


def _only_keys(data: Mapping[str, Any], path: str, argument: str) -> None:
    for key in data:
        if key not in ("type", argument):
            raise RuleError(
                f"{path}.{key}", f"unknown field; a {data['type']} action has {argument}"
            )
    if argument not in data:
        raise RuleError(f"{path}.{argument}", "is required")


def _parse_tag(data: Any, path: str) -> str:
    if not isinstance(data, str):
        raise RuleError(path, "must be a string")
    tag = data.strip()
    if not 1 <= len(tag) <= MAX_TAG_LENGTH:
        raise RuleError(path, f"must be 1 to {MAX_TAG_LENGTH} characters")
    return tag


def _parse_sequence(data: Any, path: str, known_sequences: Collection[str] | None) -> str:
    if not isinstance(data, str) or SEQUENCE_SLUG_RE.fullmatch(data) is None:
        raise RuleError(path, "must be a sequence slug (^[a-z0-9][a-z0-9-]{0,63}$)")
    if known_sequences is not None and data not in known_sequences:
        raise RuleError(path, f"unknown sequence {data!r}")
    return data
