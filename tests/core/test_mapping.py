"""The declarative mapping: sources, defaults, transforms, tags, extras, and declaration errors.

Plain dataclasses stand in for the framework's models: the mapping reads attributes, nothing else.
"""

from __future__ import annotations

import datetime as dt
import enum
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from meisa_sync.contract import validate_upsert
from meisa_sync.exceptions import MappingDeclarationError, PayloadError
from meisa_sync.mapping import ContactMapping, CustomField, Field, Tags


class PlanName(enum.Enum):
    FREE = "free"
    PRO = "pro"


@dataclass
class Company:
    name: str
    country: str | None = None


@dataclass
class Subscription:
    plan: PlanName
    mrr: Decimal
    billing_cycle: str | None = None
    company: Company | None = None


@dataclass
class User:
    id: int
    email: str | None
    first_name: str = "John"
    last_name: str | None = "Doe"
    created_at: dt.datetime = dt.datetime(2024, 1, 15, 10, 30, tzinfo=dt.timezone.utc)
    subscription: Subscription | None = None
    is_beta: bool = False
    is_staff: bool = False
    labels: list[str] = field(default_factory=list)


class UserMapping(ContactMapping):
    model = User
    related: ClassVar[dict[Any, str]] = {Subscription: "user"}
    email = Field("email")
    external_id = Field("id")
    first_name = Field("first_name")
    last_name = Field("last_name", default=None)
    plan = CustomField("subscription.plan", default="free")
    mrr = CustomField("subscription.mrr", default=0)
    company = CustomField("subscription.company.name", name="company_name")
    signup_date = CustomField("created_at", transform=lambda d: d.date())
    full = CustomField(
        lambda u: f"{u.first_name} {u.last_name}",
        name="full_name",
        depends_on=["first_name", "last_name"],
    )
    tags = Tags(lambda u: ["beta"] if u.is_beta else [], depends_on=["is_beta"])

    def should_sync(self, user: Any) -> bool:
        return not user.is_staff


def pro_user(**changes: Any) -> User:
    subscription = Subscription(PlanName.PRO, Decimal("99.00"), "annual", Company("Acme"))
    return User(id=12345, email=" John@Example.com", subscription=subscription, **changes)


def declaration_error(**attributes: Any) -> str:
    with pytest.raises(MappingDeclarationError) as caught:
        type("BadMapping", (ContactMapping,), attributes)
    return str(caught.value)


def payload_error(mapping: ContactMapping, obj: Any, **kwargs: Any) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        mapping.build(obj, **kwargs)
    return caught.value


# --- building payloads -------------------------------------------------------------------------


def test_the_seed_user_becomes_the_seed_payload() -> None:
    payload = UserMapping().build(pro_user(is_beta=True))
    assert payload == {
        "email": "john@example.com",
        "external_id": "12345",
        "first_name": "John",
        "last_name": "Doe",
        "custom_fields": {
            "plan": "pro",
            "mrr": 99,
            "company_name": "Acme",
            "signup_date": "2024-01-15",
            "full_name": "John Doe",
        },
        "tag_names": ["beta"],
    }
    assert validate_upsert(payload) == payload


def test_paths_are_none_safe_across_relations() -> None:
    no_subscription = UserMapping().build(User(id=1, email="a@b.co"))
    assert no_subscription["custom_fields"]["plan"] == "free"
    assert no_subscription["custom_fields"]["mrr"] == 0
    assert no_subscription["custom_fields"]["company_name"] is None
    no_company = pro_user()
    assert no_company.subscription is not None
    no_company.subscription.company = None
    assert UserMapping().build(no_company)["custom_fields"]["company_name"] is None


class MissingRelationError(AttributeError):
    """Like Django's RelatedObjectDoesNotExist: a declared relation with no row behind it."""


class Profile:
    def __init__(self, id: int, bio: str | None = None) -> None:
        self.id = id
        self._bio = bio

    @property
    def details(self) -> Any:
        if self._bio is None:
            raise MissingRelationError("Profile has no details")
        return Company(self._bio)


class ProfileMapping(ContactMapping):
    external_id = Field("id")
    bio = CustomField("details.name", default="none yet")
    owner = CustomField("owner.name")


