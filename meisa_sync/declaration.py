"""Checking a ``ContactMapping`` declaration when its class is defined, and compiling it.

The checks raise :class:`~meisa_sync.exceptions.MappingDeclarationError` with a message saying how
to fix the declaration; the result, :class:`CompiledMapping`, is what ``build`` runs per object:
readers in tuples, the time zone resolved, the paths to eager-load precomputed.
"""

from __future__ import annotations

import datetime as dt
import difflib
import zoneinfo
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from meisa_sync.contract import CONTACT_FIELDS, MAX_CUSTOM_FIELDS, is_valid_custom_field_name
from meisa_sync.exceptions import MappingDeclarationError
from meisa_sync.fields import CustomField, Declaration, Field, Reader, Tags, is_dotted_path

__all__ = ["CompiledMapping", "compile_mapping"]


@dataclass(frozen=True)
class CompiledMapping:
    """A checked declaration, ready for building payloads.

    ``identifiers``, ``names`` and ``custom`` pair each payload key with its reader.
    """

    declared: Mapping[str, Declaration] = field(default_factory=dict)
    zone: dt.tzinfo = dt.timezone.utc
    identifiers: tuple[tuple[str, Reader], ...] = ()
    names: tuple[tuple[str, Reader], ...] = ()
    custom: tuple[tuple[str, Reader], ...] = ()
    tags: Reader | None = None
    related_paths: frozenset[str] = frozenset()
    local_attributes: frozenset[str] | None = frozenset()


def compile_mapping(cls: type, *, abstract: bool, reserved: Collection[str]) -> CompiledMapping:
    """Check the declaration of mapping class ``cls`` and compile it for building payloads.

    ``reserved`` are the names of ContactMapping's own API, which declarations may not shadow.
    Raises MappingDeclarationError saying how to fix the first problem found.
    """
    where = cls.__qualname__
    declared = _collect(cls)
    identifiers: list[tuple[str, Reader]] = []
    names: list[tuple[str, Reader]] = []
    custom: list[tuple[str, Reader]] = []
    custom_attribute: dict[str, str] = {}
    tags: list[tuple[str, Reader]] = []
    for attribute, declaration in declared.items():
        declaration.check(f"{where}.{attribute}")
        if attribute in reserved:
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
    _check_related(getattr(cls, "related", {}), where)
    zone = _resolve_zone(getattr(cls, "timezone", "UTC"), where)
    if not abstract and not identifiers:
        base = cls.__bases__[0].__name__
        raise MappingDeclarationError(
            f"{where} maps no identifier: declare email = Field(...) or external_id = "
            "Field(...) (or both), e.g. external_id = Field('id'); for a base class meant to "
            f"be extended, write class {cls.__name__}({base}, abstract=True)"
        )
    return CompiledMapping(
        declared=declared,
        zone=zone,
        identifiers=tuple(identifiers),
        names=tuple(names),
        custom=tuple(custom),
        tags=tags[0][1] if tags else None,
        related_paths=_relation_prefixes(declared.values()),
        local_attributes=_local_attributes(declared.values()),
    )


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
