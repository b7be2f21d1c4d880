"""The server's config file (CONTRACT.md §9), applied idempotently at start.

Keys are matched by their plaintext (stored hashed), users by username, sequences by slug and
automations by name: applying the same file twice changes nothing, and an edited entry is updated in
place. With no config and an empty database, one key with every scope and one dashboard user are
generated and printed once.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from meisa_sync.contract import DEFAULT_PER_HOUR, DEFAULT_PER_MINUTE, SEQUENCE_SLUG_RE
from meisa_sync.exceptions import ConfigurationError
from meisa_sync.server.accounts import create_api_key
from meisa_sync.server.automations import RuleError, parse_rule
from meisa_sync.server.credentials import (
    ALL_SCOPES,
    DEFAULT_SCOPES,
    KEY_PATTERN,
    hash_api_key,
    hash_password,
    verify_password,
)
from meisa_sync.server.db import Database
from meisa_sync.server.models import ApiKey, Automation, Sequence, Setting, User
from meisa_sync.server.rules import create_rule, save_rule

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = ["Bootstrap", "apply_config", "load_config", "resolve_jwt_secret"]

_SECTIONS = {"server", "api_keys", "users", "sequences", "automations"}


@dataclass(frozen=True)
class Bootstrap:
    """The credentials generated for an empty database without config (shown once)."""

    api_key: str
    username: str
    password: str


def load_config(config: str | Path | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The config as a dict: a mapping as is, a path read as TOML."""
    if config is None:
        return None
    if isinstance(config, Mapping):
        data = dict(config)
    else:
        path = Path(config)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"cannot read the server config {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    unknown = set(data) - _SECTIONS
    if unknown:
        raise ConfigurationError(
            f"unknown section(s) in the server config: {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(_SECTIONS))})"
        )
    return data


def _entries(config: Mapping[str, Any], section: str) -> list[tuple[str, dict[str, Any]]]:
    entries = config.get(section, [])
    if not isinstance(entries, list):
        raise ConfigurationError(f"{section}: must be a list of tables ([[{section}]])")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{section}[{index}]: must be a table")
    return [(f"{section}[{index}]", dict(entry)) for index, entry in enumerate(entries)]


def _require(entry: Mapping[str, Any], where: str, name: str, kind: type) -> Any:
    value = entry.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigurationError(f"{where}.{name}: required, a {kind.__name__}")
    return value


def _optional_int(entry: Mapping[str, Any], where: str, name: str, default: int) -> int:
    value = entry.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{where}.{name}: must be a positive integer")
    return value


def resolve_jwt_secret(db: Database, explicit: str | None, config: Mapping[str, Any] | None) -> str:
    """The explicit secret, else the config's, else one generated once and kept in the database."""
    if explicit:
        return explicit
    configured = (config or {}).get("server", {}).get("jwt_secret")
    if configured is not None:
        if not isinstance(configured, str) or not configured:
            raise ConfigurationError("server.jwt_secret: must be a non-empty string")
        return configured

    def stored(session: Session) -> str:
        setting = session.get(Setting, "jwt_secret")
        if setting is None:
            setting = Setting(name="jwt_secret", value=secrets.token_urlsafe(48))
            session.add(setting)
        return setting.value

    return db.transaction(stored)


def apply_config(session: Session, config: Mapping[str, Any] | None, now: Any) -> Bootstrap | None:
    """Make the database hold what the config says; bootstrap an empty one without config."""
    if config is None:
        return _bootstrap(session, now)
    for where, entry in _entries(config, "api_keys"):
        _apply_key(session, where, entry, now)
    for where, entry in _entries(config, "users"):
        _apply_user(session, where, entry, now)
    for where, entry in _entries(config, "sequences"):
        _apply_sequence(session, where, entry, now)
    for where, entry in _entries(config, "automations"):
        _apply_automation(session, where, entry, now)
    return None