def test_a_declared_relation_that_raises_attribute_error_counts_as_missing() -> None:
    # ``owner`` is no attribute of Profile at all: that stays an error (see the typo test below).
    mapping = type("M", (ContactMapping,), {"external_id": Field("id"), "bio": ProfileMapping.bio})
    assert mapping().build(Profile(1))["custom_fields"] == {"bio": "none yet"}
    assert mapping().build(Profile(1, "hello"))["custom_fields"] == {"bio": "hello"}


def test_a_typo_in_a_path_names_the_field_and_the_source() -> None:
    error = payload_error(ProfileMapping(), Profile(1))
    assert error.field == "custom_fields.owner"
    assert "source 'owner.name'" in str(error)
    assert "AttributeError" in str(error)
    assert isinstance(error.__cause__, AttributeError)


def test_a_failing_callable_names_the_field() -> None:
    def explode(user: Any) -> Any:
        raise RuntimeError("boom")

    mapping = type(
        "M", (ContactMapping,), {"external_id": Field("id"), "score": CustomField(explode)}
    )
    error = payload_error(mapping(), pro_user())
    assert error.field == "custom_fields.score"
    assert "explode" in str(error)
    assert "RuntimeError: boom" in str(error)


def test_defaults_callables_and_transforms() -> None:
    calls: list[int] = []

    def next_value() -> int:
        calls.append(1)
        return len(calls)

    mapping = type(
        "M",
        (ContactMapping,),
        {
            "external_id": Field("id"),
            "counter": CustomField("subscription.billing_cycle", default=next_value),
            # The transform runs on the source's value only, never on the default.
            "cycle": CustomField("subscription.billing_cycle", default=0, transform=str.upper),
            "zero": CustomField("subscription.mrr", default=7),
        },
    )()
    without = mapping.build(User(id=1, email=None))["custom_fields"]
    assert without == {"counter": 1, "cycle": 0, "zero": 7}
    assert mapping.build(User(id=1, email=None))["custom_fields"]["counter"] == 2
    zero = pro_user()
    assert zero.subscription is not None
    zero.subscription.mrr = Decimal(0)
    with_values = mapping.build(zero)["custom_fields"]
    assert with_values == {"counter": "annual", "cycle": "ANNUAL", "zero": 0}


def test_a_failing_transform_or_default_names_the_field() -> None:
    mapping = type(
        "M",
        (ContactMapping,),
        {
            "external_id": Field("id"),
            "when": CustomField("first_name", transform=lambda s: s.date()),
        },
    )()
    error = payload_error(mapping, pro_user())
    assert error.field == "custom_fields.when"
    assert "transform" in str(error)

    def broken() -> Any:
        raise LookupError("no default today")

    mapping = type(
        "M",
        (ContactMapping,),
        {"external_id": Field("id"), "when": CustomField("subscription", default=broken)},
    )()
    error = payload_error(mapping, User(id=1, email=None))
    assert error.field == "custom_fields.when"
    assert "LookupError: no default today" in str(error)


def test_unserialisable_values_name_the_field_and_the_type() -> None:
    error = payload_error(UserMapping(), pro_user(first_name=["John"]))
    assert error.field == "first_name"
    error = payload_error(
        type(
            "M", (ContactMapping,), {"external_id": Field("id"), "c": CustomField("subscription")}
        )(),
        pro_user(),
    )
    assert error.field == "custom_fields.c"
    assert "Subscription" in str(error)


def test_identifiers_that_are_none_are_left_out() -> None:
    payload = UserMapping().build(User(id=7, email=None))
    assert "email" not in payload
    assert payload["external_id"] == "7"
    assert payload["last_name"] == "Doe"
    assert UserMapping().build(User(id=7, email="a@b.co", last_name=None))["last_name"] is None


def test_blank_identifiers_count_as_missing() -> None:
    # Django's AbstractUser.email defaults to "": such a user is addressed by external_id alone.
    assert UserMapping().identifiers(User(id=7, email="  ")) == {"external_id": "7"}
    assert "email" not in UserMapping().build(User(id=7, email=""))
    by_code = type("M", (ContactMapping,), {"email": Field("email"), "external_id": Field("code")})
    error = payload_error(by_code(), SimpleNamespace(email="", code=" "))
    assert error.field == "email"
    assert "no identifier: email and external_id are empty" in str(error)


