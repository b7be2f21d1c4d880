"""What a demo user looks like in Meisa: the whole integration is this class and one registration.

::

    sync = SQLAlchemySync(engine, [UserMapping()])
"""

from __future__ import annotations

from typing import ClassVar

from meisa_sync.demo.models import Subscription, User
from meisa_sync.mapping import ContactMapping, CustomField, Field

__all__ = ["UserMapping"]


class UserMapping(ContactMapping):
    model = User
    # A subscription change is a change of its user's contact.
    related: ClassVar[dict[type, str]] = {Subscription: "user"}

    email = Field("email")
    external_id = Field("id")
    first_name = Field("first_name")
    last_name = Field("last_name")
    plan = CustomField("subscription.plan", default="free")
    mrr = CustomField("subscription.mrr", default=0)
    billing_cycle = CustomField("subscription.billing_cycle")
    signup_date = CustomField("created_at", transform=lambda moment: moment.date())

    def should_sync(self, user: User) -> bool:
        return not user.is_staff
