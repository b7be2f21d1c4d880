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
import difflib
import zoneinfo
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from meisa_sync.contract import (
    CONTACT_FIELDS,
    MAX_CUSTOM_FIELDS,
    MAX_TAGS_PER_REQUEST,
    check_custom_field_name,
    check_custom_value,
    check_name,
    is_valid_custom_field_name,
    normalize_email,
    normalize_external_id,
    normalize_tag_name,
)
from meisa_sync.exceptions import MappingDeclarationError, PayloadError
from meisa_sync.fields import CustomField, Declaration, Field, Reader, Tags, is_dotted_path
from meisa_sync.payload import check_body_size
from meisa_sync.serialization import to_json_value

__all__ = ["ContactMapping", "CustomField", "Field", "Tags"]

# Past this many characters of custom-field strings the body might near 1 MiB (JSON escapes a
# character in up to 6 bytes); below it the exact, slower size check is skipped.
_SIZE_CHECK_CHARS = 100_000


def _resolve_zone(value: object, where: str) -> dt.tzinfo:
    if isinstance(value, dt.tzinfo):
        return value
    if isinstance(value, str):
        try:
            return zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise MappingDeclarationError(
                f"{where}.timezone: unknown time zone {value!r}; use an IANA name such as "
                "'UTC' or 'Europe/Paris', or a tzinfo"
            ) from None
    raise MappingDeclarationError(
        f"{where}.timezone must be an IANA zone name or a tzinfo, not {type(value).__name__}"
    )


def _check_related(related: object, where: str) -> None:
    if not isinstance(related, Mapping):
        raise MappingDeclarationError(
            f"{where}.related must be a dict of related model -> dotted path from it to the mapped "
            f'object, e.g. related = {{Subscription: "user"}}; got {type(related).__name__}'
        )
    for model, path in related.items():
        if not isinstance(model, (type, str)):
            raise MappingDeclarationError(
                f"{where}.related: key {model!r} is not a model class; write "
                f'related = {{Subscription: "user"}}'
            )
        if not is_dotted_path(path):
            raise MappingDeclarationError(
                f"{where}.related[{getattr(model, '__name__', model)}]: {path!r} is not a dotted "
                "path from the related model to the mapped object, e.g. 'user' or 'account.owner'"
            )


def _collect(cls: type) -> dict[str, Declaration]:
    declared: dict[str, Declaration] = {}
    for klass in reversed(cls.__mro__):
        for attribute, value in vars(klass).items():
            if isinstance(value, type) and issubclass(value, Declaration):
                raise MappingDeclarationError(
                    f"{klass.__name__}.{attribute} = {value.__name__}: instantiate it with its "
                    f"source, e.g. {attribute} = {value.__name__}({attribute!r})"
                )
            if isinstance(value, Declaration):
                declared[attribute] = value
            elif attribute in declared:
                # A subclass may replace an inherited declaration by a plain value to drop it.
                del declared[attribute]
    return declared