def test_invalid_identifiers_are_refused() -> None:
    error = payload_error(UserMapping(), User(id=7, email="not-an-address"))
    assert error.field == "email"
    email_only = type("M", (ContactMapping,), {"email": Field("email")})()
    error = payload_error(email_only, User(id=7, email=None))
    assert error.field == "email"
    assert "no identifier" in str(error)


def test_identifiers_read_only_the_identifier_fields() -> None:
    class Guarded:
        id = 42
        email = " Ann@Example.com "

        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"identifiers() read {name}")

    assert UserMapping().identifiers(Guarded()) == {"email": "ann@example.com", "external_id": "42"}
    assert UserMapping().identifiers(User(id=3, email=None)) == {"external_id": "3"}
    email_only = type("M", (ContactMapping,), {"email": Field("email")})()
    with pytest.raises(PayloadError, match="no identifier"):
        email_only.identifiers(User(id=3, email=None))


def test_extras_are_merged_over_the_mapped_custom_fields() -> None:
    extras = {"churn_reason": "too_expensive", "plan": "churned", "churned_at": dt.date(2024, 3, 1)}
    payload = UserMapping().build(pro_user(), extras=extras)
    custom = payload["custom_fields"]
    assert custom["plan"] == "churned"
    assert custom["churn_reason"] == "too_expensive"
    assert custom["churned_at"] == "2024-03-01"
    assert validate_upsert(payload) == payload


def test_bad_extras_name_their_key() -> None:
    assert payload_error(UserMapping(), pro_user(), extras={"bad-key": 1}).field == (
        "custom_fields.bad-key"
    )
    assert payload_error(UserMapping(), pro_user(), extras={"nested": {"a": 1}}).field == (
        "custom_fields.nested"
    )
    assert payload_error(UserMapping(), pro_user(), extras={"x": float("nan")}).field == (
        "custom_fields.x"
    )
    many = {f"extra_{i}": i for i in range(196)}
    error = payload_error(UserMapping(), pro_user(), extras=many)
    assert error.field == "custom_fields"
    assert "at most 200" in str(error)


def test_a_mapping_without_custom_fields_sends_none() -> None:
    plain = type("M", (ContactMapping,), {"external_id": Field("id")})()
    assert plain.build(pro_user()) == {"external_id": "12345"}
    assert plain.build(pro_user(), extras={"a": 1}) == {
        "external_id": "12345",
        "custom_fields": {"a": 1},
    }


def test_naive_datetimes_use_the_mapping_timezone() -> None:
    class ParisMapping(ContactMapping):
        timezone = "Europe/Paris"
        external_id = Field("id")
        created = CustomField("created_at")

    naive = pro_user(created_at=dt.datetime(2024, 1, 15, 11, 30))
    assert ParisMapping().build(naive)["custom_fields"]["created"] == "2024-01-15T10:30:00Z"
    utc = type(
        "M", (ContactMapping,), {"external_id": Field("id"), "created": ParisMapping.created}
    )
    assert utc().build(naive)["custom_fields"]["created"] == "2024-01-15T11:30:00Z"
    zone_object = type(
        "M",
        (ContactMapping,),
        {
            "timezone": zoneinfo.ZoneInfo("Asia/Tokyo"),
            "external_id": Field("id"),
            "c": ParisMapping.created,
        },
    )
    assert zone_object().build(naive)["custom_fields"]["c"] == "2024-01-15T02:30:00Z"


def test_an_oversized_payload_is_refused() -> None:
    attributes: dict[str, Any] = {"external_id": Field("id")}
    for index in range(120):
        attributes[f"text_{index}"] = CustomField(lambda u: "ü" * 10_000)
    error = payload_error(type("Big", (ContactMapping,), attributes)(), pro_user())
    assert error.field == "body"
    assert "1048576" in str(error)


# --- tags ----------------------------------------------------------------------------------------


class TagMapping(ContactMapping):
    external_id = Field("id")
    tags = Tags("labels")


def test_tags_are_trimmed_deduplicated_and_sorted() -> None:
    user = pro_user(labels=[" VIP", "beta", "vip", PlanName.PRO, "Beta "])
    assert TagMapping().build(user)["tag_names"] == ["beta", "pro", "VIP"]


