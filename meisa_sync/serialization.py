"""Python values → JSON values, one named payload field at a time.

The rules (each refusal is a :class:`~meisa_sync.exceptions.PayloadError` naming the field):

- ``None``, ``str``, ``bool`` and ``int`` pass through (subclasses become the plain type).
- ``float``: NaN and infinities are refused. A float that holds an integer (``99.0``) becomes
  the ``int`` (``99``), so equal numbers serialise, and hash, the same: JSON does not tell them
  apart and Meisa compares numbers by value.
- ``decimal.Decimal``: an integral value becomes an ``int`` (``Decimal("99.00")`` → ``99``); any
  other value becomes a ``float`` only when that float reads back as the same decimal
  (``Decimal("0.1")`` → ``0.1``); otherwise it is refused, since sending it would change the
  number.
- aware ``datetime`` → UTC, RFC 3339 with a ``Z``: ``"2024-01-15T10:30:00Z"``; microseconds are
  written only when non-zero (``"2024-01-15T10:30:00.250000Z"``). A naive ``datetime`` is read in
  the zone given (the mapping's ``timezone``, UTC by default).
- ``date`` → ``"2024-01-15"``; ``time`` → ``"10:30:00"`` (microseconds when non-zero, the UTC offset
  when the time is aware).
- ``uuid.UUID`` → its canonical string; ``enum.Enum`` → its value, serialised by these same rules.
- Anything else (lists, dicts, bytes, arbitrary objects) is refused: convert it with ``transform=``.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import TypeAlias

from meisa_sync.exceptions import PayloadError

__all__ = ["JSONScalar", "format_datetime", "to_json_value"]

JSONScalar: TypeAlias = str | int | float | bool | None
"""What a payload field holds once serialised."""

_LARGEST_EXACT_FLOAT_INT = 2**53


def format_datetime(value: dt.datetime, naive_zone: dt.tzinfo = dt.timezone.utc) -> str:
    """Format a datetime as UTC RFC 3339 with ``Z``; a naive one is read in ``naive_zone``."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        value = value.replace(tzinfo=naive_zone)
    utc = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    timespec = "microseconds" if utc.microsecond else "seconds"
    return utc.isoformat(timespec=timespec) + "Z"


def _format_time(value: dt.time) -> str:
    text = value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text[: -len("+00:00")] + "Z" if text.endswith("+00:00") else text


def _number(value: float, field: str) -> int | float:
    if not math.isfinite(value):
        raise PayloadError(field, f"must be a finite number, not {value!r}")
    if value.is_integer() and abs(value) <= _LARGEST_EXACT_FLOAT_INT:
        return int(value)
    return value


def _decimal(value: Decimal, field: str) -> int | float:
    if not value.is_finite():
        raise PayloadError(field, f"must be a finite number, not Decimal({str(value)!r})")
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    if not math.isfinite(as_float) or Decimal(repr(as_float)) != value:
        raise PayloadError(
            field,
            f"Decimal({str(value)!r}) has no exact JSON number; round it with "
            "transform=, e.g. transform=lambda d: round(d, 2), or send it as a string",
        )
    return as_float


def to_json_value(
    value: object, field: str, *, naive_zone: dt.tzinfo = dt.timezone.utc
) -> JSONScalar:
    """Serialise one Python value for the payload field ``field`` (a payload path).

    ``naive_zone`` is the zone naive datetimes are read in. Raises PayloadError for values that
    have no faithful JSON scalar (see the module's rules).
    """
    # Most values are plain str/int/None: test those first, by exact type, for speed.
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value  # type: ignore[return-value]
    if isinstance(value, enum.Enum):
        return to_json_value(value.value, field, naive_zone=naive_zone)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return _number(value, field)
    if isinstance(value, Decimal):
        return _decimal(value, field)
    if isinstance(value, dt.datetime):
        try:
            return format_datetime(value, naive_zone)
        except OverflowError:
            raise PayloadError(
                field, f"{value.isoformat()} is outside the years 1-9999 in UTC"
            ) from None
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return _format_time(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (Mapping, list, tuple, set, frozenset)):
        raise PayloadError(
            field,
            f"cannot send a {kind.__name__}: a field holds one value; map each item to its own "
            "CustomField, or declare tags with Tags",
        )
    raise PayloadError(
        field,
        f"cannot serialise a {kind.__module__}.{kind.__qualname__}; convert it to a string, "
        "number, boolean, date or datetime with transform=",
    )
