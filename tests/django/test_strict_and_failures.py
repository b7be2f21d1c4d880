"""Strict mode refuses bad saves; without it, a mapping that fails never breaks a save."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction

from meisa_sync.exceptions import StrictModeError
from meisa_sync_django.models import OutboxRecord
from tests.django.helpers import USER, make_user, outbox, records
from tests.django.testapp.models import Subscription, User

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture
def strict(settings: Any) -> Iterator[None]:
    settings.MEISA_SYNC = {**settings.MEISA_SYNC, "STRICT": True}
    yield


def test_without_strict_mode_an_unbuildable_user_still_saves_and_records(alias: str) -> None:
    user = User.objects.db_manager(alias).create_user(username="ada", email="not-an-email")
    assert User.objects.using(alias).filter(pk=user.pk).exists()
    assert records(alias) == [(USER, str(user.pk), "upsert")]


def test_without_strict_mode_a_delete_whose_identifiers_fail_still_deletes(
    alias: str, caplog: pytest.LogCaptureFixture
) -> None:
    user = make_user(alias, email="not-an-email")
    pk = user.pk
    user.delete()
    assert not User.objects.using(alias).filter(pk=pk).exists()
    (record,) = outbox(alias)
    # No identifiers to erase with: the worker marks the record dead, where an admin sees it.
    assert (record.operation, record.identifiers) == ("delete", None)
    assert "cannot capture the identifiers" in caplog.text


@pytest.mark.usefixtures("strict")
def test_strict_mode_refuses_a_save_the_mapping_cannot_build(alias: str) -> None:
    with pytest.raises(StrictModeError, match=r"testapp\.User:None: .* email"):
        User.objects.db_manager(alias).create_user(username="ada", email="not-an-email")
    assert not User.objects.using(alias).exists()
    assert records(alias) == []


@pytest.mark.usefixtures("strict")
def test_strict_mode_lets_good_saves_through(alias: str) -> None:
    user = User.objects.db_manager(alias).create_user(username="ada", email="ada@example.com")
    assert records(alias) == [(USER, str(user.pk), "upsert")]


@pytest.mark.usefixtures("strict")
def test_strict_mode_skips_users_the_mapping_does_not_sync(alias: str) -> None:
    User.objects.db_manager(alias).create_user(username="ops", email="nope", is_staff=True)
    assert User.objects.using(alias).count() == 1


def test_strict_mode_checks_a_related_save_against_its_user(alias: str, settings: Any) -> None:
    user = make_user(alias, email="not-an-email")
    settings.MEISA_SYNC = {**settings.MEISA_SYNC, "STRICT": True}
    with pytest.raises(StrictModeError, match="email"), transaction.atomic(using=alias):
        Subscription.objects.using(alias).create(user=user, plan="pro")
    assert not Subscription.objects.using(alias).exists()
    assert records(alias) == []


def test_strict_mode_refuses_a_delete_it_could_not_erase(alias: str, settings: Any) -> None:
    user = make_user(alias, email="not-an-email")
    settings.MEISA_SYNC = {**settings.MEISA_SYNC, "STRICT": True}
    # The delete runs in Django's own atomic block, so the error rolls back the caller's
    # transaction too: as in any test, contain it in a block of its own.
    with pytest.raises(StrictModeError, match="cannot capture the identifiers"):
        with transaction.atomic(using=alias):
            user.delete()
    assert User.objects.using(alias).filter(pk=user.pk).exists()
    assert not OutboxRecord.objects.using(alias).exists()
