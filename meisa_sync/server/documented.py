"""Field types for the request bodies the OpenAPI document describes (CONTRACT.md §4).

The routes validate bodies with the contract's own functions (``meisa_sync.contract``); these types
only describe what those functions accept, so that a client generated from the document, or a
fuzzer, sends what the server takes. Where the contract trims or lower-cases before it measures
(e-mail addresses, tag names, external ids), JSON Schema cannot say it exactly, so the schema is
the stricter side: every body it admits is one the server accepts, while a few the server would
also accept (an address padded past 254 characters with spaces) fall outside it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from meisa_sync.contract import (
    MAX_CUSTOM_FIELDS,
    MAX_CUSTOM_STRING_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_EXTERNAL_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS_PER_REQUEST,
)

__all__ = [
    "CustomFields",
    "Email",
    "ExternalId",
    "Name",
    "TagName",
    "TagNames",
    "identified",
    "optional",
]


def optional(**schema: Any) -> Any:
    """``Field`` of an optional body member: absent by default, with no default documented;
    ``schema`` adds keywords to the member's JSON Schema."""

    def edit(generated: dict[str, Any]) -> None:
        # An absent member is not the same as null here (null clears a name, and is refused for
        # an e-mail): the document must not claim a null default.
        generated.pop("default", None)
        generated.update(schema)

    return Field(default=None, json_schema_extra=edit)


# One @, something before it that is not only blanks, a dot after it. (U+0130 is left out: it is
# the one character that grows when lower-cased, which could push an address past 254.)
_EMAIL_PATTERN = r"^\s*[^@\s\u0130][^@\u0130]*@[^@\u0130]*\.[^@\u0130]*$"
_NOT_BLANK = r"\S"

Email = Annotated[str, Field(max_length=MAX_EMAIL_LENGTH, pattern=_EMAIL_PATTERN)]
# The server also takes an integer (it becomes its decimal string), but JSON Schema would let
# 149.0 pass as one, which is a float to the server: documented as the string it becomes.
ExternalId = Annotated[
    str,
    Field(
        max_length=MAX_EXTERNAL_ID_LENGTH,
        pattern=_NOT_BLANK,
        description="Your user id; an integer is accepted too and becomes its decimal string.",
    ),
]
Name = Annotated[str, Field(max_length=MAX_NAME_LENGTH)] | None
TagName = Annotated[str, Field(max_length=MAX_TAG_LENGTH, pattern=_NOT_BLANK)]
TagNames = Annotated[list[TagName], Field(max_length=MAX_TAGS_PER_REQUEST)]
CustomFieldName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
CustomValue = Annotated[str, Field(max_length=MAX_CUSTOM_STRING_LENGTH)] | int | float | bool | None
# Use with ``optional(additionalProperties=False)``: a key outside the pattern is refused.
CustomFields = Annotated[dict[CustomFieldName, CustomValue], Field(max_length=MAX_CUSTOM_FIELDS)]


def identified(*, extra: Literal["forbid", "allow"]) -> ConfigDict:
    """Model config for a body naming a contact: ``email``, ``external_id``, or both."""
    return ConfigDict(
        extra=extra,
        json_schema_extra={"anyOf": [{"required": ["email"]}, {"required": ["external_id"]}]},
    )
