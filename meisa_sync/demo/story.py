"""The seed's story, played by a small SQLAlchemy application that syncs its users with meisa-sync.

Ada and Grace sign up on the free plan, both upgrade to pro (with the one-off ``upgraded_at``
field), and Grace churns (with ``churn_reason``); the worker drains after each step, so Meisa sees
each step and its automations react. Then a crowd of users signs up and changes a few times before
one drain: each user costs one request however often it was saved.

The application code is ordinary SQLAlchemy; meisa-sync shows up in three places: the registration
(:class:`DemoApp`), ``record_change`` for one-off fields, and the worker's ``run_once``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from sqlalchemy import create_engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from meisa_sync.client import MeisaClient
from meisa_sync.demo.dashboard import ContactView
from meisa_sync.demo.mapping import UserMapping
from meisa_sync.demo.models import Base, Subscription, User
from meisa_sync.report import DrainReport
from meisa_sync.worker import Worker
from meisa_sync_sqlalchemy import SQLAlchemySync, record_change

__all__ = ["STORY_USERS", "DemoApp", "DemoSummary", "describe", "play_crowd", "play_story"]

STORY_USERS = ("ada@example.com", "grace@example.com")


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- what the application does (no meisa-sync here but record_change) --------------------------


def sign_up(session: Session, email: str, first_name: str, last_name: str) -> User:
    user = User(email=email, first_name=first_name, last_name=last_name)
    user.subscription = Subscription(plan="free")
    session.add(user)
    return user


def upgrade_to_pro(session: Session, user: User) -> None:
    assert user.subscription is not None
    user.subscription.plan = "pro"
    user.subscription.mrr = Decimal("99.00")
    user.subscription.billing_cycle = "annual"
    # A one-off field: not on any model, sent with this change only.
    record_change(session, user, {"upgraded_at": _now()})


def churn(session: Session, user: User, reason: str) -> None:
    assert user.subscription is not None
    previous_plan = user.subscription.plan
    user.subscription.plan = "churned"
    user.subscription.mrr = Decimal("0")
    record_change(
        session,
        user,
        {"churn_reason": reason, "previous_plan": previous_plan, "churned_at": _now()},
    )


def log_in(user: User) -> None:
    user.last_login_at = _now()  # not in the mapping: recorded nothing, sends nothing


# -- the application, wired to meisa-sync -------------------------------------------------------


@dataclass
class DemoSummary:
    """What the demo did, for its last lines."""

    saves: int = 0
    drain: DrainReport = field(default_factory=DrainReport)


class DemoApp:
    """The demo's application: its SQLite database, the registration, and a worker."""

    def __init__(self, folder: Path, meisa_base_url: str, api_key: str) -> None:
        self.engine = create_engine(f"sqlite:///{folder / 'app.db'}")
        # A throwaway database: skip the fsync of every commit.
        event.listen(self.engine, "connect", _no_fsync)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # The whole registration: every session of this sessionmaker now records its users' changes.
        self.sync = SQLAlchemySync(self.sessions, [UserMapping()])
        Base.metadata.create_all(self.engine)  # the app's tables, and the outbox's
        self.client = MeisaClient(api_key, base_url=meisa_base_url)
        self.worker = Worker(self.sync.sync_app, self.client, batch_size=200, concurrency=8)
        self.summary = DemoSummary()

    @contextmanager
    def save(self) -> Iterator[Session]:
        """One transaction of the application: one save."""
        with self.sessions.begin() as session:
            yield session
        self.summary.saves += 1

    def drain(self) -> DrainReport:
        """What ``meisa-sync drain --once`` does: send everything due, then return."""
        report = self.worker.run_once()
        self.summary.drain.add(report)
        return report

    def close(self) -> None:
        self.worker.close()
        self.client.close()
        self.sync.close()
        self.engine.dispose()


def _no_fsync(connection: object, record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA synchronous = OFF")
    cursor.close()


# -- the story and the crowd ---------------------------------------------------------------------


def play_story(app: DemoApp, say: Callable[[str], None]) -> None:
    """The seed's story, one drain after each step."""
    with app.save() as session:
        ada = sign_up(session, "ada@example.com", "Ada", "Lovelace")
        grace = sign_up(session, "grace@example.com", "Grace", "Hopper")
        session.flush()
        ada_id, grace_id = ada.id, grace.id
    say(f"1. Ada and Grace sign up (plan free): {app.drain().summary()}")

    for user_id in (ada_id, grace_id):
        with app.save() as session:
            upgrade_to_pro(session, session.get_one(User, user_id))
    say(f"2. both upgrade to pro: {app.drain().summary()}")

    with app.save() as session:
        churn(session, session.get_one(User, grace_id), reason="too expensive")
    say(f"3. Grace churns: {app.drain().summary()}")


def play_crowd(app: DemoApp, users: int, say: Callable[[str], None], seed: int = 5) -> None:
    """``users`` sign up, then each changes a few times; one drain at the end."""
    chance = random.Random(seed)
    with app.save() as session:
        start = len(session.scalars(select(User.id)).all())
    ids: list[int] = []
    for number in range(start, start + users):
        with app.save() as session:
            user = sign_up(session, f"user{number}@example.com", f"User{number}", "Crowd")
            session.flush()
            ids.append(user.id)
    for user_id in ids:
        with app.save() as session:
            user = session.get_one(User, user_id)
            user.last_name = chance.choice(["Smith", "Jones", "Okafor", "Tanaka", "Novak"])
        with app.save() as session:
            log_in(session.get_one(User, user_id))
        if chance.random() < 0.3:
            with app.save() as session:
                upgrade_to_pro(session, session.get_one(User, user_id))
    say(f"4. {users} more users sign up and change: {app.drain().summary()}")


# -- printing what Meisa holds ---------------------------------------------------------------------


def describe(contact: ContactView) -> list[str]:
    """A contact as a few readable lines."""
    fields = ", ".join(f"{name}={value!r}" for name, value in sorted(contact.custom_fields.items()))
    enrollments = ", ".join(f"{sequence} ({status})" for sequence, status in contact.enrollments)
    lines = [
        contact.email,
        f"  custom fields: {fields}",
        f"  tags:          {', '.join(contact.tags) or '-'}",
        f"  enrollments:   {enrollments or '-'}",
        "  activity:",
    ]
    lines.extend(f"    {_activity_line(entry)}" for entry in contact.activity)
    return lines


def _activity_line(entry: dict[str, object]) -> str:
    kind = str(entry["kind"])
    data = entry.get("data")
    if not isinstance(data, dict):
        return kind
    if kind in ("created", "updated"):
        changes = data.get("changes") or {}
        shown = ", ".join(f"{k}: {v['from']!r} -> {v['to']!r}" for k, v in changes.items())
        return f"{kind:<12} {shown}"
    if kind == "automation":
        actions = ", ".join(
            f"{a.get('type')} {a.get('tag') or a.get('sequence')} ({a.get('result')})"
            for a in data.get("actions", [])
        )
        return f"{kind:<12} {data.get('rule_name')!r}: {actions}"
    detail = data.get("tag") or data.get("sequence") or ""
    return f"{kind:<12} {detail}"
