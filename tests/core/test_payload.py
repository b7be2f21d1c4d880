"""Canonical JSON and hashes, and the property that ties the mapping to the contract.

The property: for arbitrary objects, every payload ``build`` returns passes ``validate_upsert`` and
an independent check written here from CONTRACT.md §4; otherwise ``build`` raises a PayloadError
whose field names the bad value's path, which the test proves by repairing that one value and
building again.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import re
import uuid
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from meisa_sync.contract import validate_upsert
from meisa_sync.exceptions import PayloadError
from meisa_sync.mapping import ContactMapping, CustomField, Field, Tags
from meisa_sync.payload import canonical_json, check_body_size, payload_hash

# --- canonical JSON ------------------------------------------------------------------------------


def test_canonical_json_sorts_keys_and_has_no_spaces() -> None:
    payload = {"email": "a@b.co", "custom_fields": {"z": 1, "a": [1, 2]}, "b": None}
    assert (
        canonical_json(payload) == '{"b":null,"custom_fields":{"a":[1,2],"z":1},"email":"a@b.co"}'
    )


def test_canonical_json_keeps_unicode() -> None:
    assert canonical_json({"name": "Zoë 東京"}) == '{"name":"Zoë 東京"}'


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": math.nan})


def test_numbers_hash_by_value_but_types_still_count() -> None:
    assert payload_hash({"mrr": 99}) == payload_hash({"mrr": 99.0})
    assert canonical_json({"mrr": 99.0}) == '{"mrr":99}'
    assert payload_hash({"mrr": 99}) != payload_hash({"mrr": "99"})
    assert payload_hash({"mrr": 1}) != payload_hash({"mrr": True})
    assert payload_hash({"mrr": 99.5}) != payload_hash({"mrr": 99})


def test_payload_hash_is_sha256_hex() -> None:
    digest = payload_hash({"email": "a@b.co"})
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars.filter(lambda v: not (isinstance(v, float) and math.isinf(v))),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6), st.randoms())
def test_equal_payloads_hash_equally_whatever_the_key_order(
    payload: dict[str, Any], random: Any
) -> None:
    items = list(payload.items())
    random.shuffle(items)
    shuffled = dict(items)
    assert payload_hash(shuffled) == payload_hash(payload)
    assert json.loads(canonical_json(payload)) == payload


def test_body_size_limit() -> None:
    check_body_size({"custom_fields": {"a": "x" * 1_000_000}})
    with pytest.raises(PayloadError) as caught:
        check_body_size({"custom_fields": {"a": "x" * 1_048_576}})
    assert caught.value.field == "body"


# --- the property: build() output is always valid, or the error names the culprit ----------------


class Colour(enum.Enum):
    RED = "red"
    NUMBER = 7
    BAD = object()


@dataclass
class Related:
    value: Any = None


@dataclass
class Thing:
    email: Any
    external_id: Any
    first_name: Any
    last_name: Any
    c0: Any
    c1: Any
    c2: Any
    labels: Any
    sub: Related | None = None


class ThingMapping(ContactMapping):
    timezone = "America/New_York"
    email = Field("email")
    external_id = Field("external_id")
    first_name = Field("first_name")
    last_name = Field("last_name")
    c0 = CustomField("c0")
    c1 = CustomField("c1", default=0)
    c2 = CustomField("c2", transform=lambda value: value)
    rel = CustomField("sub.value", default="none")
    tags = Tags("labels")


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Good values nine times in ten, so that whole objects are often entirely valid."""
    return st.integers(0, 9).flatmap(lambda n: bad if n == 0 else good)


GOOD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.decimals(
        places=2, allow_nan=False, allow_infinity=False, max_value=10**9, min_value=-(10**9)
    ),
    st.dates(),
    st.datetimes(
        dt.datetime(1, 1, 2), dt.datetime(9999, 12, 30), timezones=st.none() | st.timezones()
    ),
    st.times(),
    st.uuids(),
    st.sampled_from([Colour.RED, Colour.NUMBER]),
)
BAD_VALUES = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, "x" * 10_001, Colour.BAD]),
    st.decimals(),
    st.datetimes(timezones=st.timezones()),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.binary(max_size=4),
    st.builds(object),
    st.timedeltas(),
)
ANY_VALUES = mostly(GOOD_VALUES, BAD_VALUES)
EMAILS = mostly(
    st.emails() | st.emails().map(lambda e: f"  {e.upper()} ") | st.none(),
    st.sampled_from(["no-at-sign", "a@b@c.d", "@x.io", "a@localhost", "", f"{'a' * 250}@x.io"])
    | ANY_VALUES,
)
EXTERNAL_IDS = mostly(
    st.integers() | st.from_regex(r"[A-Za-z0-9_]{1,20}", fullmatch=True) | st.uuids(),
    st.sampled_from(["x" * 256, "  ", True, 1.5, None]) | ANY_VALUES,
)
NAMES = mostly(st.none() | st.text(max_size=30), st.just("n" * 256) | BAD_VALUES | GOOD_VALUES)
TAG_NAMES = mostly(
    st.from_regex(r"[a-z][a-z0-9 -]{0,11}", fullmatch=True) | st.just(Colour.RED),
    st.sampled_from(["", "  ", "t" * 101, 3, None]) | ANY_VALUES,
)
TAG_LISTS = mostly(
    st.lists(TAG_NAMES, max_size=6) | st.frozensets(st.text("abc", min_size=1, max_size=2)),
    st.lists(st.text("abcdef", min_size=2, max_size=3), min_size=60, max_size=70)
    | st.text(max_size=5)
    | ANY_VALUES,
)
EXTRA_KEYS = mostly(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True) | st.sampled_from(["c0", "rel"]),
    st.sampled_from(["bad-key", "", "9lives", "a" * 65]),
)
THINGS = st.builds(
    Thing,
    email=EMAILS,
    external_id=EXTERNAL_IDS,
    first_name=NAMES,
    last_name=NAMES,
    c0=ANY_VALUES,
    c1=ANY_VALUES,
    c2=ANY_VALUES,
    labels=TAG_LISTS,
    sub=st.none() | st.builds(Related, value=ANY_VALUES),
)
EXTRAS = st.none() | st.dictionaries(EXTRA_KEYS, ANY_VALUES, max_size=4)

