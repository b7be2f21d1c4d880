"""Registration: discovery of meisa.py modules, explicit registration, MAPPINGS, proxies."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

import pytest

from meisa_sync.mapping import ContactMapping, Field
from meisa_sync_django import register
from meisa_sync_django.exceptions import ImproperlyConfigured
from meisa_sync_django.registry import MappingRegistry, registry
from meisa_sync_django.source import relation_lookup
from tests.django.helpers import USER, records
from tests.django.testapp.meisa import UserMapping
from tests.django.testapp.models import BetaUser, Invoice, Subscription, Team, User


def test_meisa_py_modules_are_discovered_at_start() -> None:
    mappings = registry.by_label()
    assert list(mappings) == [USER]
    assert isinstance(mappings[USER], UserMapping)


def test_a_second_registration_of_a_mapping_is_ignored() -> None:
    assert register(UserMapping) is UserMapping
    registry.load_settings_mappings(("tests.django.testapp.meisa.UserMapping",))
    assert len(registry.mapped_models()) == 1


def test_registering_something_else_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="takes a ContactMapping subclass or instance"):
        register(User)


def test_a_settings_entry_that_does_not_import_names_itself() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"'nowhere\.Mapping', which cannot be imported"):
        MappingRegistry().load_settings_mappings(("nowhere.Mapping",))


def test_two_mappings_of_one_model_are_refused() -> None:
    class OtherUserMapping(ContactMapping):
        model = User
        email = Field("email")

    local = MappingRegistry()
    local.register(UserMapping)
    local.register(OtherUserMapping)
    with pytest.raises(ImproperlyConfigured, match=r"testapp\.User is mapped twice"):
        local.mapped_models()


def test_a_string_model_reference_resolves() -> None:
    class TeamMapping(ContactMapping):
        model = "testapp.Team"
        external_id = Field("id")

    local = MappingRegistry()
    local.register(TeamMapping)
    (mapped,) = local.mapped_models()
    assert (mapped.label, mapped.model) == ("testapp.Team", Team)


def test_a_related_path_must_be_a_relation() -> None:
    class BadRelated(ContactMapping):
        model = User
        related: ClassVar[dict[Any, str]] = {Team: "name"}
        email = Field("email")

    local = MappingRegistry()
    local.register(BadRelated)
    with pytest.raises(ImproperlyConfigured, match="must be a ForeignKey or OneToOneField"):
        local.mapped_models()


@pytest.mark.django_db
def test_a_mapping_registered_after_start_records_at_once() -> None:
    class TeamMapping(ContactMapping):
        model = Team
        external_id = Field("id")

    register(TeamMapping)
    try:
        team = Team.objects.create(name="analysts")
        assert records("default") == [("testapp.Team", str(team.pk), "upsert")]
    finally:
        registry.unregister(TeamMapping)
    Team.objects.create(name="no longer mapped")
    assert len(records("default")) == 1


@pytest.mark.django_db
def test_a_proxy_save_records_its_concrete_model() -> None:
    beta = BetaUser.objects.create(username="ada", email="ada@example.com")
    pk = str(beta.pk)
    beta.delete()
    assert records("default") == [(USER, pk, "upsert"), (USER, pk, "delete")]


def test_a_related_path_of_several_steps_reaches_the_user() -> None:
    class InvoiceWatching(ContactMapping):
        model = User
        related: ClassVar[dict[Any, str]] = {Invoice: "subscription.user"}
        email = Field("email")

    local = MappingRegistry()
    local.register(InvoiceWatching)
    local.mapped_models()
    (watch,) = local.for_sender(Invoice)[1]
    assert watch.fk_attname is None
    user = User(pk=7)
    invoice = Invoice(subscription=Subscription(user=user), amount=Decimal("9.00"))
    assert watch.target_pk(invoice) == 7
    assert watch.target_pk(Invoice(amount=Decimal("1"))) is None


def test_the_source_joins_single_valued_paths_and_prefetches_the_rest() -> None:
    assert relation_lookup(User, "subscription") == (True, "subscription")
    assert relation_lookup(Invoice, "subscription.user") == (True, "subscription__user")
    assert relation_lookup(Subscription, "invoices") == (False, "invoices")
    assert relation_lookup(User, "subscription.plan") == (True, "subscription")
    assert relation_lookup(User, "email") is None
    assert relation_lookup(User, "full_name") is None