def test_no_tags_means_no_tag_names() -> None:
    assert "tag_names" not in TagMapping().build(pro_user())
    none_source = type(
        "M", (ContactMapping,), {"external_id": Field("id"), "t": Tags("subscription.company")}
    )
    assert "tag_names" not in none_source().build(User(id=1, email=None))


def test_bad_tags_name_their_index() -> None:
    error = payload_error(TagMapping(), pro_user(labels=["ok", "", "x"]))
    assert error.field == "tag_names[1]"
    error = payload_error(TagMapping(), pro_user(labels=["ok", "x" * 101]))
    assert error.field == "tag_names[1]"
    error = payload_error(TagMapping(), pro_user(labels=["ok", 3.5]))
    assert error.field == "tag_names[1]"
    too_many = [f"tag-{i}" for i in range(51)]
    assert "at most 50" in str(payload_error(TagMapping(), pro_user(labels=too_many)))


def test_a_single_string_is_not_a_list_of_tags() -> None:
    single = type("M", (ContactMapping,), {"external_id": Field("id"), "t": Tags("first_name")})
    error = payload_error(single(), pro_user())
    assert error.field == "tag_names"
    assert "wrap a single tag in a list" in str(error)


def test_a_failing_tag_generator_names_tag_names() -> None:
    def tags(user: Any) -> Iterator[str]:
        yield "ok"
        raise KeyError("gone")

    mapping = type("M", (ContactMapping,), {"external_id": Field("id"), "t": Tags(tags)})
    error = payload_error(mapping(), pro_user())
    assert error.field == "tag_names"
    assert "KeyError" in str(error)


# --- should_sync, introspection, inheritance -----------------------------------------------------


def test_should_sync() -> None:
    assert UserMapping().should_sync(pro_user())
    assert not UserMapping().should_sync(pro_user(is_staff=True))
    assert TagMapping().should_sync(pro_user(is_staff=True))


def test_related_paths_and_local_attributes() -> None:
    mapping = UserMapping()
    assert mapping.related_paths == {"subscription", "subscription.company"}
    assert mapping.local_attributes == frozenset(
        {"email", "id", "first_name", "last_name", "subscription", "created_at", "is_beta"}
    )
    unknowable = type(
        "M", (ContactMapping,), {"external_id": Field("id"), "x": CustomField(lambda u: u.id)}
    )()
    assert unknowable.local_attributes is None
    deep = type(
        "M",
        (ContactMapping,),
        {
            "external_id": Field("id"),
            "x": CustomField(lambda u: u.a.b.c, depends_on=["account.owner.name"]),
        },
    )()
    assert deep.related_paths == {"account", "account.owner"}
    assert deep.local_attributes == {"id", "account"}
    assert type(mapping).model is User
    assert type(mapping).related == {Subscription: "user"}


def test_subclasses_add_override_and_drop_fields() -> None:
    class WithCycle(UserMapping):
        cycle = CustomField("subscription.billing_cycle")
        plan = CustomField("subscription.plan", default="none")
        full = None  # type: ignore[assignment]

    payload = WithCycle().build(User(id=1, email=None))
    assert payload["custom_fields"]["cycle"] is None
    assert payload["custom_fields"]["plan"] == "none"
    assert "full_name" not in payload["custom_fields"]
    assert "full" not in WithCycle().declarations
    assert UserMapping().build(User(id=1, email=None))["custom_fields"]["plan"] == "free"
    assert WithCycle().local_attributes is not None


def test_abstract_bases() -> None:
    class Common(ContactMapping, abstract=True):
        plan = CustomField("subscription.plan", default="free")

    class Concrete(Common):
        external_id = Field("id")

    assert Concrete().build(User(id=1, email=None)) == {
        "external_id": "1",
        "custom_fields": {"plan": "free"},
    }
    with pytest.raises(MappingDeclarationError, match="abstract"):
        Common()
    with pytest.raises(MappingDeclarationError, match="abstract"):
        ContactMapping()
    with pytest.raises(MappingDeclarationError, match="maps no identifier"):
        type("StillAbstract", (Common,), {})


def test_repr_lists_the_declarations() -> None:
    assert repr(TagMapping()) == "<TagMapping external_id, tags>"
    assert repr(UserMapping.plan) == "CustomField('subscription.plan')"


# --- declaration errors --------------------------------------------------------------------------


