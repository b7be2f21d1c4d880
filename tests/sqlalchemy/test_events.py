"""The SQLAlchemy capture: change records written by the flush, in the session's transaction.

Every test runs on SQLite, PostgreSQL and MariaDB (``database_url``), with the demo's models.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine, ForeignKey, String, create_engine, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    scoped_session,
    selectinload,
    sessionmaker,
)

from meisa_sync.client import MeisaClient
from meisa_sync.demo.mapping import UserMapping
from meisa_sync.demo.models import Base, Subscription, User
from meisa_sync.exceptions import ConfigurationError, PayloadError, StrictModeError
from meisa_sync.mapping import ContactMapping, CustomField, Field
from meisa_sync.records import Priority
from meisa_sync.worker import Worker
from meisa_sync_sqlalchemy import (
    SQLAlchemySync,
    UnsupportedPrimaryKeyError,
    outbox_tables,
    record_change,
    record_select,
)
from tests.fixtures.server import LiveMeisa

Row = tuple[str, str, str, Any, Any, int]
MakeSync = Callable[..., SQLAlchemySync]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def maker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine)


@pytest.fixture
def make_sync(engine: Engine, maker: sessionmaker[Session]) -> Iterator[MakeSync]:
    created: list[SQLAlchemySync] = []

    def make(bind: Any = None, mapping: Any = None, **options: Any) -> SQLAlchemySync:
        mappings = [mapping or UserMapping()]
        sync = SQLAlchemySync(maker if bind is None else bind, mappings, **options)
        created.append(sync)
        Base.metadata.create_all(engine)
        return sync

    yield make
    for sync in created:
        sync.close()


@pytest.fixture
def sync(make_sync: MakeSync) -> SQLAlchemySync:
    return make_sync()


def records(engine: Engine) -> list[Row]:
    outbox = outbox_tables(Base.metadata).outbox
    query = select(
        outbox.c.model,
        outbox.c.object_pk,
        outbox.c.operation,
        outbox.c.identifiers,
        outbox.c.extras,
        outbox.c.priority,
    ).order_by(outbox.c.id)
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def upsert(user_id: int, extras: Any = None, priority: int = Priority.LIVE) -> Row:
    return ("users", str(user_id), "upsert", None, extras, priority)


def new_user(email: str = "ada@example.com", **fields: Any) -> User:
    return User(email=email, first_name=fields.pop("first_name", "Ada"), **fields)


def add_user(maker: sessionmaker[Session], **fields: Any) -> int:
    with maker.begin() as session:
        user = new_user(**fields)
        user.subscription = Subscription(plan="free")
        session.add(user)
        session.flush()
        return user.id


def clear_outbox(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(outbox_tables(Base.metadata).outbox.delete())


# -- transactions ---------------------------------------------------------------------------


def test_commit_leaves_one_record_per_new_user(sync: SQLAlchemySync, engine: Engine) -> None:
    with Session(engine) as plain:  # a session the registration does not watch
        plain.add(new_user("plain@example.com"))
        plain.commit()
    assert records(engine) == []

    with sessionmaker(engine)() as other:
        other.add(new_user("other@example.com"))
        other.commit()
    assert records(engine) == []

    user_id = add_user(sync_maker(sync))
    assert records(engine) == [upsert(user_id)]


def sync_maker(sync: SQLAlchemySync) -> sessionmaker[Session]:
    target = sync.capture._targets[0]
    assert isinstance(target, sessionmaker)
    return target


def test_rollback_leaves_nothing(
    sync: SQLAlchemySync, maker: sessionmaker[Session], engine: Engine
) -> None:
    with maker() as session:
        session.add(new_user())
        session.flush()
        assert len(records_in(session)) == 1  # written in the transaction...
        session.rollback()
    assert records(engine) == []  # ...and gone with it
    with maker() as session:
        assert session.scalars(select(User)).all() == []


def records_in(session: Session) -> list[Any]:
    outbox = outbox_tables(Base.metadata).outbox
    return list(session.execute(select(outbox.c.object_pk)))


def test_rolled_back_savepoint_leaves_nothing_of_its_own(
    sync: SQLAlchemySync, maker: sessionmaker[Session], engine: Engine
) -> None:
    with maker() as session:
        kept = new_user("kept@example.com")
        session.add(kept)
        with session.begin_nested():
            released = new_user("released@example.com")
            session.add(released)
        savepoint = session.begin_nested()
        session.add(new_user("dropped@example.com"))
        session.flush()
        savepoint.rollback()
        session.commit()
        expected = [upsert(kept.id), upsert(released.id)]
    assert sorted(records(engine)) == sorted(expected)


def test_several_flushes_in_one_transaction_each_record(
    sync: SQLAlchemySync, maker: sessionmaker[Session], engine: Engine
) -> None:
    user_id = add_user(maker)
    clear_outbox(engine)
    with maker.begin() as session:
        user = session.get_one(User, user_id)
        user.first_name = "Augusta"
        session.flush()
        user.last_name = "King"
        session.flush()
        session.flush()  # nothing left to flush: nothing recorded
    assert records(engine) == [upsert(user_id), upsert(user_id)]


def test_one_record_per_object_per_flush(
    sync: SQLAlchemySync, maker: sessionmaker[Session], engine: Engine
) -> None:
    with maker.begin() as session:
        users = [new_user(f"u{i}@example.com") for i in range(5)]
        for user in users:
            user.subscription = Subscription(plan="free")  # the related row maps to the same user
        session.add_all(users)
        session.flush()
        ids = [user.id for user in users]
    assert sorted(records(engine)) == sorted(upsert(user_id) for user_id in ids)


# -- related models --------------------------------------------------------------------------


def test_a_related_change_records_its_user(
    sync: SQLAlchemySync, maker: sessionmaker[Session], engine: Engine
) -> None:
    user_id = add_user(maker)
    clear_outbox(engine)
    with maker.begin() as session:
        subscription = session.scalars(select(Subscription)).one()
        subscription.plan = "pro"
        subscription.mrr = Decimal("99.00")
    assert records(engine) == [upsert(user_id)]


def test_a_related_row_moved_to_another_user_records_both(
    sync: SQLAlchemySync, maker: sessionmaker[Session], engine: Engine
) -> None:
    first = add_user(maker, email="first@example.com")
    with maker.begin() as session:
        second = new_user("second@example.com")
        session.add(second)
        session.flush()
        second_id = second.id
    clear_outbox(engine)
    with maker.begin() as session:
        subscription = session.scalars(select(Subscription)).one()
        subscription.user_id = second_id
    assert sorted(records(engine)) == sorted([upsert(first), upsert(second_id)])


def test_deleting_a_related_row_records_its_user(
    sync: SQLAlchemySync, maker: sessionmaker[Session], engine: Engine
) -> None:
    user_id = add_user(maker)
    clear_outbox(engine)
    with maker.begin() as session:
        session.delete(session.scalars(select(Subscription)).one())
    assert records(engine) == [upsert(user_id)]


# -- no-op flushes ---------------------------------------------------------------------------


def test_a_flush_changing_no_mapped_column_records_nothing(
    sync: SQLAlchemySync, maker: sessionmaker[Session], engine: Engine
) -> None:
    user_id = add_user(maker)
    clear_outbox(engine)
    with maker.begin() as session:
        user = session.get_one(User, user_id)
        user.last_login_at = datetime.now(timezone.utc)  # not read by the mapping
    with maker.begin() as session:
        user = session.get_one(User, user_id)
        user.first_name = user.first_name  # set, but to the same value
    assert records(engine) == []


class OpaqueMapping(UserMapping):
    # A callable without depends_on: which attributes it reads is unknowable.
    greeting = CustomField(lambda user: f"Hello {user.first_name}")


def test_an_opaque_mapping_counts_every_column_change(
    make_sync: MakeSync, maker: sessionmaker[Session], engine: Engine
) -> None:
    make_sync(mapping=OpaqueMapping())
    assert OpaqueMapping().local_attributes is None
    user_id = add_user(maker)
    clear_outbox(engine)
    with maker.begin() as session:
        session.get_one(User, user_id).last_login_at = datetime.now(timezone.utc)
    with maker.begin() as session:
        user = session.get_one(User, user_id)
        user.first_name = user.first_name  # still no change
    assert records(engine) == [upsert(user_id)]


# -- deletes ---------------------------------------------------------------------------------


def test_delete_under_erase_records_the_identifiers(
    sync: SQLAlchemySync, maker: sessionmaker[Session], engine: Engine
) -> None:
    user_id = add_user(maker, email="gone@example.com")
    clear_outbox(engine)
    with maker.begin() as session:
        session.delete(session.get_one(User, user_id))  # cascades to the subscription
    identifiers = {"email": "gone@example.com", "external_id": str(user_id)}
    assert records(engine) == [("users", str(user_id), "delete", identifiers, None, 0)]


def test_delete_of_an_expired_user_still_captures_its_identifiers(
    make_sync: MakeSync, engine: Engine
) -> None:
    maker = sessionmaker(engine, expire_on_commit=True)
    make_sync(maker)
    user_id = add_user(maker, email="expired@example.com")
    clear_outbox(engine)
    with maker() as session:
        user = session.get_one(User, user_id)
        session.commit()  # expires every attribute
        session.delete(user)
        session.commit()
    assert records(engine)[0][2:4] == (
        "delete",
        {"email": "expired@example.com", "external_id": str(user_id)},
    )


def test_a_delete_whose_identifiers_fail_still_deletes(
    sync: SQLAlchemySync, maker: sessionmaker[Session], engine: Engine
) -> None:
    user_id = add_user(maker, email="not-an-email")
    clear_outbox(engine)
    with maker.begin() as session:
        session.delete(session.get_one(User, user_id))
    # The delete is recorded without identifiers; the worker marks it dead saying so.
    assert records(engine) == [("users", str(user_id), "delete", {}, None, 0)]
    with maker() as session:
        assert session.get(User, user_id) is None


def test_delete_under_ignore_records_nothing(
    make_sync: MakeSync, maker: sessionmaker[Session], engine: Engine
) -> None:
    make_sync(delete_policy="ignore")
    user_id = add_user(maker)
    clear_outbox(engine)
    with maker.begin() as session:
        session.delete(session.get_one(User, user_id))
    assert records(engine) == []


def test_an_unknown_delete_policy_is_refused(maker: sessionmaker[Session]) -> None:
    with pytest.raises(ValueError, match="delete_policy"):
        SQLAlchemySync(maker, [UserMapping()], delete_policy="archive")  # type: ignore[arg-type]


# -- extras and explicit records -------------------------------------------------------------


def test_record_change_joins_the_flush_with_its_extras(
    sync: SQLAlchemySync, maker: sessionmaker[Session], engine: Engine
) -> None:
    user_id = add_user(maker)
    clear_outbox(engine)
    churned_at = datetime(2026, 11, 26, 9, 30, tzinfo=timezone.utc)
    with maker.begin() as session:
        user = session.get_one(User, user_id)
        assert user.subscription is not None
        user.subscription.plan = "churned"
        record_change(session, user, {"churn_reason": "too expensive", "churned_at": churned_at})
    extras = {"churn_reason": "too expensive", "churned_at": "2026-11-26T09:30:00Z"}
    assert records(engine) == [upsert(user_id, extras)]


def test_record_change_on_a_new_user_rides_on_its_creation(
    sync: SQLAlchemySync, maker: sessionmaker[Session], engine: Engine
) -> None:
    with maker.begin() as session:
        user = new_user()
        session.add(user)
        record_change(session, user, {"signup_source": "website"})
        user_id = user.id
    assert records(engine) == [upsert(user_id, {"signup_source": "website"})]


def test_record_change_without_pending_changes_writes_a_record(
    sync: SQLAlchemySync, maker: sessionmaker[Session], engine: Engine
) -> None:
    user_id = add_user(maker)
    clear_outbox(engine)
    with maker() as session:
        record_change(session, session.get_one(User, user_id), {"upgraded_at": "2026-11-26"})
        record_change(session, session.get_one(User, user_id))
        session.rollback()
    assert records(engine) == []
    with maker.begin() as session:
        record_change(session, session.get_one(User, user_id), {"upgraded_at": "2026-11-26"})
        # A related object records its user.
        record_change(session, session.scalars(select(Subscription)).one())
    assert records(engine) == [upsert(user_id, {"upgraded_at": "2026-11-26"}), upsert(user_id)]


def test_record_change_refuses_bad_extras_naming_the_field(
    sync: SQLAlchemySync, maker: sessionmaker[Session]
) -> None:
    user_id = add_user(maker)
    with maker() as session:
        user = session.get_one(User, user_id)
        with pytest.raises(PayloadError, match=r"^extras\.bad name"):
            record_change(session, user, {"bad name": 1})
        with pytest.raises(PayloadError, match=r"^extras\.tags"):
            record_change(session, user, {"tags": ["a", "b"]})


def test_record_change_needs_a_registration(engine: Engine) -> None:
    Base.metadata.create_all(engine)
    with Session(engine) as session, pytest.raises(ConfigurationError, match="registration"):
        record_change(session, new_user())


def test_record_select_records_what_a_bulk_update_changed(
    sync: SQLAlchemySync, maker: sessionmaker[Session], engine: Engine
) -> None:
    ids = [add_user(maker, email=f"bulk{i}@example.com") for i in range(4)]
    clear_outbox(engine)
    with maker.begin() as session:
        session.execute(update(User).where(User.id.in_(ids[:3])).values(last_name="Bulk"))
        assert records_in(session) == []  # bulk statements bypass the ORM's events
        count = record_select(session, select(User).where(User.last_name == "Bulk"))
    assert count == 3
    assert sorted(records(engine)) == sorted(upsert(i) for i in ids[:3])


# -- sessions of every kind ------------------------------------------------------------------


def test_registration_on_an_engine_watches_its_session_class(
    make_sync: MakeSync, engine: Engine
) -> None:
    class AppSession(Session):
        pass

    make_sync(engine, session_class=AppSession)
    with AppSession(engine) as session:
        session.add(new_user())
        session.commit()
        user_id = session.scalars(select(User.id)).one()
    with Session(engine) as plain:  # not an AppSession
        plain.add(new_user("unwatched@example.com"))
        plain.commit()
    assert records(engine) == [upsert(user_id)]


def test_scoped_session(make_sync: MakeSync, engine: Engine) -> None:
    scoped = scoped_session(sessionmaker(engine))
    make_sync(scoped)
    try:
        scoped.add(new_user())
        scoped.commit()
        user_id = scoped.scalars(select(User.id)).one()
        record_change(scoped, scoped.get_one(User, user_id), {"source": "scoped"})
        scoped.commit()
    finally:
        scoped.remove()
    assert records(engine) == [upsert(user_id), upsert(user_id, {"source": "scoped"})]


def test_the_public_api_is_sorted_and_complete() -> None:
    import meisa_sync_sqlalchemy

    assert meisa_sync_sqlalchemy.__all__ == sorted(set(meisa_sync_sqlalchemy.__all__))
    assert all(hasattr(meisa_sync_sqlalchemy, name) for name in meisa_sync_sqlalchemy.__all__)


def test_a_sessionmaker_without_bind_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no bind"):
        SQLAlchemySync(sessionmaker(), [UserMapping()])


def test_a_mapping_class_instead_of_an_instance_is_refused(maker: sessionmaker[Session]) -> None:
    with pytest.raises(ConfigurationError, match=r"UserMapping\(\)"):
        SQLAlchemySync(maker, [UserMapping])  # type: ignore[list-item]


# -- should_sync and strict mode -------------------------------------------------------------


def test_should_sync_is_left_to_the_worker(
    sync: SQLAlchemySync, maker: sessionmaker[Session], engine: Engine
) -> None:
    staff_id = add_user(maker, email="staff@example.com", is_staff=True)
    # The save path runs no mapping code: the staff user is recorded, and the worker skips it.
    assert records(engine) == [upsert(staff_id)]
    with maker() as session:
        staff = session.get_one(User, staff_id)
        assert not sync.mappings["users"].should_sync(staff)


def test_strict_mode_refuses_a_save_whose_payload_fails(
    make_sync: MakeSync, maker: sessionmaker[Session], engine: Engine
) -> None:
    make_sync(strict=True)
    user_id = add_user(maker, email="fine@example.com")
    with maker() as session:
        session.add(new_user("not-an-email"))
        with pytest.raises(StrictModeError, match="email"):
            session.commit()
        session.rollback()
        # A related change is checked too, through its user.
        user = session.get_one(User, user_id)
        user.email = "also broken"
        with pytest.raises(StrictModeError, match="email"):
            session.flush()
        session.rollback()
    assert records(engine) == [upsert(user_id)]


def test_strict_mode_skips_users_should_sync_refuses(
    make_sync: MakeSync, maker: sessionmaker[Session], engine: Engine
) -> None:
    make_sync(strict=True)
    staff_id = add_user(maker, email="not-an-email", is_staff=True)
    assert records(engine) == [upsert(staff_id)]


# -- async sessions --------------------------------------------------------------------------


def _async_url(database_url: str) -> str:
    url = make_url(database_url)
    backend = url.get_backend_name()
    driver = {
        "sqlite": "sqlite+aiosqlite",
        "postgresql": "postgresql+psycopg",
        "mysql": "mysql+aiomysql",
    }[backend]
    return url.set(drivername=driver).render_as_string(hide_password=False)


@pytest.mark.skipif(
    importlib.util.find_spec("greenlet") is None,
    reason="SQLAlchemy's asyncio extension needs greenlet, which is not installed",
)
async def test_async_session(make_sync: MakeSync, database_url: str, engine: Engine) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    async_engine = create_async_engine(_async_url(database_url))
    try:
        async_maker = async_sessionmaker(async_engine, expire_on_commit=False)
        sync = make_sync(async_maker)
        assert isinstance(sync.engine, Engine)  # the worker gets a synchronous engine
        async with async_maker() as session:
            user = new_user()
            user.subscription = Subscription(plan="free")
            session.add(user)
            await session.commit()
            user_id, email = user.id, user.email
            await session.run_sync(record_change, user, {"upgraded_at": "2026-11-26"})
            await session.rollback()  # takes the extras' record with it
            loaded = await session.get_one(
                User, user_id, options=[selectinload(User.subscription)], populate_existing=True
            )
            assert loaded.subscription is not None
            loaded.subscription.plan = "pro"
            await session.commit()
            await session.delete(loaded)
            await session.commit()
        identifiers = {"email": email, "external_id": str(user_id)}
        assert records(engine) == [
            upsert(user_id),
            upsert(user_id),
            ("users", str(user_id), "delete", identifiers, None, 0),
        ]
    finally:
        await async_engine.dispose()


def test_end_to_end_the_worker_sends_what_was_recorded(
    sync: SQLAlchemySync, maker: sessionmaker[Session], engine: Engine, live_meisa: LiveMeisa
) -> None:
    staff_id = add_user(maker, email="staff@example.com", is_staff=True)
    user_id = add_user(maker, email="ada@example.com")
    with maker.begin() as session:
        user = session.get_one(User, user_id)
        assert user.subscription is not None
        user.subscription.plan = "pro"
        record_change(session, user, {"upgraded_at": "2026-11-26"})
    with (
        MeisaClient(live_meisa.api_key, base_url=live_meisa.base_url) as client,
        Worker(sync.sync_app, client, concurrency=2) as worker,
    ):
        report = worker.run_once()
    assert (report.requests, report.skipped, report.dead_records) == (1, 1, 0)
    assert records(engine) == []
    contact = live_meisa.contact(email="ada@example.com")
    assert contact["external_id"] == str(user_id)
    assert contact["custom_fields"]["plan"] == "pro"
    assert contact["custom_fields"]["upgraded_at"] == "2026-11-26"
    assert live_meisa.contact(external_id=str(staff_id)) is None  # should_sync said no


# -- related paths of several steps ----------------------------------------------------------


class OtherBase(DeclarativeBase):
    pass


class Account(OtherBase):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    plans: Mapped[list[Plan]] = relationship(back_populates="account")


class Plan(OtherBase):
    __tablename__ = "account_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    account: Mapped[Account] = relationship(back_populates="plans")
    invoices: Mapped[list[Invoice]] = relationship(back_populates="plan")


class Invoice(OtherBase):
    __tablename__ = "invoices"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("account_plans.id"))
    amount: Mapped[int] = mapped_column(default=0)
    plan: Mapped[Plan] = relationship(back_populates="invoices")


class AccountMapping(ContactMapping):
    model = Account
    related: ClassVar[dict[type, str]] = {Invoice: "plan.account"}
    email = Field("email")
    external_id = Field("id")


def test_a_related_path_of_several_relationships(engine: Engine) -> None:
    maker = sessionmaker(engine)
    with SQLAlchemySync(maker, [AccountMapping()]):
        OtherBase.metadata.create_all(engine)
        with maker.begin() as session:
            account = Account(email="acme@example.com")
            plan = Plan(account=account)
            session.add(Invoice(plan=plan, amount=10))
            session.flush()
            account_id = account.id
        outbox = outbox_tables(OtherBase.metadata).outbox
        with engine.begin() as connection:
            connection.execute(outbox.delete())
        with maker.begin() as session:
            session.scalars(select(Invoice)).one().amount = 20
        with engine.connect() as connection:
            rows = connection.execute(select(outbox.c.model, outbox.c.object_pk)).all()
        assert [tuple(row) for row in rows] == [("accounts", str(account_id))]
    OtherBase.metadata.drop_all(engine)


@pytest.mark.parametrize(
    ("related", "message"),
    [
        ({Invoice: "plan.owner"}, "Plan has no relationship 'owner'"),
        ({Invoice: "plan"}, "leads to Plan, not to Account"),
        ({Invoice: "amount"}, "Invoice has no relationship 'amount'"),
    ],
)
def test_a_related_path_that_does_not_lead_to_the_user_is_refused(
    maker: sessionmaker[Session], related: dict[type, str], message: str
) -> None:
    mapping_class = type("Wrong", (AccountMapping,), {"related": related})
    with pytest.raises(ConfigurationError, match=message):
        SQLAlchemySync(maker, [mapping_class()])


class Membership(OtherBase):
    __tablename__ = "memberships"

    team_id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))


class NotMapped:
    id = 1


def test_models_the_capture_cannot_watch_are_refused(maker: sessionmaker[Session]) -> None:
    class MembershipMapping(ContactMapping):
        model = Membership
        email = Field("email")

    class PlainMapping(ContactMapping):
        model = NotMapped
        external_id = Field("id")

    with pytest.raises(UnsupportedPrimaryKeyError, match="composite primary key"):
        SQLAlchemySync(maker, [MembershipMapping()])
    with pytest.raises(ConfigurationError, match="not a mapped SQLAlchemy class"):
        SQLAlchemySync(maker, [PlainMapping()])