def _contact_field_error(where: str, attribute: str) -> MappingDeclarationError:
    close = difflib.get_close_matches(attribute, CONTACT_FIELDS, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return MappingDeclarationError(
        f"{where}: {attribute!r} is not a contact field; Field maps only "
        f"{', '.join(CONTACT_FIELDS)}; {hint}custom fields are declared with CustomField(...)"
    )


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
    _meisa_declared: ClassVar[Mapping[str, Declaration]] = {}
    _meisa_zone: ClassVar[dt.tzinfo] = dt.timezone.utc
    _meisa_identifiers: ClassVar[tuple[tuple[str, Reader], ...]] = ()
    _meisa_names: ClassVar[tuple[tuple[str, Reader], ...]] = ()
    _meisa_custom: ClassVar[tuple[tuple[str, Reader], ...]] = ()
    _meisa_tags: ClassVar[Reader | None] = None
    _meisa_related_paths: ClassVar[frozenset[str]] = frozenset()
    _meisa_local_attributes: ClassVar[frozenset[str] | None] = frozenset()

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        where = cls.__qualname__
        declared = _collect(cls)
        identifiers: list[tuple[str, Reader]] = []
        names: list[tuple[str, Reader]] = []
        custom: list[tuple[str, Reader]] = []
        custom_attribute: dict[str, str] = {}
        tags: list[tuple[str, Reader]] = []
        for attribute, declaration in declared.items():
            declaration.check(f"{where}.{attribute}")
            if attribute in _RESERVED:
                raise MappingDeclarationError(
                    f"{where}.{attribute}: {attribute!r} is a ContactMapping attribute; use "
                    f"another attribute name and name={attribute!r} for a custom field"
                )
            if isinstance(declaration, CustomField):
                name = declaration.name if declaration.name is not None else attribute
                _check_custom_name(where, attribute, name, custom_attribute)
                custom_attribute[name] = attribute
                custom.append((name, declaration.reader(f"custom_fields.{name}")))
            elif isinstance(declaration, Tags):
                tags.append((attribute, declaration.reader("tag_names")))
            elif isinstance(declaration, Field):
                if attribute not in CONTACT_FIELDS:
                    raise _contact_field_error(f"{where}.{attribute}", attribute)
                group = identifiers if attribute in ("email", "external_id") else names
                group.append((attribute, declaration.reader(attribute)))
            else:
                raise MappingDeclarationError(
                    f"{where}.{attribute}: declare fields with Field, CustomField or Tags, "
                    f"not {type(declaration).__name__}"
                )
        if len(tags) > 1:
            raise MappingDeclarationError(
                f"{where}: Tags is declared {len(tags)} times ({', '.join(a for a, _ in tags)}); "
                "declare one Tags whose source returns every tag name (to replace an inherited "
                "one, assign to the same attribute name)"
            )
        if len(custom) > MAX_CUSTOM_FIELDS:
            raise MappingDeclarationError(
                f"{where}: {len(custom)} custom fields declared; Meisa keeps at most "
                f"{MAX_CUSTOM_FIELDS} per contact"
            )
        _check_related(cls.related, where)
        zone = _resolve_zone(cls.timezone, where)
        if not abstract and not identifiers:
            raise MappingDeclarationError(
                f"{where} maps no identifier: declare email = Field(...) or external_id = "
                "Field(...) (or both), e.g. external_id = Field('id'); for a base class meant to "
                f"be extended, write class {cls.__name__}(ContactMapping, abstract=True)"
            )
        cls._meisa_abstract = abstract
        cls._meisa_declared = declared
        cls._meisa_zone = zone
        cls._meisa_identifiers = tuple(identifiers)
        cls._meisa_names = tuple(names)
        cls._meisa_custom = tuple(custom)
        cls._meisa_tags = tags[0][1] if tags else None
        cls._meisa_related_paths = _relation_prefixes(declared.values())
        cls._meisa_local_attributes = _local_attributes(declared.values())

    def __init__(self) -> None:
        if type(self)._meisa_abstract:
            raise MappingDeclarationError(
                f"{type(self).__qualname__} is abstract; subclass it and map email or "
                "external_id, then instantiate the subclass"
            )

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {', '.join(self._meisa_declared)}>"

    @property
    def declarations(self) -> Mapping[str, Declaration]:
        """The declarations by attribute name, inherited ones included."""
        return dict(self._meisa_declared)

    @property
    def related_paths(self) -> frozenset[str]:
        """Relation prefixes of the dotted paths read (``"subscription"`` for
        ``"subscription.plan"``; ``"a"`` and ``"a.b"`` for ``"a.b.c"``), for eager loading."""
        return self._meisa_related_paths

    @property
    def local_attributes(self) -> frozenset[str] | None:
        """First path segments read on the object itself; None when a callable source without
        ``depends_on`` makes that unknowable (then every change to the object counts)."""
        return self._meisa_local_attributes

    def should_sync(self, obj: Any) -> bool:
        """Whether ``obj`` is synced at all; override to skip staff or test users."""
        return True

    def identifiers(self, obj: Any) -> dict[str, str]:
        """``email`` and/or ``external_id`` of ``obj``, normalised; reads nothing else.

        An identifier that is None or a blank string is left out. Raises PayloadError when both
        are, since such a contact cannot be addressed.
        """
        zone = self._meisa_zone
        result: dict[str, str] = {}
        for name, reader in self._meisa_identifiers:
            value = reader.json(obj, zone)
            # A blank string is how many user models say "no e-mail" (Django's default is ""):
            # it addresses nothing, like None, rather than being an invalid address.
            if value is not None and not (type(value) is str and not value.strip()):
                result[name] = _identifier(name, value)
        if not result:
            raise PayloadError(
                self._meisa_identifiers[0][0],
                "no identifier: "
                + " and ".join(name for name, _ in self._meisa_identifiers)
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
        zone = self._meisa_zone
        for name, reader in self._meisa_names:
            payload[name] = check_name(reader.json(obj, zone), name)
        custom: dict[str, Any] = {}
        chars = 0
        for name, reader in self._meisa_custom:
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
        if self._meisa_tags is not None:
            tag_names = _tag_names(self._meisa_tags, obj, zone)
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


def _check_custom_name(where: str, attribute: str, name: str, seen: Mapping[str, str]) -> None:
    if not is_valid_custom_field_name(name):
        via = "name=" if name != attribute else "the attribute name"
        raise MappingDeclarationError(
            f"{where}.{attribute}: {name!r} ({via}) is not a valid custom field name: use 1-64 "
            "letters, digits or underscores, not starting with a digit (CONTRACT.md §4); pass "
            "name='...' to choose another"
        )
    if name in CONTACT_FIELDS:
        raise MappingDeclarationError(
            f"{where}.{attribute}: {name!r} is a contact field, not a custom field; declare it "
            f"with {name} = Field(...), or give the custom field another name with name="
        )
    if name in seen:
        raise MappingDeclarationError(
            f"{where}.{attribute}: custom field {name!r} is already mapped by {seen[name]}; "
            "give one of them another name with name="
        )


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


def _relation_prefixes(declarations: Iterable[Declaration]) -> frozenset[str]:
    prefixes: set[str] = set()
    for declaration in declarations:
        for path in declaration.paths:
            parts = path.split(".")
            prefixes.update(".".join(parts[:end]) for end in range(1, len(parts)))
    return frozenset(prefixes)


def _local_attributes(declarations: Iterable[Declaration]) -> frozenset[str] | None:
    attributes: set[str] = set()
    for declaration in declarations:
        if not declaration.knows_its_reads:
            return None
        attributes.update(path.split(".", 1)[0] for path in declaration.paths)
    return frozenset(attributes)
