"""A custom user model and the subscription a mapping reads through it."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """The project's ``AUTH_USER_MODEL``."""

    is_beta = models.BooleanField(default=False)
    nickname = models.CharField(max_length=50, blank=True, help_text="Not mapped.")


class Subscription(models.Model):
    """A watched related model: saving it records its user."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="subscription")
    plan = models.CharField(max_length=20, default="free")
    billing_cycle = models.CharField(max_length=10, default="monthly")
    mrr = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0"))


class Team(models.Model):
    """Not mapped, not watched: its saves record nothing."""

    name = models.CharField(max_length=50)


class BetaUser(User):
    """A proxy: its saves are saves of ``User``."""

    class Meta:
        proxy = True


class Invoice(models.Model):
    """Two steps from the user: a related path through a related model."""

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="invoices"
    )
    amount = models.DecimalField(max_digits=8, decimal_places=2)
