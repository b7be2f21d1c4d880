"""The reference server's tables, as SQLAlchemy 2 declarative models.

Portable across SQLite, PostgreSQL and MariaDB/MySQL: string UUID keys, JSON columns, timestamps
stored as naive UTC with microseconds (MySQL's ``DATETIME`` would drop them otherwise). Uniqueness
the contract promises (one contact per e-mail, per external id; tag names case-insensitively; one
idempotency record per key and caller) is a unique index, so concurrent writers collide in the
database, not in Python.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Activity",
    "ApiKey",
    "Automation",
    "Base",
    "Contact",
    "ContactTag",
    "Enrollment",
    "IdempotencyRecord",
    "Sequence",
    "Setting",
    "Tag",
    "User",
    "new_id",
]


def new_id() -> str:
    """A new UUID4 as its canonical string."""
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in Python, a naive UTC one with microseconds in the database."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in {"mysql", "mariadb"}:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


def _exact(length: int) -> String:
    """A string compared byte for byte: MySQL's default collations would equate "é" and "e"."""
    return String(length).with_variant(
        mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb"
    )


# SQLite only autoincrements INTEGER PRIMARY KEY.
_BigId = BigInteger().with_variant(Integer(), "sqlite")
_Uuid = String(36)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class Contact(Base):
    __tablename__ = "meisa_contacts"

    id: Mapped[str] = mapped_column(_Uuid, primary_key=True, default=new_id)
    email: Mapped[str | None] = mapped_column(_exact(254), unique=True)
    external_id: Mapped[str | None] = mapped_column(_exact(255), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    custom_fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index("ix_meisa_contacts_created", "created_at", "id"),)


class Tag(Base):
    __tablename__ = "meisa_tags"

    id: Mapped[str] = mapped_column(_Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    # Lower-cased name: the case-insensitive uniqueness the contract promises, on every backend.
    # Lower-casing can lengthen a name ("İ" becomes two characters).
    name_key: Mapped[str] = mapped_column(_exact(300), unique=True)
    created_at: Mapped[datetime]


class ContactTag(Base):
    __tablename__ = "meisa_contact_tags"

    contact_id: Mapped[str] = mapped_column(
        _Uuid, ForeignKey("meisa_contacts.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[str] = mapped_column(
        _Uuid, ForeignKey("meisa_tags.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    added_at: Mapped[datetime]


class Sequence(Base):
    __tablename__ = "meisa_sequences"

    id: Mapped[str] = mapped_column(_Uuid, primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(_exact(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    allow_reenrollment: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class Enrollment(Base):
    __tablename__ = "meisa_enrollments"

    id: Mapped[str] = mapped_column(_Uuid, primary_key=True, default=new_id)
    sequence_id: Mapped[str] = mapped_column(
        _Uuid, ForeignKey("meisa_sequences.id", ondelete="CASCADE")
    )
    contact_id: Mapped[str] = mapped_column(
        _Uuid, ForeignKey("meisa_contacts.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(20))
    enrolled_at: Mapped[datetime]
    exited_at: Mapped[datetime | None]
    # Tie-break for enrolments made within one clock tick.
    seq: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_meisa_enrollments_sequence", "sequence_id", "enrolled_at"),)


class Activity(Base):
    __tablename__ = "meisa_activity"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    contact_id: Mapped[str] = mapped_column(
        _Uuid, ForeignKey("meisa_contacts.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict[str, Any]]

    # Rows are written in batches and never read back by id, so no RETURNING (which pipelined
    # writes on PostgreSQL could not read before the batch ends).
    __table_args__ = ({"implicit_returning": False},)


class Automation(Base):
    __tablename__ = "meisa_automations"

    id: Mapped[str] = mapped_column(_Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    # Creation order: the tie-break between rules at one position.
    created_seq: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[dict[str, Any]]
    actions: Mapped[list[Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ApiKey(Base):
    __tablename__ = "meisa_api_keys"

    id: Mapped[str] = mapped_column(_Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    # SHA-256 of the plaintext: a key is high-entropy, so a fast hash is enough to make a stolen
    # table useless, and lookups stay one indexed equality.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(10))
    scopes: Mapped[list[Any]]
    per_minute: Mapped[int] = mapped_column(Integer)
    per_hour: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class User(Base):
    __tablename__ = "meisa_users"

    id: Mapped[str] = mapped_column(_Uuid, primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(_exact(150), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]


class IdempotencyRecord(Base):
    __tablename__ = "meisa_idempotency"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    caller: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(_exact(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(index=True)

    __table_args__ = (UniqueConstraint("caller", "key", name="uq_meisa_idempotency_caller_key"),)


class Setting(Base):
    """Server-wide values that must survive restarts (the generated JWT secret)."""

    __tablename__ = "meisa_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
