"""Value matchers of automation triggers (CONTRACT.md §6): what ``from`` and ``to`` may say.

A matcher is one of

- a JSON scalar: equality, numbers by value (``99`` matches ``99.0``), ``null`` matches an absent
  field;
- ``{"in": [...]}``: equal to one of the scalars (``null`` in the list matches an absent field);
- ``{"not_in": [...]}``: present and equal to none of them (an absent field never matches);
- ``{"gt"|"gte"|"lt"|"lte": number}``: a number in the range, several keys ANDed; only numbers match
  (a boolean is not a number, nor is ``"5"``);
- ``{"exists": bool}``: present or absent.

Values are the custom fields' values, where absent and ``None`` are the same thing (a ``null`` in an
upsert deletes the key).
"""

from __future__ import annotations

import abc
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from meisa_sync.contract import MAX_CUSTOM_STRING_LENGTH
from meisa_sync.server.changes import is_number, json_equal

__all__ = [
    "Equals",
    "Exists",
    "Matcher",
    "NoneOf",
    "OneOf",
    "Range",
    "RuleError",
    "parse_matcher",
]

MAX_LIST_LENGTH = 100

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


class RuleError(ValueError):
    """An automation rule is malformed; ``field`` is the path of the offending value.

    The server answers it with 400 ``validation_error`` and ``field`` in the details.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")


class Matcher(abc.ABC):
    """A test on one custom field's value (``None`` when the field is absent)."""

    @abc.abstractmethod
    def matches(self, value: Any) -> bool:
        """Whether ``value`` satisfies this matcher."""

    @abc.abstractmethod
    def to_json(self) -> Any:
        """The matcher in the rule grammar, as stored and as the API shows it."""


@dataclass(frozen=True)
class Equals(Matcher):
    """A bare scalar: the value equals it."""

    value: Any

    def matches(self, value: Any) -> bool:
        return json_equal(value, self.value)

    def to_json(self) -> Any:
        return self.value


@dataclass(frozen=True)
class OneOf(Matcher):
    """``{"in": [...]}``."""

    values: tuple[Any, ...]

    def matches(self, value: Any) -> bool:
        return any(json_equal(value, candidate) for candidate in self.values)

    def to_json(self) -> Any:
        return {"in": list(self.values)}


@dataclass(frozen=True)
class NoneOf(Matcher):
    """``{"not_in": [...]}``: an absent value is not "some other value", so it never matches."""

    values: tuple[Any, ...]

    def matches(self, value: Any) -> bool:
        if value is None:
            return False
        return not any(json_equal(value, candidate) for candidate in self.values)

    def to_json(self) -> Any:
        return {"not_in": list(self.values)}


@dataclass(frozen=True)
class Range(Matcher):
    """``{"gt"|"gte"|"lt"|"lte": number, ...}``: every bound holds and the value is a number."""

    bounds: tuple[tuple[str, int | float], ...]

    def matches(self, value: Any) -> bool:
        if not is_number(value):
            return False
        return all(_COMPARISONS[op](value, bound) for op, bound in self.bounds)

    def to_json(self) -> Any:
        return dict(self.bounds)


@dataclass(frozen=True)
class Exists(Matcher):
    """``{"exists": true}`` matches any present value, ``{"exists": false}`` an absent one."""

    present: bool

    def matches(self, value: Any) -> bool:
        return (value is not None) is self.present

    def to_json(self) -> Any:
        return {"exists": self.present}


def parse_matcher(data: Any, field: str) -> Matcher:
    """Build a matcher from its JSON form; ``field`` is its path, used in every ``RuleError``."""
    if isinstance(data, Mapping):
        return _parse_operator(data, field)
    if isinstance(data, list):
        raise RuleError(
            field, 'a list is not a matcher; to match one of several values use {"in": [...]}'
        )
    return Equals(_scalar(data, field))


def _parse_operator(data: Mapping[Any, Any], field: str) -> Matcher:
    if not data:
        raise RuleError(field, "an empty object is not a matcher; omit the key to match any value")
    for key in data:
        if key not in ("in", "not_in", "exists", *_COMPARISONS):
            raise RuleError(
                f"{field}.{key}", "unknown matcher; expected in, not_in, gt, gte, lt, lte or exists"
            )
    keys = set(data)
    if keys <= _COMPARISONS.keys():
        return Range(
            tuple((op, _number(data[op], f"{field}.{op}")) for op in _COMPARISONS if op in data)
        )
    if len(keys) > 1:
        raise RuleError(field, "only gt, gte, lt and lte can be combined in one matcher")
    (key,) = keys
    if key == "exists":
        if not isinstance(data[key], bool):
            raise RuleError(f"{field}.exists", "must be true or false")
        return Exists(data[key])
    values = _scalar_list(data[key], f"{field}.{key}")
    return OneOf(values) if key == "in" else NoneOf(values)


def _scalar_list(data: Any, field: str) -> tuple[Any, ...]:
    if not isinstance(data, list):
        raise RuleError(field, "must be a list of JSON scalars")
    if not 1 <= len(data) <= MAX_LIST_LENGTH:
        raise RuleError(field, f"must hold 1 to {MAX_LIST_LENGTH} values")
    return tuple(_scalar(value, f"{field}[{index}]") for index, value in enumerate(data))


def _scalar(data: Any, field: str) -> Any:
    if data is None or isinstance(data, bool):
        return data
    if isinstance(data, str):
        # A string longer than any custom field's value could never match.
        if len(data) > MAX_CUSTOM_STRING_LENGTH:
            raise RuleError(field, f"must be at most {MAX_CUSTOM_STRING_LENGTH} characters")
        return data
    if is_number(data):
        return _number(data, field)
    raise RuleError(field, "must be a string, a number, a boolean or null")


def _number(data: Any, field: str) -> int | float:
    if not is_number(data):
        raise RuleError(field, "must be a number")
    if isinstance(data, float) and not math.isfinite(data):
        raise RuleError(field, "must be a finite number")
    number: int | float = data
    return number
