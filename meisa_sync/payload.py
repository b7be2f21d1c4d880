"""Canonical JSON and payload hashes: equal payloads hash equally (no-op suppression relies on it).

The canonical form sorts keys, has no whitespace, keeps non-ASCII characters as they are (UTF-8),
refuses NaN and infinities, and writes a float that holds an integer as the integer (``99.0`` as
``99``), since JSON numbers have no type and Meisa compares them by value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from meisa_sync.contract import BODY_FIELD, MAX_BODY_BYTES
from meisa_sync.exceptions import PayloadError

__all__ = ["canonical_json", "check_body_size", "payload_hash"]

_LARGEST_EXACT_FLOAT_INT = 2**53

_encoder = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)


def _integral_floats_as_ints(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if value.is_integer() and abs(value) <= _LARGEST_EXACT_FLOAT_INT:
            return int(value)
        return value
    if kind is dict or isinstance(value, Mapping):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [_integral_floats_as_ints(item) for item in value]
    return value


def canonical_json(payload: Mapping[str, Any]) -> str:
    """The payload as canonical JSON text (sorted keys, no spaces, UTF-8, no NaN).

    Raises ``ValueError`` for NaN or infinite floats and ``TypeError`` for values JSON cannot hold:
    payloads from :meth:`ContactMapping.build <meisa_sync.mapping.ContactMapping.build>` never have
    either.
    """
    return _encoder.encode(_integral_floats_as_ints(payload))


def payload_hash(payload: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of :func:`canonical_json`: the identity of a payload's content."""
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def check_body_size(payload: Mapping[str, Any]) -> None:
    """Raise PayloadError (field ``"body"``) when the payload encodes to more than 1 MiB."""
    size = len(canonical_json(payload).encode("utf-8"))
    if size > MAX_BODY_BYTES:
        raise PayloadError(
            BODY_FIELD,
            f"the payload is {size} bytes; Meisa accepts at most {MAX_BODY_BYTES} "
            "(shorten the longest custom fields)",
        )
