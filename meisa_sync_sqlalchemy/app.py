"""``SQLAlchemySync``: register your mappings once; it captures changes and serves the worker.

::

    sync = SQLAlchemySync(engine, [UserMapping()])        # or a sessionmaker, scoped_session,
                                                          # async_sessionmaker or AsyncEngine
    sync.create_tables()                                  # or let Alembic autogenerate see them

``meisa-sync drain --app myapp.sync:sync`` finds ``sync.sync_app``; ``meisa-sync backfill --app
myapp.sync:sync`` uses :meth:`SQLAlchemySync.backfill`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, MetaData, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from meisa_sync.app import SyncApp
from meisa_sync.exceptions import ConfigurationError
from meisa_sync_sqlalchemy.backfill import Backfill, BackfillProgress, BackfillResult
from meisa_sync_sqlalchemy.events import ChangeCapture, DeletePolicy
from meisa_sync_sqlalchemy.tables import OutboxTables, outbox_tables
from meisa_sync_sqlalchemy.watching import RelatedPath, WatchedModel
from meisa_sync_sqlalchemy.writing import OutboxWriter

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

    from meisa_sync.mapping import ContactMapping
    from meisa_sync_sqlalchemy.source import SessionSource
    from meisa_sync_sqlalchemy.store import SQLAlchemyStore

__all__ = ["SQLAlchemySync"]


# The synchronous driver the worker uses for an application that talks to its database via asyncio.
_SYNC_DRIVERS = {
    "aiosqlite": "sqlite+pysqlite",
    "asyncpg": "postgresql+psycopg",
    "psycopg_async": "postgresql+psycopg",
    "psycopg": "postgresql+psycopg",
    "aiomysql": "mysql+pymysql",
    "asyncmy": "mysql+pymysql",
}


class SQLAlchemySync:
    """The registration: mappings, change capture on your sessions, the worker's store and source.

    ``bind`` is an ``Engine`` (every ``session_class`` session is watched; ``Session`` by
    default), a ``sessionmaker`` or ``scoped_session`` (its sessions are watched), an
    ``async_sessionmaker`` or an ``AsyncEngine`` (``AsyncSession``'s sync sessions are watched).
    ``metadata`` defaults to the first mapped model's; the outbox tables join it so Alembic
    autogenerate sees them. ``delete_policy``: ``"erase"`` erases the contact when its user is
    deleted, ``"ignore"`` leaves it. ``strict`` builds every payload at flush time and raises
    ``StrictModeError`` (for tests; CONTRACT.md §10.2). ``drain_engine`` is the synchronous engine
    the worker and backfill use; by default ``bind``'s engine (for an async engine, the same URL
    with a synchronous driver).
    """

    def __init__(
        self,
        bind: Engine
        | AsyncEngine
        | sessionmaker[Any]
        | scoped_session[Any]
        | async_sessionmaker[Any],
        mappings: Sequence[ContactMapping],
        *,
        metadata: MetaData | None = None,
        delete_policy: DeletePolicy = "erase",
        strict: bool = False,
        session_class: type[Session] = Session,
        drain_engine: Engine | None = None,
    ) -> None:
        if not mappings:
            raise ConfigurationError("SQLAlchemySync needs at least one ContactMapping instance")
        self.watched = _compile_watched(mappings)
        self.related = _compile_related(self.watched)
        self.mappings: dict[str, ContactMapping] = {w.label: w.mapping for w in self.watched}
        first = self.watched[0].mapper.local_table
        self.metadata = metadata if metadata is not None else first.metadata  # type: ignore[attr-defined]
        self.tables: OutboxTables = outbox_tables(self.metadata)
        self.strict = strict
        self.delete_policy = delete_policy
        self.capture = ChangeCapture(
            self.watched,
            self.related,
            OutboxWriter(self.tables.outbox),
            delete_policy=delete_policy,
            strict=strict,
        )
        target, engine = _listen_target(bind, session_class)
        self._own_engine = False
        if drain_engine is None and not isinstance(engine, Engine):
            drain_engine = create_engine(_sync_url(engine))
            self._own_engine = True
        self.engine: Engine = drain_engine if drain_engine is not None else engine
        self.capture.install(target)

    # -- what the worker needs ----------------------------------------------------------------

    @functools.cached_property
    def store(self) -> SQLAlchemyStore:
        """The outbox store on :attr:`engine`."""
        from meisa_sync_sqlalchemy.store import SQLAlchemyStore

        return SQLAlchemyStore(self.engine, metadata=self.metadata)

    @functools.cached_property
    def source(self) -> SessionSource:
        """Loads the mapped objects for the worker, in sessions of their own."""
        from meisa_sync_sqlalchemy.source import SessionSource

        factory = sessionmaker(self.engine, expire_on_commit=False)
        return SessionSource(factory, models={w.label: w.model for w in self.watched})

    @functools.cached_property
    def sync_app(self) -> SyncApp:
        """What ``meisa-sync drain --app module:attribute`` runs."""
        return SyncApp(self.store, self.source, dict(self.mappings))

    def create_tables(self) -> None:
        """Create the outbox tables (when missing) for projects without Alembic migrations."""
        self.metadata.create_all(self.engine, tables=[self.tables.outbox, self.tables.state])

    # -- backfill -------------------------------------------------------------------------------

    def backfill_models(self) -> list[str]:
        """The labels of the mapped models, in registration order."""
        return [w.label for w in self.watched]

    def backfill(
        self,
        model: str | None = None,
        *,
        batch_size: int = 1000,
        restart: bool = False,
        progress: Callable[[BackfillProgress], None] | None = None,
    ) -> list[BackfillResult]:
        """Record every row of ``model`` (of every mapped model when None) at backfill priority.

        Resumable: see :class:`meisa_sync_sqlalchemy.backfill.Backfill`.
        """
        labels = [model] if model is not None else self.backfill_models()
        return [
            self._backfill_for(label).run(batch_size=batch_size, restart=restart, progress=progress)
            for label in labels
        ]

    def iter_backfill_batches(
        self, model: str, *, batch_size: int = 1000, after: object = None
    ) -> Iterator[list[object]]:
        """Primary keys of ``model``, ascending, ``batch_size`` at a time, after ``after``."""
        return self._backfill_for(model).batches(batch_size=batch_size, after=after)

    def _backfill_for(self, label: str) -> Backfill:
        for watched in self.watched:
            if watched.label == label:
                return Backfill(self.engine, watched, self.tables)
        raise ConfigurationError(
            f"no mapped model {label!r}; models: {', '.join(self.backfill_models())}"
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop capturing changes and release what this registration opened (not your engine)."""
        self.capture.remove()
        if self._own_engine:
            self.engine.dispose()

    def __enter__(self) -> SQLAlchemySync:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _compile_watched(mappings: Sequence[ContactMapping]) -> list[WatchedModel]:
    watched: list[WatchedModel] = []
    for mapping in mappings:
        if isinstance(mapping, type):
            raise ConfigurationError(
                f"register mapping instances, not classes: {mapping.__name__}() instead of "
                f"{mapping.__name__}"
            )
        compiled = WatchedModel.compile(mapping)
        if any(other.label == compiled.label for other in watched):
            raise ConfigurationError(f"two mappings registered for the table {compiled.label!r}")
        watched.append(compiled)
    return watched


