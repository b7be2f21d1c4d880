"""The Meisa contract's constants and pure validators (CONTRACT.md §1, §2, §4, §5).

Shared by the sync side (the mapping builds payloads that pass these checks) and the reference
server (which refuses what fails them), so both sides share one definition of a valid payload.
Every check raises :class:`~meisa_sync.exceptions.PayloadError` whose ``field`` is the payload path
of the offending value (``"email"``, ``"custom_fields.mrr"``, ``"tag_names[2]"``).

Pure Python, no dependencies beyond the standard library.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from typing import Any, Final

from meisa_sync.exceptions import PayloadError

__all__ = [
    "API_KEY_RE",
    "BODY_FIELD",
    "CONTACT_FIELDS",
    "CUSTOM_FIELD_NAME_RE",
    "DEFAULT_PER_HOUR",
    "DEFAULT_PER_MINUTE",
    "IDENTIFIER_FIELDS",
    "MAX_BODY_BYTES",
    "MAX_CUSTOM_FIELDS",
    "MAX_CUSTOM_STRING_LENGTH",
    "MAX_EMAIL_LENGTH",
    "MAX_EXTERNAL_ID_LENGTH",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_TAGS_PER_REQUEST",
    "MAX_TAG_LENGTH",
    "SEQUENCE_SLUG_RE",
    "UPSERT_FIELDS",
    "check_custom_field_name",
    "check_custom_value",
    "check_name",
    "is_valid_custom_field_name",
    "normalize_email",
    "normalize_external_id",
    "normalize_identifiers",
    "normalize_tag_name",
    "normalize_tag_names",
    "validate_idempotency_key",
    "validate_upsert",
]

CUSTOM_FIELD_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
"""Custom-field keys (§4); use ``fullmatch``."""
SEQUENCE_SLUG_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
"""Sequence slugs (§5); use ``fullmatch``."""
API_KEY_RE: Final = re.compile(r"meisa_(live|test)_[A-Za-z0-9_-]{32,}")
"""API keys (§2): a mode prefix and at least 32 url-safe characters; use ``fullmatch``."""

MAX_EMAIL_LENGTH: Final = 254
MAX_EXTERNAL_ID_LENGTH: Final = 255
MAX_NAME_LENGTH: Final = 255
MAX_CUSTOM_STRING_LENGTH: Final = 10_000
MAX_CUSTOM_FIELDS: Final = 200
MAX_TAG_LENGTH: Final = 100
MAX_TAGS_PER_REQUEST: Final = 50
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255
MAX_BODY_BYTES: Final = 1024 * 1024
DEFAULT_PER_MINUTE: Final = 60
DEFAULT_PER_HOUR: Final = 1000

IDENTIFIER_FIELDS: Final = ("email", "external_id")
CONTACT_FIELDS: Final = ("email", "external_id", "first_name", "last_name")
UPSERT_FIELDS: Final = (*CONTACT_FIELDS, "custom_fields", "tag_names")
BODY_FIELD: Final = "body"
"""The ``field`` of errors about the request body as a whole (not an object, too large)."""


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return type(value).__name__


def normalize_email(value: object, field: str = "email") -> str:
    """Return the e-mail address trimmed and lower-cased, or raise :class:`PayloadError`.

    Valid per §4: at most 254 characters, exactly one ``@``, a non-empty local part and a dot in the
    domain.
    """
    if not isinstance(value, str):
        raise PayloadError(field, f"must be a string, not {_type_name(value)}")
    email = value.strip().lower()
    if not email:
        raise PayloadError(field, "must not be empty")
    if len(email) > MAX_EMAIL_LENGTH:
        raise PayloadError(field, f"is {len(email)} characters long; at most {MAX_EMAIL_LENGTH}")
    if email.count("@") != 1:
        raise PayloadError(field, f"not a valid e-mail address ({email!r} must hold exactly one @)")
    local, domain = email.split("@")
    if not local:
        raise PayloadError(field, f"not a valid e-mail address ({email!r} has nothing before @)")
    if "." not in domain:
        raise PayloadError(
            field, f"not a valid e-mail address ({email!r} has no dot in the domain)"
        )
    return email


def normalize_external_id(value: object, field: str = "external_id") -> str:
    """Return the external id as a trimmed string of 1-255 characters, or raise PayloadError.

    Integers become their decimal string; booleans are refused (``True`` is not an id).
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PayloadError(field, f"must be a string or an integer, not {_type_name(value)}")
    external_id = str(int(value)) if isinstance(value, int) else value.strip()
    if not external_id:
        raise PayloadError(field, "must not be empty")
    if len(external_id) > MAX_EXTERNAL_ID_LENGTH:
        raise PayloadError(
            field, f"is {len(external_id)} characters long; at most {MAX_EXTERNAL_ID_LENGTH}"
        )
    return external_id


