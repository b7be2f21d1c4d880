"""End to end on each database: Django saves → the outbox → the core worker → the reference server.

The seed's story (signup, upgrade, churn) is checked on the server: custom fields, the tags the
seed's automations add and remove, and the erasure of a deleted user.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from meisa_sync.client import MeisaClient
from meisa_sync.retry import RetryPolicy
from meisa_sync.worker import Worker
from meisa_sync_django import record_change
from meisa_sync_django.connector import sync_app
from meisa_sync_django.source import DjangoSource
from meisa_sync_django.store import DjangoStore
from tests.django.databases import on_database
from tests.django.testapp.meisa import UserMapping
from tests.django.testapp.models import Subscription, User
from tests.fixtures.server import LiveMeisa


def tag_names(contact: dict[str, Any]) -> list[str]:
    return sorted(tag["name"] for tag in contact["tags"])


class _EndToEnd:
    alias = "default"

    @pytest.fixture
    def worker(self, live_meisa: LiveMeisa) -> Iterator[Worker]:
        policy = RetryPolicy(base=0.01, cap=0.02)
        with (
            MeisaClient(live_meisa.api_key, base_url=live_meisa.base_url) as client,
            Worker(sync_app(self.alias), client, concurrency=4, retry_policy=policy) as worker,
        ):
            yield worker

    def test_the_seed_story_signup_upgrade_churn(
        self, worker: Worker, live_meisa: LiveMeisa
    ) -> None:
        alias = self.alias
        with transaction.atomic(using=alias):
            ada = User.objects.db_manager(alias).create_user(
                username="ada", email="ada@example.com", first_name="Ada", last_name="Lovelace"
            )
            subscription = Subscription.objects.using(alias).create(user=ada, plan="free")
        report = worker.run_once()
        assert (report.sent, report.coalesced_records) == (1, 1)  # two records, one request
        contact = live_meisa.contact(external_id=str(ada.pk))
        assert (contact["email"], contact["first_name"], contact["last_name"]) == (
            "ada@example.com",
            "Ada",
            "Lovelace",
        )
        assert contact["custom_fields"] == {"plan": "free", "billing_cycle": "monthly", "mrr": 0}
        assert tag_names(contact) == ["free-plan"]

        with transaction.atomic(using=alias):
            subscription.plan, subscription.mrr = "pro", Decimal("49.00")
            subscription.save()
            record_change(ada, extras={"upgraded_at": "2026-03-01T10:00:00Z"})
        assert worker.run_once().sent == 1
        contact = live_meisa.contact(external_id=str(ada.pk))
        assert contact["custom_fields"]["plan"] == "pro"
        assert contact["custom_fields"]["mrr"] == 49
        assert contact["custom_fields"]["upgraded_at"] == "2026-03-01T10:00:00Z"
        assert tag_names(contact) == ["paying-customer", "pro-plan"]

        with transaction.atomic(using=alias):
            subscription.plan, subscription.mrr = "churned", Decimal("0")
            subscription.save()
            record_change(ada, extras={"churn_reason": "too_expensive"})
        assert worker.run_once().sent == 1
        contact = live_meisa.contact(external_id=str(ada.pk))
        assert contact["custom_fields"]["churn_reason"] == "too_expensive"
        assert tag_names(contact) == ["churned", "pro-plan"]

        # The last payload carried the extras; a plain save sends the mapping's payload once...
        ada.save()
        assert worker.run_once().sent == 1
        # ... and then a save that changes nothing mapped sends nothing.
        ada.nickname = "countess"
        ada.save()
        report = worker.run_once()
        assert (report.sent, report.unchanged) == (0, 1)

        pk = str(ada.pk)
        ada.delete()
        assert worker.run_once().sent == 1
        assert live_meisa.contact(external_id=pk) is None
        assert DjangoStore(alias).stats().pending == 0

    def test_a_failing_mapping_makes_its_records_dead_with_the_error(
        self, worker: Worker, live_meisa: LiveMeisa
    ) -> None:
        User.objects.db_manager(self.alias).create_user(username="bad", email="not-an-email")
        good = User.objects.db_manager(self.alias).create_user(
            username="good", email="good@example.com"
        )
        report = worker.run_once()
        assert (report.sent, report.dead_records) == (1, 1)
        (dead,) = DjangoStore(self.alias).list_dead()
        assert dead.last_error is not None and "email" in dead.last_error
        assert live_meisa.contact(external_id=str(good.pk)) is not None

    def test_staff_users_are_not_sent(self, worker: Worker, live_meisa: LiveMeisa) -> None:
        staff = User.objects.db_manager(self.alias).create_user(
            username="ops", email="ops@example.com", is_staff=True
        )
        report = worker.run_once()
        assert (report.sent, report.skipped) == (0, 1)
        assert live_meisa.contact(external_id=str(staff.pk)) is None

    def test_the_source_loads_a_batch_with_its_subscriptions_in_one_query(self) -> None:
        users = [
            User.objects.db_manager(self.alias).create_user(
                username=f"u{i}", email=f"u{i}@example.com"
            )
            for i in range(5)
        ]
        for user in users[:3]:
            Subscription.objects.using(self.alias).create(user=user, plan="pro")
        source = DjangoSource(self.alias)
        mapping = UserMapping()
        with CaptureQueriesContext(connections[self.alias]) as queries:
            loaded = source.load("testapp.User", [str(u.pk) for u in users] + ["999999"], mapping)
            payloads = [mapping.build(user) for user in loaded.values()]
        assert len(queries) == 1
        assert sorted(loaded) == sorted(str(u.pk) for u in users)
        assert [p["custom_fields"]["plan"] for p in payloads].count("pro") == 3


class TestSQLiteEndToEnd(_EndToEnd):
    pytestmark = on_database("default", transaction=True)
    alias = "default"


class TestPostgreSQLEndToEnd(_EndToEnd):
    pytestmark = on_database("postgres", transaction=True)
    alias = "postgres"


class TestMySQLEndToEnd(_EndToEnd):
    pytestmark = on_database("mysql", transaction=True)
    alias = "mysql"
