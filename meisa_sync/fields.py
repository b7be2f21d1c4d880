"""The descriptors a :class:`~meisa_sync.mapping.ContactMapping` is declared with.

``Field`` maps a contact field (``email``, ``external_id``, ``first_name``, ``last_name``),
``CustomField`` a custom field, ``Tags`` the tag names. Each takes a *source*: a dotted attribute
path read on the object (``"subscription.plan"``, None-safe across relations) or a callable taking
the object. The declaration is checked by the mapping class when it is defined; :class:`Reader`
is the compiled, per-object fast path the mapping's ``build`` runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeAlias

from meisa_sync.exceptions import MappingDeclarationError, PayloadError
from meisa_sync.serialization import JSONScalar, to_json_value

__all__ = ["CustomField", "Declaration", "Field", "Reader", "Source", "Tags", "is_dotted_path"]

Source: TypeAlias = "str | Callable[[Any], Any]"
"""A dotted attribute path, or a callable taking the object."""


def is_dotted_path(value: object) -> bool:
    """Whether ``value`` is a non-empty dotted path of identifiers (``"subscription.plan"``)."""
    return (
        isinstance(value, str)
        and bool(value)
        and all(part.isidentifier() for part in value.split("."))
    )


def _describe(source: Source) -> str:
    if isinstance(source, str):
        return f"source {source!r}"
    name = getattr(source, "__qualname__", None) or repr(source)
    return f"source {name}"


class Declaration:
    """What ``Field``, ``CustomField`` and ``Tags`` share: a source, a default, a transform.

    ``default`` replaces a source value that is None (or a path that crosses a None); a callable
    default is called with no arguments each time. ``transform`` is applied to the source's
    non-None value, never to the default. ``depends_on`` names the attributes (dotted paths allowed)
    a callable source reads, so the plugins know which changes matter and what to eager-load.
    """

    kind: ClassVar[str] = "Declaration"

    def __init__(
        self,
        source: Source,
        *,
        default: Any = None,
        transform: Callable[[Any], Any] | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> None:
        self.source = source
        self.default = default
        self.transform = transform
        self.depends_on: tuple[str, ...] | None = (
            tuple(depends_on)
            if isinstance(depends_on, Iterable) and not isinstance(depends_on, str)
            else None
        )
        self._depends_on_raw = depends_on
        self.attribute: str | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.attribute = name

    def __repr__(self) -> str:
        source = self.source
        shown = repr(source) if isinstance(source, str) else getattr(source, "__qualname__", source)
        return f"{self.kind}({shown})"

    @property
    def paths(self) -> tuple[str, ...]:
        """The dotted paths this declaration reads: its path source, or its ``depends_on``."""
        if isinstance(self.source, str):
            return (self.source,)
        return self.depends_on or ()

    @property
    def knows_its_reads(self) -> bool:
        """False for a callable source without ``depends_on``: what it reads is unknowable."""
        return isinstance(self.source, str) or self.depends_on is not None

    def check(self, where: str) -> None:
        """Raise MappingDeclarationError if the declaration is malformed; ``where`` names it."""
        source = self.source
        if isinstance(source, str):
            if not is_dotted_path(source):
                raise MappingDeclarationError(
                    f"{where}: source {source!r} is not a dotted attribute path; write attribute "
                    "names joined by dots, e.g. 'subscription.plan', or pass a callable"
                )
            if self._depends_on_raw is not None:
                raise MappingDeclarationError(
                    f"{where}: depends_on is only for callable sources; the path {source!r} "
                    "already says what it reads, so remove depends_on"
                )
        elif not callable(source):
            raise MappingDeclarationError(
                f"{where}: the source must be a dotted attribute path such as 'subscription.plan' "
                f"or a callable taking the object, not {type(source).__name__} ({source!r})"
            )
        if self.transform is not None and not callable(self.transform):
            raise MappingDeclarationError(
                f"{where}: transform must be a callable taking the value, "
                f"not {type(self.transform).__name__}"
            )
        raw = self._depends_on_raw
        if raw is not None and not isinstance(source, str):
            if isinstance(raw, str) or not isinstance(raw, Iterable):
                example = repr(raw) if isinstance(raw, str) else "'first_name'"
                raise MappingDeclarationError(
                    f"{where}: depends_on must be a list of attribute names, e.g. "
                    f"depends_on=[{example}], not {type(raw).__name__}"
                )
            bad = [path for path in self.depends_on or () if not is_dotted_path(path)]
            if bad:
                raise MappingDeclarationError(
                    f"{where}: depends_on holds {bad[0]!r}, which is not an attribute name or "
                    "dotted path such as 'subscription.plan'"
                )

    def reader(self, field: str) -> Reader:
        """The compiled reader for this declaration; ``field`` is its payload path."""
        return Reader(self, field)


class Field(Declaration):
    """A contact field: the attribute name says which (``email``, ``external_id``, ``first_name``,
    ``last_name``); the argument says where its value comes from.

    >>> email = Field("email")
    >>> external_id = Field("id")
    """

    kind = "Field"


class CustomField(Declaration):
    """A custom field, named after the attribute or by ``name=``.

    >>> plan = CustomField("subscription.plan", default="free")
    >>> full = CustomField(lambda u: u.get_full_name(), name="full_name", depends_on=["first_name"])
    """

    kind = "CustomField"

    def __init__(
        self,
        source: Source,
        *,
        name: str | None = None,
        default: Any = None,
        transform: Callable[[Any], Any] | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> None:
        super().__init__(source, default=default, transform=transform, depends_on=depends_on)
        self.name = name


class Tags(Declaration):
    """The contact's tag names: the source gives an iterable of strings (or None for none).

    Tags are only ever added (CONTRACT.md §4); names are trimmed, de-duplicated case-insensitively
    (first spelling kept) and sorted, so the payload does not depend on the source's order.

    >>> tags = Tags(lambda u: ["beta"] if u.is_beta else [], depends_on=["is_beta"])
    """

    kind = "Tags"

    def __init__(
        self,
        source: Source,
        *,
        default: Any = (),
        transform: Callable[[Any], Any] | None = None,
        depends_on: Iterable[str] | None = None,
    ) -> None:
        super().__init__(source, default=default, transform=transform, depends_on=depends_on)


def _path_getter(path: tuple[str, ...]) -> Callable[[Any], Any]:
    if len(path) == 1:
        (only,) = path

        def read_attribute(obj: Any) -> Any:
            try:
                return getattr(obj, only)
            except AttributeError:
                if hasattr(type(obj), only):
                    return None
                raise

        return read_attribute

    def read(obj: Any) -> Any:
        value = obj
        for name in path:
            if value is None:
                return None
            try:
                value = getattr(value, name)
            except AttributeError:
                # The class declares the attribute but reading it failed: a relation with no row
                # behind it (Django's reverse one-to-one raises RelatedObjectDoesNotExist, an
                # AttributeError). That is a missing value, unlike a typo'd name.
                if hasattr(type(value), name):
                    return None
                raise
        return value

    return read


class Reader:
    """Reads one declaration's value off an object: source, then default or transform, then JSON.

    Every failure is a PayloadError naming ``field`` (the payload path) and the source.
    """

    __slots__ = ("_default", "_describe", "_factory", "_read", "_transform", "field")

    def __init__(self, declaration: Declaration, field: str) -> None:
        source = declaration.source
        self.field = field
        self._describe = _describe(source)
        self._read: Callable[[Any], Any] = (
            _path_getter(tuple(source.split("."))) if isinstance(source, str) else source
        )
        default = declaration.default
        self._factory: Callable[[], Any] | None = default if callable(default) else None
        self._default = None if callable(default) else default
        self._transform = declaration.transform

    def raw(self, obj: Any) -> Any:
        """The Python value before serialisation (default and transform applied)."""
        try:
            value = self._read(obj)
        except Exception as exc:
            raise PayloadError(
                self.field, f"{self._describe} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if value is None:
            if self._factory is None:
                return self._default
            try:
                return self._factory()
            except Exception as exc:
                raise PayloadError(
                    self.field,
                    f"the default of {self._describe} failed: {type(exc).__name__}: {exc}",
                ) from exc
        if self._transform is not None:
            try:
                return self._transform(value)
            except Exception as exc:
                raise PayloadError(
                    self.field,
                    f"the transform of {self._describe} failed: {type(exc).__name__}: {exc}",
                ) from exc
        return value

    def json(self, obj: Any, zone: dt.tzinfo) -> JSONScalar:
        """The value serialised to a JSON scalar."""
        return to_json_value(self.raw(obj), self.field, naive_zone=zone)
