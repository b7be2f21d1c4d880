"""What the capture watches: the mapped models, their related models, and how to tell a real change.

Compiled once, at registration, from the mappings: which attributes of a mapped object count as a
change (``mapping.local_attributes``), and the relationship chain from a related object back to the
user it belongs to (``mapping.related``). The flush listeners then only read attribute state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect
from sqlalchemy.orm import InstanceState, Mapper, RelationshipProperty
from sqlalchemy.orm.interfaces import MANYTOONE

from meisa_sync.exceptions import ConfigurationError
from meisa_sync.records import ObjectKey
from meisa_sync_sqlalchemy.exceptions import UnsupportedPrimaryKeyError

if TYPE_CHECKING:
    from meisa_sync.mapping import ContactMapping

__all__ = ["RelatedPath", "WatchedModel", "model_label"]


def model_label(model: type[Any]) -> str:
    """The label records carry for ``model``: its table name (``users``)."""
    mapper = _mapper(model)
    return str(mapper.local_table.name)  # type: ignore[attr-defined]


def _mapper(model: type[Any]) -> Mapper[Any]:
    mapper = inspect(model, raiseerr=False)
    if not isinstance(mapper, Mapper):
        raise ConfigurationError(
            f"{model!r} is not a mapped SQLAlchemy class; a mapping's model must be a declarative "
            "class (a subclass of your DeclarativeBase)"
        )
    return mapper


@dataclass(frozen=True)
class WatchedModel:
    """A mapped class whose rows are contacts."""

    model: type[Any]
    mapper: Mapper[Any]
    label: str
    mapping: ContactMapping
    pk_attribute: str
    # Attribute keys whose change counts; None: any column or relationship change counts.
    watched: frozenset[str] | None

    @classmethod
    def compile(cls, mapping: ContactMapping) -> WatchedModel:
        model = getattr(type(mapping), "model", None)
        if model is None:
            raise ConfigurationError(
                f"{type(mapping).__name__} has no model; set `model = YourUserClass` on the mapping"
            )
        mapper = _mapper(model)
        if len(mapper.primary_key) != 1:
            raise UnsupportedPrimaryKeyError(
                f"{model.__name__} has a composite primary key; meisa-sync needs a single-column "
                "primary key on the mapped user model"
            )
        pk_attribute = mapper.get_property_by_column(mapper.primary_key[0]).key
        local = mapping.local_attributes
        # A name that is no mapper attribute (a Python property, say) reads columns we cannot name.
        known = set(mapper.attrs.keys())
        watched = frozenset(local) if local is not None and set(local) <= known else None
        return cls(model, mapper, model_label(model), mapping, pk_attribute, watched)

    def key(self, obj: object) -> ObjectKey | None:
        """The object's key, or None while it has no primary key."""
        state: InstanceState[Any] = inspect(obj)
        value = state.dict.get(self.pk_attribute)
        if value is None:
            value = getattr(obj, self.pk_attribute, None)
        return None if value is None else ObjectKey(self.label, str(value))

    def key_for_pk(self, pk: object) -> ObjectKey:
        return ObjectKey(self.label, str(pk))

    def changed(self, state: InstanceState[Any]) -> bool:
        """Whether a flushed persistent object changed an attribute the mapping reads."""
        # Every attribute set since the load has its original in committed_state: check those.
        touched = state.committed_state.keys()
        names = touched if self.watched is None else touched & self.watched
        return any_changed(state, names)


def any_changed(state: InstanceState[Any], names: Iterable[str] | None = None) -> bool:
    """Whether any of ``names`` (every attribute set since the load when None) really changed."""
    attrs = state.attrs
    keys = state.committed_state.keys() if names is None else names
    return any(attrs[name].history.has_changes() for name in keys)


@dataclass(frozen=True)
class _Hop:
    prop: RelationshipProperty[Any]
    # For a many-to-one hop onto the user's primary key: the local attribute holding that key, so
    # the user's pk is read from the row itself, without loading the user (works for deletes too).
    fk_attribute: str | None


@dataclass(frozen=True)
class RelatedPath:
    """How a related model (``Subscription``) leads to its user: ``"user"``, ``"account.owner"``."""

    model: type[Any]
    path: str
    target: WatchedModel
    hops: tuple[_Hop, ...]

    @classmethod
    def compile(cls, model: type[Any], path: str, target: WatchedModel) -> RelatedPath:
        mapper = _mapper(model)
        hops: list[_Hop] = []
        current = mapper
        segments = path.split(".") if isinstance(path, str) and path else []
        if not segments:
            raise ConfigurationError(
                f"{type(target.mapping).__name__}.related[{model.__name__}] must be a dotted "
                "relationship path such as 'user'"
            )
        for index, segment in enumerate(segments):
            prop = current.relationships.get(segment)
            if prop is None:
                raise ConfigurationError(
                    f"{type(target.mapping).__name__}.related[{model.__name__}] = {path!r}: "
                    f"{current.class_.__name__} has no relationship {segment!r}"
                )
            last = index == len(segments) - 1
            hops.append(_Hop(prop, _fk_attribute(prop, target) if last else None))
            current = prop.mapper
        if not current.isa(target.mapper):
            raise ConfigurationError(
                f"{type(target.mapping).__name__}.related[{model.__name__}] = {path!r} leads to "
                f"{current.class_.__name__}, not to {target.model.__name__}"
            )
        return cls(model, path, target, tuple(hops))

    def keys(self, obj: object) -> set[ObjectKey]:
        """The users ``obj`` belongs to now, and those it belonged to before this flush."""
        objects: list[object] = [obj]
        for hop in self.hops[:-1]:
            objects = [child for parent in objects for child in _follow(parent, hop.prop)]
        last = self.hops[-1]
        keys: set[ObjectKey] = set()
        for parent in objects:
            state: InstanceState[Any] = inspect(parent)
            if last.fk_attribute is not None:
                history = state.attrs[last.fk_attribute].history
                for value in (*history.sum(), state.dict.get(last.fk_attribute)):
                    if value is not None:
                        keys.add(self.target.key_for_pk(value))
            # The relationship's own history covers a user assigned but not yet synced to the FK.
            history = state.attrs[last.prop.key].history
            for user in (*history.added, *history.deleted, *history.unchanged):
                key = self.target.key(user) if user is not None else None
                if key is not None:
                    keys.add(key)
            if last.fk_attribute is None and not keys:
                for user in _follow(parent, last.prop):
                    key = self.target.key(user)
                    if key is not None:
                        keys.add(key)
        return keys


def _fk_attribute(prop: RelationshipProperty[Any], target: WatchedModel) -> str | None:
    if prop.direction is not MANYTOONE or len(prop.local_remote_pairs) != 1:
        return None
    local, remote = prop.local_remote_pairs[0]
    if remote is not target.mapper.primary_key[0]:
        return None
    try:
        return prop.parent.get_property_by_column(local).key
    except Exception:
        return None


def _follow(obj: object, prop: RelationshipProperty[Any]) -> Iterator[object]:
    value = getattr(obj, prop.key)
    if value is None:
        return
    if prop.uselist:
        yield from value
    else:
        yield value


def iter_mapped(objects: Iterable[object], model: type[Any]) -> Iterator[object]:
    """The objects that are instances of ``model`` (subclasses included)."""
    return (obj for obj in objects if isinstance(obj, model))