def test_a_misspelt_contact_field_suggests_the_fix() -> None:
    message = declaration_error(emial=Field("email"), external_id=Field("id"))
    assert "BadMapping.emial" in message
    assert "did you mean email?" in message
    assert "custom fields are declared with CustomField" in message


def test_field_is_only_for_contact_fields() -> None:
    message = declaration_error(external_id=Field("id"), plan=Field("subscription.plan"))
    assert "'plan' is not a contact field" in message
    assert "CustomField" in message


def test_no_identifier() -> None:
    message = declaration_error(first_name=Field("first_name"))
    assert "maps no identifier" in message
    assert "external_id = Field('id')" in message


@pytest.mark.parametrize(
    ("attribute", "declaration", "expected"),
    [
        ("plan_type", CustomField("x", name="plan-type"), "'plan-type' (name=)"),
        ("_9", CustomField("x", name="9lives"), "not a valid custom field name"),
        ("long", CustomField("x", name="a" * 65), "not a valid custom field name"),
        ("email_", CustomField("x", name="email"), "is a contact field"),
        ("build", CustomField("x"), "is a ContactMapping attribute"),
    ],
)
def test_bad_custom_field_names(attribute: str, declaration: CustomField, expected: str) -> None:
    message = declaration_error(external_id=Field("id"), **{attribute: declaration})
    assert f"BadMapping.{attribute}" in message
    assert expected in message


def test_duplicate_custom_field_names() -> None:
    message = declaration_error(
        external_id=Field("id"), plan=CustomField("a"), other=CustomField("b", name="plan")
    )
    assert "already mapped by plan" in message


def test_several_tags() -> None:
    message = declaration_error(external_id=Field("id"), a=Tags("x"), b=Tags("y"))
    assert "Tags is declared 2 times (a, b)" in message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("", "not a dotted attribute path"),
        ("subscription..plan", "not a dotted attribute path"),
        ("subscription.plan ", "not a dotted attribute path"),
        ("2fa", "not a dotted attribute path"),
        (42, "not int (42)"),
        (None, "not NoneType"),
    ],
)
def test_bad_sources(source: Any, expected: str) -> None:
    message = declaration_error(external_id=Field("id"), x=CustomField(source))
    assert "BadMapping.x" in message
    assert expected in message


def test_bad_transform_and_depends_on() -> None:
    assert "transform must be a callable" in declaration_error(
        external_id=Field("id", transform="upper")  # type: ignore[arg-type]
    )
    assert "depends_on is only for callable sources" in declaration_error(
        external_id=Field("id", depends_on=["id"])
    )
    assert "depends_on=['first_name'], not str" in declaration_error(
        external_id=Field("id"), x=CustomField(lambda u: 1, depends_on="first_name")
    )
    assert "must be a list of attribute names" in declaration_error(
        external_id=Field("id"),
        x=CustomField(lambda u: 1, depends_on=3),  # type: ignore[arg-type]
    )
    assert "depends_on holds 3" in declaration_error(
        external_id=Field("id"),
        x=CustomField(lambda u: 1, depends_on=["id", 3]),  # type: ignore[list-item]
    )
    assert "'a b'" in declaration_error(
        external_id=Field("id"), x=CustomField(lambda u: 1, depends_on=["a b"])
    )


def test_an_uninstantiated_declaration() -> None:
    message = declaration_error(external_id=Field)
    assert "instantiate it" in message
    assert "external_id = Field('external_id')" in message


@pytest.mark.parametrize(
    ("related", "expected"),
    [
        ([Subscription], "must be a dict"),
        ({Subscription: ""}, "not a dotted path"),
        ({Subscription: 3}, "not a dotted path"),
        ({3: "user"}, "not a model class"),
    ],
)
def test_bad_related(related: Any, expected: str) -> None:
    assert expected in declaration_error(external_id=Field("id"), related=related)


def test_bad_timezone() -> None:
    assert "unknown time zone 'Mars/Olympus'" in declaration_error(
        external_id=Field("id"), timezone="Mars/Olympus"
    )
    assert "must be an IANA zone name" in declaration_error(external_id=Field("id"), timezone=5)


def test_too_many_custom_fields() -> None:
    fields = {f"f{i}": CustomField("id") for i in range(201)}
    assert "201 custom fields" in declaration_error(external_id=Field("id"), **fields)
