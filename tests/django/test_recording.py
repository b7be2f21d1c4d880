"""The save path: what a save, a delete or a helper call writes to the outbox, and where."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings

from meisa_sync.exceptions import PayloadError
from meisa_sync_django import record_change, record_queryset
from meisa_sync_django.exceptions import ImproperlyConfigured
from meisa_sync_django.models import OutboxRecord
from tests.django.helpers import USER, make_user, outbox, records
from tests.django.testapp.models import Subscription, Team, User

pytestmark = pytest.mark.django_db(databases="__all__")


def test_creating_a_user_records_one_upsert(alias: str) -> None:
    user = User.objects.db_manager(alias).create_user(username="ada", email="ada@example.com")

    (record,) = outbox(alias)
    assert (record.model, record.object_pk, record.operation) == (USER, str(user.pk), "upsert")
    assert (record.state, record.priority, record.attempts) == ("pending", 0, 0)
    assert record.identifiers is None and record.extras is None
    assert record.created_at == record.available_at


def test_saving_a_user_records_an_upsert_on_the_saves_database(alias: str) -> None:
    user = make_user(alias)
    user.first_name = "Augusta"
    user.save()
    assert records(alias) == [(USER, str(user.pk), "upsert")]
    others = [other for other in ("default", "postgres", "mysql") if other != alias]
    assert all(not records(other) for other in _configured(others))


def test_a_rolled_back_transaction_leaves_no_record(alias: str) -> None:
    user = make_user(alias)
    with pytest.raises(RuntimeError), transaction.atomic(using=alias):
        user.first_name = "Augusta"
        user.save()
        assert len(records(alias)) == 1
        raise RuntimeError("the view failed")
    assert records(alias) == []


def test_a_rolled_back_savepoint_takes_only_its_records(alias: str) -> None:
    ada = make_user(alias, "ada")
    bob = make_user(alias, "bob")
    with transaction.atomic(using=alias):
        ada.save()
        try:
            with transaction.atomic(using=alias):
                bob.save()
                raise RuntimeError("inner block failed")
        except RuntimeError:
            pass
    assert records(alias) == [(USER, str(ada.pk), "upsert")]


def test_update_fields_touching_no_mapped_field_records_nothing(alias: str) -> None:
    user = make_user(alias)
    user.nickname = "countess"
    user.save(update_fields=["nickname"])
    user.last_login = None
    user.save(update_fields=["last_login", "nickname"])
    assert records(alias) == []

    user.email = "lovelace@example.com"
    user.save(update_fields=["email"])
    user.is_beta = True  # read by the Tags callable, declared in depends_on
    user.save(update_fields=["is_beta"])
    assert records(alias) == [(USER, str(user.pk), "upsert")] * 2


def test_a_related_save_records_its_user(alias: str) -> None:
    user = make_user(alias)
    subscription = Subscription.objects.using(alias).create(user=user, plan="pro")
    subscription.mrr = Decimal("49.00")
    subscription.save()
    assert records(alias) == [(USER, str(user.pk), "upsert")] * 2


def test_a_related_delete_records_its_user(alias: str) -> None:
    user = make_user(alias)
    subscription = Subscription.objects.using(alias).create(user=user, plan="pro")
    OutboxRecord.objects.using(alias).all().delete()
    subscription.delete()
    assert records(alias) == [(USER, str(user.pk), "upsert")]


def test_deleting_a_user_records_an_erasure_with_its_identifiers(alias: str) -> None:
    user = make_user(alias)
    pk = user.pk
    user.delete()
    (record,) = outbox(alias)
    assert (record.object_pk, record.operation) == (str(pk), "delete")
    assert record.identifiers == {"email": "ada@example.com", "external_id": str(pk)}


def test_deleting_a_user_under_the_ignore_policy_records_nothing(alias: str, settings: Any) -> None:
    settings.MEISA_SYNC = {**settings.MEISA_SYNC, "DELETE_POLICY": "ignore"}
    user = make_user(alias)
    user.delete()
    assert records(alias) == []


def test_a_cascade_records_the_related_change_then_the_erasure(alias: str) -> None:
    user = make_user(alias)
    Subscription.objects.using(alias).create(user=user)
    OutboxRecord.objects.using(alias).all().delete()
    pk = str(user.pk)
    user.delete()
    # The worker keeps the newest operation of an object: the erasure.
    assert records(alias) == [(USER, pk, "upsert"), (USER, pk, "delete")]


def test_unwatched_models_record_nothing(alias: str) -> None:
    team = Team.objects.using(alias).create(name="analysts")
    team.delete()
    assert records(alias) == []


def test_raw_saves_record_nothing(alias: str) -> None:
    user = make_user(alias)
    User.save_base(user, raw=True, using=alias)
    assert records(alias) == []


def test_record_change_writes_serialised_extras_in_the_transaction(alias: str) -> None:
    from datetime import datetime, timezone

    user = make_user(alias)
    with transaction.atomic(using=alias):
        ids = record_change(
            user,
            extras={
                "churn_reason": "too_expensive",
                "churned_at": datetime(2026, 11, 26, 9, 30, tzinfo=timezone.utc),
                "previous_mrr": Decimal("49.00"),
            },
        )
    (record,) = outbox(alias)
    assert ids == [record.id]
    assert record.extras == {
        "churn_reason": "too_expensive",
        "churned_at": "2026-11-26T09:30:00Z",
        "previous_mrr": 49,
    }


def test_record_change_refuses_bad_extras_naming_the_field(alias: str) -> None:
    user = make_user(alias)
    with pytest.raises(PayloadError, match=r"^custom_fields\.tags: cannot send a list"):
        record_change(user, extras={"tags": ["a", "b"]})
    with pytest.raises(PayloadError, match=r"^custom_fields\.9lives: not a valid"):
        record_change(user, extras={"9lives": 1})
    assert records(alias) == []


def test_record_change_of_a_related_object_records_its_user(alias: str) -> None:
    user = make_user(alias)
    subscription = Subscription.objects.using(alias).create(user=user)
    OutboxRecord.objects.using(alias).all().delete()
    record_change(subscription, extras={"upgraded_at": "2026-11-26"})
    assert records(alias) == [(USER, str(user.pk), "upsert")]


def test_record_change_of_an_unwatched_model_says_what_to_do(alias: str) -> None:
    team = Team.objects.using(alias).create(name="analysts")
    with pytest.raises(ImproperlyConfigured, match=r"testapp\.Team is neither mapped nor watched"):
        record_change(team)


def test_queryset_update_records_nothing_until_record_queryset(alias: str) -> None:
    users = [make_user(alias, name) for name in ("ada", "bob", "cy")]
    with transaction.atomic(using=alias):
        trial = User.objects.using(alias).filter(username__in=["ada", "bob"])
        trial.update(last_name="Trial")
        assert records(alias) == []
        assert record_queryset(trial) == 2
    assert sorted(records(alias)) == sorted((USER, str(user.pk), "upsert") for user in users[:2])


def test_record_queryset_of_a_related_model_records_the_users(alias: str) -> None:
    ada, bob = make_user(alias, "ada"), make_user(alias, "bob")
    for user in (ada, bob):
        Subscription.objects.using(alias).create(user=user)
    OutboxRecord.objects.using(alias).all().delete()
    subscriptions = Subscription.objects.using(alias).all()
    subscriptions.update(plan="pro")
    assert record_queryset(subscriptions, priority=100) == 2
    assert sorted(records(alias)) == sorted(
        [(USER, str(ada.pk), "upsert"), (USER, str(bob.pk), "upsert")]
    )
    assert {record.priority for record in outbox(alias)} == {100}


class _TestAppRouter:
    """Sends every testapp model to one database."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        return self.alias if model._meta.app_label == "testapp" else None

    def db_for_write(self, model: type[Any], **hints: Any) -> str | None:
        return self.db_for_read(model)


@pytest.fixture
def routed(alias: str) -> Iterator[str]:
    with override_settings(DATABASE_ROUTERS=[_TestAppRouter(alias)]):
        yield alias


def test_a_routed_save_records_on_the_routed_database(routed: str) -> None:
    user = User(username="ada", email="ada@example.com")
    user.save()  # no `using`: the router picks the database
    subscription = Subscription(user=user)
    subscription.save()
    assert user._state.db == routed
    assert records(routed) == [(USER, str(user.pk), "upsert")] * 2
    for other in _configured(["default", "postgres", "mysql"]):
        if other != routed:
            assert records(other) == []


def _configured(aliases: list[str]) -> list[str]:
    from django.conf import settings

    return [alias for alias in aliases if alias in settings.DATABASES]
