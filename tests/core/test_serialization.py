"""Python values → JSON values: each supported type, and each refusal naming the field."""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meisa_sync.exceptions import PayloadError
from meisa_sync.serialization import format_datetime, to_json_value

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
FIELD = "custom_fields.x"
# A day away from the ends of datetime's range, where converting to UTC could overflow.
IN_RANGE_START = dt.datetime(1, 1, 2)
IN_RANGE_END = dt.datetime(9999, 12, 30)


class Plan(enum.Enum):
    FREE = "free"
    PRO = "pro"


class Level(enum.IntEnum):
    LOW = 1


class Price(enum.Enum):
    BASIC = Decimal("9.50")
    LAUNCH = dt.date(2024, 1, 15)


class Name(str):
    pass


def serialise(value: object, zone: dt.tzinfo = dt.timezone.utc) -> Any:
    return to_json_value(value, FIELD, naive_zone=zone)


def refusal(value: object) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        serialise(value)
    assert caught.value.field == FIELD
    return caught.value


@pytest.mark.parametrize("value", [None, "text", "", 0, -12, 10**40, True, False, 1.5, -0.25])
def test_json_scalars_pass_through(value: object) -> None:
    result = serialise(value)
    assert result == value
    assert type(result) is type(value)


def test_subclasses_become_plain_types() -> None:
    assert type(serialise(Name("x"))) is str
    assert serialise(Level.LOW) == 1
    assert type(serialise(Level.LOW)) is int


def test_integral_floats_become_ints() -> None:
    assert serialise(99.0) == 99
    assert type(serialise(99.0)) is int
    assert type(serialise(-0.0)) is int
    assert type(serialise(1e300)) is float


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_refused(value: float) -> None:
    assert "finite" in str(refusal(value))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("99.00"), 99),
        (Decimal("0"), 0),
        (Decimal("-12E+2"), -1200),
        (Decimal("0.1"), 0.1),
        (Decimal("99.99"), 99.99),
        (Decimal("-1.25"), -1.25),
        (Decimal("12345678901234567890"), 12345678901234567890),
    ],
)
def test_exact_decimals_become_numbers(value: Decimal, expected: float) -> None:
    result = serialise(value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "value",
    [Decimal("0.10000000000000000001"), Decimal("1E-400"), Decimal("NaN"), Decimal("-Infinity")],
)
def test_inexact_or_non_finite_decimals_are_refused(value: Decimal) -> None:
    error = refusal(value)
    assert "Decimal" in str(error)


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=2, min_value=-(10**12), max_value=10**12
    )
)
def test_money_decimals_read_back_exactly(value: Decimal) -> None:
    result = serialise(value)
    assert Decimal(repr(result)) == value


def test_aware_datetimes_become_utc_with_z() -> None:
    paris = dt.datetime(2024, 1, 15, 11, 30, tzinfo=PARIS)
    assert serialise(paris) == "2024-01-15T10:30:00Z"
    assert serialise(dt.datetime(2024, 7, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))) == (
        "2024-07-01T05:00:00Z"
    )


def test_datetimes_outside_the_utc_range_are_refused() -> None:
    early = dt.datetime(1, 1, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    assert "outside the years" in str(refusal(early))


def test_microseconds_are_kept_only_when_non_zero() -> None:
    assert serialise(dt.datetime(2024, 1, 15, 10, 30, 0, 250_000, tzinfo=dt.timezone.utc)) == (
        "2024-01-15T10:30:00.250000Z"
    )
    assert serialise(dt.datetime(2024, 1, 15, 10, 30, 0, 0, tzinfo=dt.timezone.utc)) == (
        "2024-01-15T10:30:00Z"
    )


def test_naive_datetimes_are_read_in_the_given_zone() -> None:
    naive = dt.datetime(2024, 1, 15, 11, 30)
    assert serialise(naive) == "2024-01-15T11:30:00Z"
    assert serialise(naive, PARIS) == "2024-01-15T10:30:00Z"
    assert serialise(dt.datetime(2024, 7, 15, 11, 30), PARIS) == "2024-07-15T09:30:00Z"
    assert format_datetime(naive) == "2024-01-15T11:30:00Z"


def test_dates_and_times_are_iso() -> None:
    assert serialise(dt.date(2024, 1, 15)) == "2024-01-15"
    assert serialise(dt.time(10, 30)) == "10:30:00"
    assert serialise(dt.time(10, 30, 5, 1)) == "10:30:05.000001"
    assert serialise(dt.time(10, 30, tzinfo=dt.timezone.utc)) == "10:30:00Z"
    assert serialise(dt.time(10, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == "10:30:00+02:00"


def test_uuids_and_enums() -> None:
    value = uuid.UUID("550e8400-e29b-41d4-a716-446655440000")
    assert serialise(value) == "550e8400-e29b-41d4-a716-446655440000"
    assert serialise(Plan.PRO) == "pro"
    assert serialise(Price.BASIC) == 9.5
    assert serialise(Price.LAUNCH) == "2024-01-15"


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (b"raw", "builtins.bytes"),
        (object(), "builtins.object"),
        (dt.timedelta(days=1), "datetime.timedelta"),
        (1 + 2j, "builtins.complex"),
    ],
)
def test_other_types_are_refused_naming_the_type(value: object, type_name: str) -> None:
    error = refusal(value)
    assert type_name in str(error)
    assert "transform=" in str(error)


@pytest.mark.parametrize("value", [[1, 2], (1,), {"a": 1}, {1, 2}, frozenset()])
def test_containers_are_refused_with_a_hint(value: object) -> None:
    error = refusal(value)
    assert "CustomField" in str(error)


@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
        st.dates(),
        st.datetimes(IN_RANGE_START, IN_RANGE_END, timezones=st.none() | st.timezones()),
        st.times(),
        st.uuids(),
        st.sampled_from(Plan),
    )
)
def test_every_supported_value_becomes_strict_json(value: object) -> None:
    result = serialise(value)
    assert json.loads(json.dumps(result, allow_nan=False)) == result


@given(st.datetimes(IN_RANGE_START, IN_RANGE_END, timezones=st.timezones()))
def test_datetimes_round_trip_to_the_same_instant(value: dt.datetime) -> None:
    text = serialise(value)
    assert text.endswith("Z")
    # Subtraction, not ==: PEP 495 makes an ambiguous local time (fold) unequal to every instant
    # of another zone, while subtraction compares the instants themselves.
    assert dt.datetime.fromisoformat(text[:-1] + "+00:00") - value == dt.timedelta(0)