def _compile_related(watched: Sequence[WatchedModel]) -> list[RelatedPath]:
    related: list[RelatedPath] = []
    for target in watched:
        declared = getattr(type(target.mapping), "related", None) or {}
        for model, path in declared.items():
            related.append(RelatedPath.compile(model, path, target))
    return related


def _asyncio_classes() -> tuple[type[Any], type[Any]]:
    """(AsyncEngine, async_sessionmaker), or placeholders when asyncio support is not installed."""
    try:
        from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
    except ImportError:  # SQLAlchemy's asyncio extension needs greenlet

        class _Absent:
            pass

        return _Absent, _Absent
    return AsyncEngine, async_sessionmaker


def _listen_target(bind: Any, session_class: type[Session]) -> tuple[Any, Any]:
    """What to install the listeners on, and the engine (sync or async) behind ``bind``."""
    async_engine, async_maker = _asyncio_classes()
    if isinstance(bind, (Engine, async_engine)):
        return session_class, bind
    if isinstance(bind, scoped_session):
        bind = bind.session_factory
    if isinstance(bind, async_maker):
        engine = bind.kw.get("bind")
        target = bind.kw.get("sync_session_class", Session)
    elif isinstance(bind, sessionmaker):
        engine = bind.kw.get("bind")
        target = bind
    else:
        raise ConfigurationError(
            "SQLAlchemySync takes an Engine, AsyncEngine, sessionmaker, scoped_session or "
            f"async_sessionmaker, not {type(bind).__name__}"
        )
    if not isinstance(engine, (Engine, async_engine)):
        raise ConfigurationError(
            "the sessionmaker has no bind: create it with sessionmaker(engine) (or pass the engine)"
        )
    return target, engine


def _sync_url(engine: Any) -> str:
    url = engine.url
    driver = _SYNC_DRIVERS.get(url.get_driver_name())
    if driver is None:
        raise ConfigurationError(
            f"no synchronous driver known for {url.drivername}; "
            "pass drain_engine=create_engine(...)"
        )
    return make_url(url).set(drivername=driver).render_as_string(hide_password=False)