CUSTOM_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def check_against_the_contract(payload: dict[str, Any]) -> None:
    """CONTRACT.md §4, written out independently of meisa_sync.contract."""
    assert set(payload) <= {
        "email",
        "external_id",
        "first_name",
        "last_name",
        "custom_fields",
        "tag_names",
    }
    assert "email" in payload or "external_id" in payload
    if "email" in payload:
        email = payload["email"]
        assert isinstance(email, str)
        assert email == email.strip().lower()
        assert len(email) <= 254
        local, at, domain = email.partition("@")
        assert at and local and "@" not in domain and "." in domain
    if "external_id" in payload:
        external_id = payload["external_id"]
        assert isinstance(external_id, str)
        assert external_id == external_id.strip()
        assert 1 <= len(external_id) <= 255
    for name in ("first_name", "last_name"):
        if name in payload:
            assert payload[name] is None or (
                isinstance(payload[name], str) and len(payload[name]) <= 255
            )
    custom = payload.get("custom_fields", {})
    assert isinstance(custom, dict)
    assert len(custom) <= 200
    for key, value in custom.items():
        assert CUSTOM_KEY.match(key)
        assert value is None or type(value) in (bool, int, float, str)
        if isinstance(value, float):
            assert math.isfinite(value)
        if isinstance(value, str):
            assert len(value) <= 10_000
    tags = payload.get("tag_names", [])
    assert isinstance(tags, list)
    assert len(tags) <= 50
    assert all(isinstance(tag, str) and 1 <= len(tag) <= 100 for tag in tags)
    assert len(json.dumps(payload, allow_nan=False).encode()) <= 1_048_576


def repaired(thing: Thing, extras: dict[str, Any] | None, path: str) -> tuple[Thing, Any]:
    """The same input with the value at payload ``path`` replaced by a known-good one."""
    extras = dict(extras or {})
    if path == "email":
        return replace(thing, email="ok@example.com"), extras
    if path in ("external_id", "first_name", "last_name"):
        fine: dict[str, Any] = {path: "fine"}
        return replace(thing, **fine), extras
    if path.startswith("tag_names"):
        return replace(thing, labels=["fine"]), extras
    if path.startswith("custom_fields."):
        key = path.removeprefix("custom_fields.")
        extras.pop(key, None)
        if key in ("c0", "c1", "c2"):
            one: dict[str, Any] = {key: 1}
            return replace(thing, **one), extras
        if key == "rel":
            return replace(thing, sub=Related(1)), extras
        return thing, extras
    raise AssertionError(f"build named {path!r}, which is no path of this mapping")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(THINGS, EXTRAS)
def test_build_is_valid_or_names_the_culprit(thing: Thing, extras: dict[str, Any] | None) -> None:
    mapping = ThingMapping()
    try:
        payload = mapping.build(thing, extras)
    except PayloadError as error:
        event(f"refused: {error.field.split('[')[0]}")
        assert str(error).startswith(f"{error.field}: ")
        fixed_thing, fixed_extras = repaired(thing, extras, error.field)
        try:
            mapping.build(fixed_thing, fixed_extras)
        except PayloadError as again:
            assert again.field != error.field, (error, again)
        return
    event("built")
    check_against_the_contract(payload)
    assert validate_upsert(payload) == payload
    assert json.loads(canonical_json(payload)) == payload
    assert mapping.build(thing, extras) == payload


def test_the_property_covers_both_outcomes() -> None:
    good = Thing(
        email="A@B.co",
        external_id=5,
        first_name="Ann",
        last_name=None,
        c0=Decimal("1.5"),
        c1=dt.datetime(2024, 1, 15, 5, 30),
        c2=uuid.UUID(int=1),
        labels=["x", Colour.RED],
    )
    payload = ThingMapping().build(good)
    check_against_the_contract(payload)
    assert payload["custom_fields"]["c1"] == "2024-01-15T10:30:00Z"
    assert payload["tag_names"] == ["red", "x"]
    with pytest.raises(PayloadError) as caught:
        ThingMapping().build(replace(good, c2=Colour.BAD))
    assert caught.value.field == "custom_fields.c2"
