"""``SessionSource``: the worker loads the current mapped objects through ORM sessions.

One ``SELECT`` per model per batch, plus one per relationship the mapping reads (``selectinload``
chains for dotted paths such as ``"account.owner"``), in a fresh session: a new transaction, so
only committed state is seen. The session is closed before ``load`` returns; the objects stay
usable, detached, with everything the mapping reads already loaded. A callable source that reads a
relationship must name it in ``depends_on`` (that is how ``mapping.related_paths`` knows to load
it): a lazy load on a detached object fails.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, inspect, select
from sqlalchemy.orm import Mapper, Session, selectinload
from sqlalchemy.orm.strategy_options import _AbstractLoad

from meisa_sync_sqlalchemy.exceptions import UnknownModelError, UnsupportedPrimaryKeyError

if TYPE_CHECKING:
    from meisa_sync.mapping import ContactMapping

__all__ = ["SessionSource", "eager_loads"]

_log = logging.getLogger(__name__)


class SessionSource:
    """An ``ObjectSource`` over mapped classes, by model label (``{"users": User}``).

    ``session_factory`` makes a new ``Session`` per call (a ``sessionmaker``, or any callable).
    """

    def __init__(
        self, session_factory: Callable[[], Session], models: Mapping[str, type[Any]]
    ) -> None:
        self._session_factory = session_factory
        self._models = dict(models)
        self._primary_keys = {label: _primary_key(cls) for label, cls in self._models.items()}

    def load(self, model: str, pks: Sequence[str], mapping: ContactMapping) -> dict[str, object]:
        """``{pk: object}`` for the objects of ``model`` that exist, related paths loaded."""
        cls = self._model(model)
        column = self._primary_keys[model]
        wanted = _pk_values(column, pks, model)
        if not wanted:
            return {}
        attribute = getattr(cls, inspect(cls).get_property_by_column(column).key)
        query = (
            select(cls)
            .where(attribute.in_(list(wanted)))
            .options(*eager_loads(inspect(cls), mapping.related_paths))
        )
        with self._session_factory() as session:
            objects = session.scalars(query).unique().all()
            found: dict[str, object] = {}
            for obj in objects:
                identity = inspect(obj).identity
                if identity is not None and identity[0] in wanted:
                    found[wanted[identity[0]]] = obj
        return found

    def _model(self, label: str) -> type[Any]:
        try:
            return self._models[label]
        except KeyError:
            known = ", ".join(sorted(self._models)) or "none"
            raise UnknownModelError(
                f"no mapped class registered for model {label!r} (registered: {known})"
            ) from None


def eager_loads(mapper: Mapper[Any], paths: Iterable[str]) -> list[_AbstractLoad]:
    """``selectinload`` chains for the relationship paths among ``paths``.

    A path stops at its first segment that is not a relationship (a column, a property): there is
    nothing further to load. Prefixes of longer paths add nothing and are dropped.
    """
    options = []
    for path in _longest(paths):
        option: _AbstractLoad | None = None
        current = mapper
        for segment in path.split("."):
            relationship = current.relationships.get(segment)
            if relationship is None:
                break
            attribute = getattr(current.class_, segment)
            option = selectinload(attribute) if option is None else option.selectinload(attribute)
            current = relationship.mapper
        if option is not None:
            options.append(option)
    return options


def _longest(paths: Iterable[str]) -> list[str]:
    unique = sorted(set(paths))
    return [p for p in unique if not any(o.startswith(p + ".") for o in unique)]


def _primary_key(cls: type[Any]) -> Column[Any]:
    mapper: Mapper[Any] = inspect(cls)
    if len(mapper.primary_key) != 1:
        names = ", ".join(column.name for column in mapper.primary_key)
        raise UnsupportedPrimaryKeyError(
            f"{cls.__name__}: meisa-sync needs a single-column primary key, not ({names})"
        )
    return mapper.primary_key[0]  # type: ignore[return-value]


def _pk_values(column: Column[Any], pks: Sequence[str], model: str) -> dict[object, str]:
    """The primary key values to look up, each with the pk string it came from.

    A string that cannot be a value of the column (``"abc"`` for an integer key) names no row.
    """
    try:
        python_type: type[Any] = column.type.python_type
    except NotImplementedError:
        python_type = str
    values: dict[object, str] = {}
    for pk in pks:
        try:
            value: object = pk if python_type is str else _parse(python_type, pk)
        except (TypeError, ValueError, ArithmeticError):
            _log.warning("%s: %r is not a valid primary key value; no such object", model, pk)
            continue
        values[value] = pk
    return values


def _parse(python_type: type[Any], text: str) -> object:
    if python_type is uuid.UUID:
        return uuid.UUID(text)
    return python_type(text)
