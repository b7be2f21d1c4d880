"""Custom-field merge and change detection for an upsert (CONTRACT.md §4, "Change detection").

An upsert merges the sent ``custom_fields`` into the stored ones, and the automation engine reacts
to the difference between the two: the change set. Both steps are pure functions of JSON values, so
the server, the tests and the engine share one definition of "changed".

Equality is JSON equality, not Python equality: numbers compare by value (``99 == 99.0``), but a
boolean is not a number (``True != 1``) and a string is never a number (``"99" != 99``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["change_set", "is_number", "json_equal", "merge"]


def is_number(value: object) -> bool:
    """Whether ``value`` is a JSON number: an ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def json_equal(a: object, b: object) -> bool:
    """Whether two JSON values are equal: numbers by value, everything else by type and value."""
    if is_number(a) and is_number(b):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def merge(stored: Mapping[str, Any], sent: Mapping[str, Any]) -> dict[str, Any]:
    """The custom fields after an upsert: a sent key overwrites, ``None`` deletes, absent stays."""
    merged = dict(stored)
    for key, value in sent.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def change_set(stored: Mapping[str, Any], merged: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Each field whose value differs between ``stored`` and ``merged``, as ``(old, new)``.

    An absent key reads as ``None``, so a deleted key is a change to ``None``; on creation pass
    ``stored={}`` and every sent field is a change from ``None``. Keys come in ``merged`` order,
    then the deleted ones in ``stored`` order, so the activity log reads like the request.
    """
    changes: dict[str, tuple[Any, Any]] = {}
    for key in [*merged, *(key for key in stored if key not in merged)]:
        old, new = stored.get(key), merged.get(key)
        if not json_equal(old, new):
            changes[key] = (old, new)
    return changes