def _apply_key(session: Session, where: str, entry: dict[str, Any], now: Any) -> None:
    plaintext = _require(entry, where, "key", str)
    if not KEY_PATTERN.fullmatch(plaintext):
        raise ConfigurationError(
            f"{where}.key: must look like meisa_live_<at least 32 url-safe characters> "
            "(or meisa_test_...)"
        )
    scopes = entry.get("scopes", list(DEFAULT_SCOPES))
    if not isinstance(scopes, list) or any(scope not in ALL_SCOPES for scope in scopes):
        raise ConfigurationError(f"{where}.scopes: a list of {', '.join(ALL_SCOPES)}")
    per_minute = _optional_int(entry, where, "per_minute", DEFAULT_PER_MINUTE)
    per_hour = _optional_int(entry, where, "per_hour", DEFAULT_PER_HOUR)
    name = entry.get("name", f"config key {where}")
    unknown = set(entry) - {"key", "scopes", "per_minute", "per_hour", "name"}
    if unknown:
        raise ConfigurationError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    existing = session.scalars(
        select(ApiKey).where(ApiKey.key_hash == hash_api_key(plaintext))
    ).one_or_none()
    if existing is None:
        create_api_key(
            session,
            name=str(name),
            scopes=scopes,
            per_minute=per_minute,
            per_hour=per_hour,
            mode=plaintext.split("_")[1],
            now=now,
            plaintext=plaintext,
        )
        return
    existing.scopes = [scope for scope in ALL_SCOPES if scope in scopes]
    existing.per_minute, existing.per_hour = per_minute, per_hour
    existing.name = str(name)


def _apply_user(session: Session, where: str, entry: dict[str, Any], now: Any) -> None:
    username = _require(entry, where, "username", str)
    password = _require(entry, where, "password", str)
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if user is None:
        session.add(User(username=username, password_hash=hash_password(password), created_at=now))
    elif not verify_password(password, user.password_hash):
        user.password_hash = hash_password(password)


def _apply_sequence(session: Session, where: str, entry: dict[str, Any], now: Any) -> None:
    slug = _require(entry, where, "slug", str)
    if not SEQUENCE_SLUG_RE.fullmatch(slug):
        raise ConfigurationError(f"{where}.slug: must match {SEQUENCE_SLUG_RE.pattern}")
    name = entry.get("name", slug)
    allow = entry.get("allow_reenrollment", False)
    if not isinstance(name, str) or not isinstance(allow, bool):
        raise ConfigurationError(f"{where}: name is a string, allow_reenrollment a boolean")
    sequence = session.scalars(select(Sequence).where(Sequence.slug == slug)).one_or_none()
    if sequence is None:
        session.add(Sequence(slug=slug, name=name, allow_reenrollment=allow, created_at=now))
    else:
        sequence.name, sequence.allow_reenrollment = name, allow
    session.flush()


def _apply_automation(session: Session, where: str, entry: dict[str, Any], now: Any) -> None:
    known = set(session.scalars(select(Sequence.slug)))
    try:
        spec = parse_rule(entry, known_sequences=known)
    except RuleError as exc:
        raise ConfigurationError(f"{where}.{exc.field}: {exc.reason}") from None
    row = session.scalars(select(Automation).where(Automation.name == spec.name)).first()
    if row is None:
        create_rule(session, spec, now)
    else:
        save_rule(session, row, spec, now)


def _bootstrap(session: Session, now: Any) -> Bootstrap | None:
    keys = session.scalar(select(func.count()).select_from(ApiKey)) or 0
    users = session.scalar(select(func.count()).select_from(User)) or 0
    if keys or users:
        return None
    _, plaintext = create_api_key(
        session,
        name="generated at first start",
        scopes=list(ALL_SCOPES),
        per_minute=DEFAULT_PER_MINUTE,
        per_hour=DEFAULT_PER_HOUR,
        mode="test",
        now=now,
    )
    password = secrets.token_urlsafe(12)
    session.add(User(username="admin", password_hash=hash_password(password), created_at=now))
    return Bootstrap(api_key=plaintext, username="admin", password=password)
