"""``SessionSource`` on SQLite, PostgreSQL and MariaDB: one query per model per batch plus one per
relationship, committed state only, objects usable once the session is closed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, ForeignKey, String, create_engine, event, inspect
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)

from meisa_sync.exceptions import ConfigurationError
from meisa_sync.mapping import ContactMapping, CustomField, Field
from meisa_sync_sqlalchemy.exceptions import UnknownModelError, UnsupportedPrimaryKeyError
from meisa_sync_sqlalchemy.source import SessionSource, eager_loads


class Base(DeclarativeBase):
    pass


class Company(Base):
    __tablename__ = "source_companies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("source_owners.id"))
    owner: Mapped[Owner | None] = relationship()


class Owner(Base):
    __tablename__ = "source_owners"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


class User(Base):
    __tablename__ = "source_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    first_name: Mapped[str | None] = mapped_column(String(100))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("source_companies.id"))
    company: Mapped[Company | None] = relationship()
    subscription: Mapped[Subscription | None] = relationship(back_populates="user")


class Subscription(Base):
    __tablename__ = "source_subscriptions"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("source_users.id"), unique=True)
    plan: Mapped[str] = mapped_column(String(20))
    user: Mapped[User] = relationship(back_populates="subscription")


class Lead(Base):
    __tablename__ = "source_leads"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(254))


class Membership(Base):
    __tablename__ = "source_memberships"
    user_id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(primary_key=True)


class UserMapping(ContactMapping):
    model = User
    email = Field("email")
    external_id = Field("id")
    first_name = Field("first_name", default=None)
    plan = CustomField("subscription.plan", default="free")
    company_owner = CustomField("company.owner.name", default=None)


class PlainMapping(ContactMapping):
    model = User
    email = Field("email")


class LeadMapping(ContactMapping):
    model = Lead
    email = Field("email")


USERS = 30


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        owner = Owner(id=1, name="Ada")
        companies = [Company(id=1, name="Acme", owner=owner), Company(id=2, name="Solo")]
        session.add_all(companies)
        for pk in range(1, USERS + 1):
            user = User(id=pk, email=f"u{pk}@example.com", first_name=f"U{pk}")
            user.company = companies[pk % 2]
            if pk % 3:
                user.subscription = Subscription(plan="pro" if pk % 2 else "free")
            session.add(user)
        session.commit()
    yield engine
    engine.dispose()


@pytest.fixture
def source(engine: Engine) -> SessionSource:
    factory = sessionmaker(engine, expire_on_commit=False)
    return SessionSource(factory, models={"source_users": User, "source_leads": Lead})


class Statements:
    """Counts the statements an engine runs while active."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[str] = []

    def _count(self, *args: Any) -> None:
        self.seen.append(args[2])

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)

    @property
    def selects(self) -> list[str]:
        return [s for s in self.seen if s.lstrip().upper().startswith("SELECT")]


def test_loads_existing_objects_by_pk_string(source: SessionSource) -> None:
    loaded = source.load("source_users", ["1", "2", "999", "not-a-number"], UserMapping())
    assert set(loaded) == {"1", "2"}
    first = loaded["1"]
    assert isinstance(first, User) and first.id == 1 and first.email == "u1@example.com"


def test_one_query_per_model_and_one_per_relationship(
    source: SessionSource, engine: Engine
) -> None:
    pks = [str(pk) for pk in range(1, USERS + 1)]
    with Statements(engine) as statements:
        loaded = source.load("source_users", pks, UserMapping())
    # users; their subscriptions; their companies; the companies' owners.
    assert len(statements.selects) == 4, statements.selects
    assert len(loaded) == USERS

    with Statements(engine) as statements:
        payloads = [UserMapping().build(loaded[pk]) for pk in pks]
    assert statements.seen == []
    assert payloads[0]["custom_fields"] == {"plan": "pro", "company_owner": None}
    assert payloads[1]["custom_fields"] == {"plan": "free", "company_owner": "Ada"}
    assert payloads[2]["custom_fields"]["plan"] == "free"  # no subscription: the default


def test_a_mapping_without_relations_loads_in_one_query(
    source: SessionSource, engine: Engine
) -> None:
    with Statements(engine) as statements:
        loaded = source.load("source_users", ["1", "2", "3"], PlainMapping())
    assert len(statements.selects) == 1
    assert all(inspect(obj).detached for obj in loaded.values())


def test_sees_committed_state_only(source: SessionSource, engine: Engine) -> None:
    with Session(engine) as writer:
        user = writer.get_one(User, 1)
        user.email = "uncommitted@example.com"
        writer.add(User(id=500, email="new@example.com"))
        writer.flush()

        loaded = source.load("source_users", ["1", "500"], PlainMapping())
        assert set(loaded) == {"1"}
        assert loaded["1"].email == "u1@example.com"  # type: ignore[attr-defined]
        writer.commit()

    loaded = source.load("source_users", ["1", "500"], PlainMapping())
    assert loaded["1"].email == "uncommitted@example.com"  # type: ignore[attr-defined]
    assert set(loaded) == {"1", "500"}


def test_uuid_primary_keys(source: SessionSource, engine: Engine) -> None:
    lead_id = uuid.uuid4()
    with Session(engine) as session:
        session.add(Lead(id=lead_id, email="lead@example.com"))
        session.commit()
    loaded = source.load("source_leads", [str(lead_id), str(uuid.uuid4()), "junk"], LeadMapping())
    assert list(loaded) == [str(lead_id)]
    assert LeadMapping().build(loaded[str(lead_id)])["email"] == "lead@example.com"


def test_no_pks_runs_no_query(source: SessionSource, engine: Engine) -> None:
    with Statements(engine) as statements:
        assert source.load("source_users", [], UserMapping()) == {}
        assert source.load("source_users", ["x"], UserMapping()) == {}
    assert statements.seen == []


def test_an_unknown_model_is_a_configuration_error(source: SessionSource) -> None:
    with pytest.raises(UnknownModelError, match=r"'users'.*source_leads, source_users"):
        source.load("users", ["1"], UserMapping())


def test_a_composite_primary_key_is_refused_at_construction() -> None:
    with pytest.raises(UnsupportedPrimaryKeyError, match=r"Membership.*\(user_id, group_id\)"):
        SessionSource(sessionmaker(), models={"memberships": Membership})
    assert issubclass(UnsupportedPrimaryKeyError, ConfigurationError)


def test_eager_loads_stop_at_what_is_not_a_relationship() -> None:
    mapper = inspect(User)
    # "email.domain" starts at a column: nothing to load. Prefixes of longer paths are dropped.
    options = eager_loads(mapper, {"email.domain", "company", "company.owner", "subscription"})
    assert len(options) == 2
    assert eager_loads(mapper, {"first_name"}) == []
