"""The demo application's models: users, each with an optional subscription.

Nothing here knows about Meisa: this is the application as it was before adding meisa-sync.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import DateTime, ForeignKey, Numeric, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ["Base", "Subscription", "User"]


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100), default=None)
    is_staff: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    # Not synced: a login alone never costs a request to Meisa.
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    subscription: Mapped[Subscription | None] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )


class Subscription(Base):
    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    plan: Mapped[str] = mapped_column(String(20), default="free")
    mrr: Mapped[Decimal] = mapped_column(Numeric(10, 2), default=Decimal("0"))
    billing_cycle: Mapped[str | None] = mapped_column(String(20), default=None)
    user: Mapped[User] = relationship(back_populates="subscription")
