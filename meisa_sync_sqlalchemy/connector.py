"""``store_from_url``: how ``meisa-sync status/retry/purge --database-url URL`` reach the outbox.

Registered as the entry point ``sqlalchemy`` of the group ``meisa_sync.connectors``, so the core CLI
never imports this package by name. It works on tables made by this package or by the Django app
(same names, same columns).
"""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from meisa_sync.exceptions import ConfigurationError
from meisa_sync_sqlalchemy.exceptions import MissingTablesError
from meisa_sync_sqlalchemy.store import SQLAlchemyStore
from meisa_sync_sqlalchemy.tables import OUTBOX_TABLE, STATE_TABLE

__all__ = ["store_from_url"]

# The store is synchronous: an application's asyncio URL is read with the matching sync driver.
_SYNC_DRIVERS = {
    "sqlite+aiosqlite": "sqlite+pysqlite",
    "postgresql+asyncpg": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
    "mysql+aiomysql": "mysql+pymysql",
    "mysql+asyncmy": "mysql+pymysql",
    "mariadb+aiomysql": "mariadb+pymysql",
    "mariadb+asyncmy": "mariadb+pymysql",
}
_DEFAULT_DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
_EXTRAS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}


def store_from_url(url: str) -> SQLAlchemyStore:
    """The outbox store in the database at ``url`` (any SQLAlchemy URL; ``postgres://`` too).

    Raises ``ConfigurationError`` (naming the URL, password hidden) when the URL is malformed, its
    driver is not installed, the database cannot be reached or the outbox tables are not there.
    The store owns its engine: ``close()`` it when done.
    """
    parsed = _parse(url)
    # Which database, not which driver: the driver may be one this function chose.
    shown = parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)
    try:
        store = SQLAlchemyStore.from_url(parsed.render_as_string(hide_password=False))
    except (NoSuchModuleError, ImportError) as exc:
        extra = _EXTRAS.get(parsed.get_backend_name(), "sqlalchemy")
        raise ConfigurationError(
            f"{shown}: no driver for {parsed.drivername!r} ({exc}); "
            f"pip install 'meisa-sync[{extra}]'"
        ) from exc
    try:
        _check_tables(store, shown)
    except BaseException:
        store.close()
        raise
    return store


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url.strip())
    except ArgumentError as exc:
        raise ConfigurationError(
            f"{url!r} is not a database URL (e.g. postgresql://user@host/db, sqlite:///outbox.db)"
        ) from exc
    if parsed.drivername in _DEFAULT_DRIVERS:
        # postgres:// (Heroku and others still hand these out) and driverless URLs get the driver
        # the extras install; SQLAlchemy 2.0 would otherwise look for psycopg2 or mysqlclient.
        parsed = parsed.set(drivername=_DEFAULT_DRIVERS[parsed.drivername])
    sync_driver = _SYNC_DRIVERS.get(parsed.drivername)
    return parsed if sync_driver is None else parsed.set(drivername=sync_driver)


def _check_tables(store: SQLAlchemyStore, shown: str) -> None:
    try:
        inspector = inspect(store.engine)
        schema = store.tables.outbox.schema
        missing = [
            name for name in (OUTBOX_TABLE, STATE_TABLE) if not inspector.has_table(name, schema)
        ]
    except OperationalError as exc:
        raise ConfigurationError(f"cannot reach {shown}: {exc.orig}") from exc
    if missing:
        raise MissingTablesError(
            f"{shown} has no {' or '.join(missing)} table: create the outbox tables with "
            "SQLAlchemySync.create_tables(), your Alembic migrations, or Django's migrate"
        )
