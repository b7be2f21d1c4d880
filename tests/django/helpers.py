"""Small helpers shared by the Django app's tests."""

from __future__ import annotations

from typing import Any

from meisa_sync_django.models import OutboxRecord
from tests.django.testapp.models import User

USER = "testapp.User"


def records(alias: str) -> list[tuple[str, str, str]]:
    """The outbox on ``alias`` as (model, object_pk, operation), oldest first."""
    return list(
        OutboxRecord.objects.using(alias)
        .order_by("id")
        .values_list("model", "object_pk", "operation")
    )


def outbox(alias: str) -> list[OutboxRecord]:
    return list(OutboxRecord.objects.using(alias).order_by("id"))


def make_user(alias: str, name: str = "ada", **fields: Any) -> User:
    """A saved user (which records one change); the outbox is emptied afterwards."""
    fields.setdefault("email", f"{name}@example.com")
    fields.setdefault("first_name", name.title())
    user: User = User.objects.db_manager(alias).create_user(username=name, **fields)
    OutboxRecord.objects.using(alias).all().delete()
    return user
