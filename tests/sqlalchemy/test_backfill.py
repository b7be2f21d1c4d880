"""Backfill: every existing user recorded once, in bulk, resumable, below live changes' priority."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from meisa_sync.cli import main
from meisa_sync.demo.mapping import UserMapping
from meisa_sync.demo.models import Base, User
from meisa_sync.records import Priority
from meisa_sync_sqlalchemy import BackfillProgress, SQLAlchemySync, outbox_tables

USERS = 25

_created: list[SQLAlchemySync] = []


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def maker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine)


@pytest.fixture
def sync(engine: Engine, maker: sessionmaker[Session]) -> Iterator[SQLAlchemySync]:
    sync = SQLAlchemySync(maker, [UserMapping()])
    Base.metadata.create_all(engine)
    with maker.begin() as session:
        session.add_all(User(email=f"u{i}@example.com", first_name=f"U{i}") for i in range(USERS))
    with engine.begin() as connection:  # the signups' own records: start from an empty outbox
        connection.execute(sync.tables.outbox.delete())
    yield sync
    sync.close()


def recorded(engine: Engine) -> list[tuple[str, int]]:
    outbox = outbox_tables(Base.metadata).outbox
    with engine.connect() as connection:
        rows = connection.execute(
            select(outbox.c.object_pk, outbox.c.priority).order_by(outbox.c.id)
        )
        return [(pk, priority) for pk, priority in rows]


def user_ids(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return [str(pk) for pk in session.scalars(select(User.id).order_by(User.id))]


def test_backfill_records_every_user_once_at_backfill_priority(
    sync: SQLAlchemySync, engine: Engine
) -> None:
    seen: list[BackfillProgress] = []
    [result] = sync.backfill(batch_size=10, progress=seen.append)
    assert (result.model, result.recorded, result.resumed_after) == ("users", USERS, None)
    assert recorded(engine) == [(pk, Priority.BACKFILL) for pk in user_ids(engine)]
    assert [p.recorded for p in seen] == [10, 20, 25]
    assert {p.total for p in seen} == {USERS}

    [again] = sync.backfill(batch_size=10)
    assert again.already_complete and again.recorded == 0
    assert len(recorded(engine)) == USERS

    [restarted] = sync.backfill(batch_size=100, restart=True)
    assert restarted.recorded == USERS
    assert len(recorded(engine)) == 2 * USERS


def test_an_interrupted_backfill_resumes_after_the_last_committed_batch(
    sync: SQLAlchemySync, engine: Engine
) -> None:
    class Interrupted(Exception):
        pass

    def stop_after_two_batches(progress: BackfillProgress) -> None:
        if progress.recorded >= 14:
            raise Interrupted

    with pytest.raises(Interrupted):
        sync.backfill(batch_size=7, progress=stop_after_two_batches)
    ids = user_ids(engine)
    assert [pk for pk, _ in recorded(engine)] == ids[:14]

    [resumed] = sync.backfill(batch_size=7)
    assert resumed.resumed_after == ids[13]
    assert resumed.recorded == USERS - 14
    assert [pk for pk, _ in recorded(engine)] == ids  # each user once, none skipped


def test_live_changes_are_claimed_before_the_backfill(
    sync: SQLAlchemySync, engine: Engine, maker: sessionmaker[Session]
) -> None:
    sync.backfill(batch_size=100)
    with maker.begin() as session:  # a signup after the backfill was recorded
        signup = User(email="signup@example.com", first_name="New")
        session.add(signup)
        session.flush()
        signup_id = str(signup.id)
    claimed = sync.store.claim("worker-1", limit=1, lease=timedelta(seconds=30))
    assert [c.key.pk for c in claimed] == [signup_id]
    assert claimed[0].newest.priority == Priority.LIVE
    rest = sync.store.claim("worker-2", limit=5, lease=timedelta(seconds=30))
    assert [c.key.pk for c in rest] == user_ids(engine)[:5]
    assert {c.newest.priority for c in rest} == {Priority.BACKFILL}


def test_iter_backfill_batches_walks_primary_keys(sync: SQLAlchemySync, engine: Engine) -> None:
    ids = [int(pk) for pk in user_ids(engine)]
    batches = list(sync.iter_backfill_batches("users", batch_size=10))
    assert batches == [ids[:10], ids[10:20], ids[20:]]
    assert list(sync.iter_backfill_batches("users", batch_size=10, after=ids[-3])) == [ids[-2:]]


def make_registration() -> SQLAlchemySync:
    """The ``--app`` factory the CLI tests point at."""
    import os

    registration = SQLAlchemySync(
        create_engine(os.environ["MEISA_TEST_BACKFILL_URL"]),
        [UserMapping()],
        session_class=_CliSession,
    )
    _created.append(registration)
    return registration


class _CliSession(Session):
    pass


@pytest.fixture
def cli_app(
    sync: SQLAlchemySync, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("MEISA_TEST_BACKFILL_URL", database_url)
    yield f"{__name__}:make_registration"
    while _created:
        registration = _created.pop()
        registration.close()
        registration.engine.dispose()


def test_cli_backfills_and_resumes(cli_app: str, engine: Engine) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["backfill", "--app", cli_app, "--batch-size", "10"])
    assert result.exit_code == 0, result.output
    assert f"users: {USERS} recorded" in result.output
    assert len(recorded(engine)) == USERS

    again = runner.invoke(main, ["backfill", "--app", cli_app, "--model", "users"])
    assert again.exit_code == 0, again.output
    assert "already backfilled" in again.output
    assert len(recorded(engine)) == USERS


def test_cli_refuses_an_unknown_model_or_app(cli_app: str) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["backfill", "--app", cli_app, "--model", "accounts"])
    assert result.exit_code == 2
    assert "'accounts' is not a mapped model; models: users" in result.output
    result = runner.invoke(main, ["backfill", "--app", f"{__name__}:USERS"])
    assert result.exit_code == 2
    assert "cannot backfill" in result.output
    result = runner.invoke(main, ["backfill", "--app", "no_such_module_here:sync"])
    assert result.exit_code == 2
    assert "cannot import 'no_such_module_here'" in result.output