def check_name(value: object, field: str) -> str | None:
    """Check a ``first_name``/``last_name`` value: a string of at most 255 characters or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(field, f"must be a string or null, not {_type_name(value)}")
    if len(value) > MAX_NAME_LENGTH:
        raise PayloadError(field, f"is {len(value)} characters long; at most {MAX_NAME_LENGTH}")
    return value


def is_valid_custom_field_name(name: object) -> bool:
    """Whether ``name`` is a valid custom-field key (``^[A-Za-z_][A-Za-z0-9_]{0,63}$``)."""
    return isinstance(name, str) and CUSTOM_FIELD_NAME_RE.fullmatch(name) is not None


def check_custom_field_name(name: object, field: str | None = None) -> str:
    """Return ``name`` if it is a valid custom-field key, else raise PayloadError."""
    if not isinstance(name, str):
        raise PayloadError(
            field or "custom_fields", f"keys must be strings, not {_type_name(name)} ({name!r})"
        )
    if CUSTOM_FIELD_NAME_RE.fullmatch(name) is None:
        raise PayloadError(
            field or f"custom_fields.{name}",
            "not a valid custom field name: use 1-64 letters, digits or underscores, "
            "not starting with a digit",
        )
    return name


def check_custom_value(value: object, field: str) -> str | int | float | bool | None:
    """Check one custom-field value: a string (≤10,000 chars), finite number, boolean or None."""
    # Fast path for the common exact types; subclasses and refusals take the long way below.
    if type(value) is str:
        if len(value) <= MAX_CUSTOM_STRING_LENGTH:
            return value
    elif value is None or type(value) is int or type(value) is bool:
        return value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PayloadError(field, f"must be a finite number, not {value!r}")
        return value
    if isinstance(value, str):
        if len(value) > MAX_CUSTOM_STRING_LENGTH:
            raise PayloadError(
                field, f"is {len(value)} characters long; at most {MAX_CUSTOM_STRING_LENGTH}"
            )
        return value
    if isinstance(value, (Mapping, list, tuple)):
        shape = "objects" if isinstance(value, Mapping) else "arrays"
        raise PayloadError(
            field, f"nested {shape} are not allowed; send each value as its own custom field"
        )
    raise PayloadError(field, f"must be a string, number, boolean or null, not {_type_name(value)}")


def normalize_tag_name(value: object, field: str) -> str:
    """Return a tag name trimmed, 1-100 characters, or raise PayloadError."""
    if not isinstance(value, str):
        raise PayloadError(field, f"must be a string, not {_type_name(value)}")
    tag = value.strip()
    if not tag:
        raise PayloadError(field, "must not be empty")
    if len(tag) > MAX_TAG_LENGTH:
        raise PayloadError(field, f"is {len(tag)} characters long; at most {MAX_TAG_LENGTH}")
    return tag


def normalize_tag_names(value: object, field: str = "tag_names") -> list[str]:
    """Check a list of at most 50 tag names; return them trimmed, in order."""
    if not isinstance(value, (list, tuple)):
        raise PayloadError(field, f"must be a list of tag names, not {_type_name(value)}")
    if len(value) > MAX_TAGS_PER_REQUEST:
        raise PayloadError(
            field, f"holds {len(value)} tags; at most {MAX_TAGS_PER_REQUEST} per request"
        )
    return [normalize_tag_name(tag, f"{field}[{index}]") for index, tag in enumerate(value)]


def validate_idempotency_key(value: object) -> str:
    """Check an ``Idempotency-Key`` header value: a non-empty string of at most 255 characters."""
    field = "Idempotency-Key"
    if not isinstance(value, str):
        raise PayloadError(field, f"must be a string, not {_type_name(value)}")
    if not value:
        raise PayloadError(field, "must not be empty")
    if len(value) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise PayloadError(
            field, f"is {len(value)} characters long; at most {MAX_IDEMPOTENCY_KEY_LENGTH}"
        )
    return value


def _require_object(payload: object) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise PayloadError(BODY_FIELD, f"must be a JSON object, not {_type_name(payload)}")
    return payload


def _identifiers(payload: Mapping[str, Any]) -> dict[str, str]:
    identifiers: dict[str, str] = {}
    if "email" in payload:
        identifiers["email"] = normalize_email(payload["email"])
    if "external_id" in payload:
        identifiers["external_id"] = normalize_external_id(payload["external_id"])
    if not identifiers:
        raise PayloadError("email", "at least one of email and external_id is required")
    return identifiers


def normalize_identifiers(payload: object) -> dict[str, str]:
    """Read ``email``/``external_id`` from a request body (tags, delete, enroll), normalised.

    Other keys are ignored; at least one identifier is required.
    """
    return _identifiers(_require_object(payload))


def _unknown_field_message(name: object) -> str:
    close = difflib.get_close_matches(str(name), UPSERT_FIELDS, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"unknown field; {hint}expected one of {', '.join(UPSERT_FIELDS)}"


def _custom_fields(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise PayloadError("custom_fields", f"must be an object, not {_type_name(value)}")
    if len(value) > MAX_CUSTOM_FIELDS:
        raise PayloadError(
            "custom_fields", f"holds {len(value)} keys; at most {MAX_CUSTOM_FIELDS} per contact"
        )
    checked: dict[str, Any] = {}
    for name, item in value.items():
        key = check_custom_field_name(name)
        checked[key] = check_custom_value(item, f"custom_fields.{key}")
    return checked


def validate_upsert(payload: object) -> dict[str, Any]:
    """Check a whole ``POST /contacts/upsert/`` body per CONTRACT.md §4; return it normalised.

    Normalised means: e-mail trimmed and lower-cased, ``external_id`` a trimmed string, tag names
    trimmed. Fields absent from ``payload`` stay absent. A ``null`` identifier is refused (omit the
    field instead); a ``null`` name clears it. The first problem found raises
    :class:`PayloadError` naming its payload path.
    """
    body = _require_object(payload)
    for name in body:
        if name not in UPSERT_FIELDS:
            raise PayloadError(str(name), _unknown_field_message(name))
    result: dict[str, Any] = dict(_identifiers(body))
    for name in ("first_name", "last_name"):
        if name in body:
            result[name] = check_name(body[name], name)
    if "custom_fields" in body:
        result["custom_fields"] = _custom_fields(body["custom_fields"])
    if "tag_names" in body:
        result["tag_names"] = normalize_tag_names(body["tag_names"])
    # Keep the caller's key order: canonical JSON sorts anyway, and error messages read naturally.
    return {name: result[name] for name in body}
