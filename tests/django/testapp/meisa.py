"""The test project's mapping, found by the app's autodiscovery of ``meisa.py`` modules."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth import get_user_model

from meisa_sync.mapping import ContactMapping, CustomField, Field, Tags
from meisa_sync_django import register
from tests.django.testapp.models import Subscription


@register
class UserMapping(ContactMapping):
    model = get_user_model()
    related: ClassVar[dict[Any, str]] = {Subscription: "user"}

    email = Field("email")
    external_id = Field("id")
    first_name = Field("first_name")
    last_name = Field("last_name")
    plan = CustomField("subscription.plan", default="free")
    billing_cycle = CustomField("subscription.billing_cycle", default=None)
    mrr = CustomField("subscription.mrr", default=0)
    tags = Tags(lambda user: ["beta"] if user.is_beta else [], depends_on=["is_beta"])

    def should_sync(self, user: Any) -> bool:
        return not user.is_staff
