"""``ContactMapping``: a declarative class saying where each contact field of a user comes from.

::

    class UserMapping(ContactMapping):
        model = User
        related = {Subscription: "user"}
        email = Field("email")
        external_id = Field("id")
        plan = CustomField("subscription.plan", default="free")
        tags = Tags(lambda u: ["beta"] if u.is_beta else [], depends_on=["is_beta"])

        def should_sync(self, user): return not user.is_staff

The class statement checks the declaration and raises :class:`MappingDeclarationError` saying how to
fix it. Instances build payloads (:meth:`ContactMapping.build`) and read identifiers
(:meth:`ContactMapping.identifiers`); see docs/mapping.md for the user guide.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from meisa_sync.contract import (
    MAX_CUSTOM_FIELDS,
    MAX_TAGS_PER_REQUEST,
    check_custom_field_name,
    check_custom_value,
    check_name,
    normalize_email,
    normalize_external_id,
    normalize_tag_name,
)
from meisa_sync.declaration import CompiledMapping, compile_mapping
from meisa_sync.exceptions import MappingDeclarationError, PayloadError
from meisa_sync.fields import CustomField, Declaration, Field, Reader, Tags
from meisa_sync.payload import check_body_size
from meisa_sync.serialization import to_json_value

__all__ = ["ContactMapping", "CustomField", "Field", "Tags"]

# Past this many characters of custom-field strings the body might near 1 MiB (JSON escapes a
# character in up to 6 bytes); below it the exact, slower size check is skipped.
_SIZE_CHECK_CHARS = 100_000


class ContactMapping:
    """Base class of declarative mappings from a user object to a Meisa contact.

    Class attributes: ``model`` (the framework's model class, for the plugins), ``related``
    (``{RelatedModel: "path.to.user"}``: saving a related row re-syncs its user), ``timezone``
    (the zone naive datetimes are read in; ``"UTC"`` by default), and the declarations: ``Field``
    for ``email``/``external_id``/``first_name``/``last_name``, any number of ``CustomField``, at
    most one ``Tags``. Pass ``abstract=True`` in the class statement for a base that other mappings
    extend and that maps no identifier itself.
    """

    model: ClassVar[Any] = None
    related: ClassVar[Mapping[Any, str]] = {}
    timezone: ClassVar[str | dt.tzinfo] = "UTC"

    _meisa_abstract: ClassVar[bool] = True
    _meisa: ClassVar[CompiledMapping] = CompiledMapping()

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._meisa = compile_mapping(cls, abstract=abstract, reserved=_RESERVED)
        cls._meisa_abstract = abstract

    def __init__(self) -> None:
        if type(self)._meisa_abstract:
            raise MappingDeclarationError(
                f"{type(self).__qualname__} is abstract; subclass it and map email or "
                "external_id, then instantiate the subclass"
            )

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {', '.join(self._meisa.declared)}>"

    @property
    def declarations(self) -> Mapping[str, Declaration]:
        """The declarations by attribute name, inherited ones included."""
        return dict(self._meisa.declared)

    @property
    def related_paths(self) -> frozenset[str]:
        """Relation prefixes of the dotted paths read (``"subscription"`` for
        ``"subscription.plan"``; ``"a"`` and ``"a.b"`` for ``"a.b.c"``), for eager loading."""
        return self._meisa.related_paths

    @property
    def local_attributes(self) -> frozenset[str] | None:
        """First path segments read on the object itself; None when a callable source without
        ``depends_on`` makes that unknowable (then every change to the object counts)."""
        return self._meisa.local_attributes

    def should_sync(self, obj: Any) -> bool:
        """Whether ``obj`` is synced at all; override to skip staff or test users."""
        return True

    def identifiers(self, obj: Any) -> dict[str, str]:
        """``email`` and/or ``external_id`` of ``obj``, normalised; reads nothing else.

        An identifier that is None or a blank string is left out. Raises PayloadError when both
        are, since such a contact cannot be addressed.
        """
        zone = self._meisa.zone
        result: dict[str, str] = {}
        for name, reader in self._meisa.identifiers:
            value = reader.json(obj, zone)
            # A blank string is how many user models say "no e-mail" (Django's default is ""):
            # it addresses nothing, like None, rather than being an invalid address.
            if value is not None and not (type(value) is str and not value.strip()):
                result[name] = _identifier(name, value)
        if not result:
            raise PayloadError(
                self._meisa.identifiers[0][0],
                "no identifier: "
                + " and ".join(name for name, _ in self._meisa.identifiers)
                + " are empty, so the contact cannot be addressed",
            )
        return result

    def build(self, obj: Any, extras: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The upsert payload for ``obj``: JSON-ready, normalised and valid per CONTRACT.md §4.

        Identifiers that are None or blank are left out (at least one is required); names may be
        None (that clears them); ``custom_fields`` holds the mapped custom fields with ``extras``
        merged over them; ``tag_names`` is present when the Tags source yields any. Every failure
        is a PayloadError naming the payload path.
        """
        payload: dict[str, Any] = self.identifiers(obj)
        zone = self._meisa.zone
        for name, reader in self._meisa.names:
            payload[name] = check_name(reader.json(obj, zone), name)
        custom: dict[str, Any] = {}
        chars = 0
        for name, reader in self._meisa.custom:
            value = check_custom_value(reader.json(obj, zone), reader.field)
            if type(value) is str:
                chars += len(value)
            custom[name] = value
        if extras:
            for key, raw in extras.items():
                name = check_custom_field_name(key)
                field = f"custom_fields.{name}"
                value = check_custom_value(to_json_value(raw, field, naive_zone=zone), field)
                if type(value) is str:
                    chars += len(value)
                custom[name] = value
            if len(custom) > MAX_CUSTOM_FIELDS:
                raise PayloadError(
                    "custom_fields",
                    f"holds {len(custom)} keys with the extras; at most {MAX_CUSTOM_FIELDS}",
                )
        if custom:
            payload["custom_fields"] = custom
        if self._meisa.tags is not None:
            tag_names = _tag_names(self._meisa.tags, obj, zone)
            if tag_names:
                payload["tag_names"] = tag_names
        if chars > _SIZE_CHECK_CHARS:
            check_body_size(payload)
        return payload


_RESERVED = frozenset(name for name in vars(ContactMapping) if not name.startswith("_"))


def _identifier(name: str, value: object) -> str:
    if name == "email":
        return normalize_email(value)
    return normalize_external_id(value)


def _tag_names(reader: Reader, obj: Any, zone: dt.tzinfo) -> list[str]:
    value = reader.raw(obj)
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise PayloadError(
            "tag_names",
            f"the Tags source must give a list of tag names, not {type(value).__name__}"
            + ("; wrap a single tag in a list" if isinstance(value, str) else ""),
        )
    by_folded: dict[str, str] = {}
    try:
        for index, item in enumerate(value):
            field = f"tag_names[{index}]"
            tag = normalize_tag_name(to_json_value(item, field, naive_zone=zone), field)
            by_folded.setdefault(tag.casefold(), tag)
    except PayloadError:
        raise
    except Exception as exc:
        raise PayloadError(
            "tag_names", f"iterating the Tags source failed: {type(exc).__name__}: {exc}"
        ) from exc
    if len(by_folded) > MAX_TAGS_PER_REQUEST:
        raise PayloadError(
            "tag_names", f"holds {len(by_folded)} tags; at most {MAX_TAGS_PER_REQUEST} per request"
        )
    return [by_folded[folded] for folded in sorted(by_folded)]
