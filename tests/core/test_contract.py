"""The contract's validators (CONTRACT.md §4): what passes, what is refused, and where."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meisa_sync.contract import (
    API_KEY_RE,
    CUSTOM_FIELD_NAME_RE,
    MAX_BODY_BYTES,
    SEQUENCE_SLUG_RE,
    check_custom_field_name,
    check_custom_value,
    check_name,
    is_valid_custom_field_name,
    normalize_email,
    normalize_external_id,
    normalize_identifiers,
    normalize_tag_names,
    validate_idempotency_key,
    validate_upsert,
)
from meisa_sync.exceptions import PayloadError


def refused(call: Any, *args: Any) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        call(*args)
    return caught.value


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("john@example.com", "john@example.com"),
        ("  John.Doe@Example.COM\n", "john.doe@example.com"),
        ("a@b.c", "a@b.c"),
        ("ünïcode@exämple.de", "ünïcode@exämple.de"),
    ],
)
def test_email_is_trimmed_and_lower_cased(given: str, expected: str) -> None:
    assert normalize_email(given) == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("john.example.com", "exactly one @"),
        ("a@b@c.com", "exactly one @"),
        ("@example.com", "nothing before @"),
        ("john@localhost", "no dot in the domain"),
        (f"{'a' * 245}@example.com", "at most 254"),
        (42, "must be a string, not int"),
        (None, "must be a string, not null"),
    ],
)
def test_bad_emails_are_refused_naming_the_field(given: object, reason: str) -> None:
    error = refused(normalize_email, given)
    assert error.field == "email"
    assert reason in str(error)
    assert str(error).startswith("email: ")


def test_email_of_exactly_254_characters_is_valid() -> None:
    email = f"{'a' * 242}@example.com"
    assert len(email) == 254
    assert normalize_email(email) == email


@pytest.mark.parametrize(
    ("given", "expected"),
    [("usr_123", "usr_123"), ("  usr_123 ", "usr_123"), (12345, "12345"), (0, "0"), (-7, "-7")],
)
def test_external_id_becomes_a_trimmed_string(given: object, expected: str) -> None:
    assert normalize_external_id(given) == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("", "must not be empty"),
        ("  ", "must not be empty"),
        ("x" * 256, "at most 255"),
        (True, "not bool"),
        (1.5, "not float"),
        (None, "not null"),
    ],
)
def test_bad_external_ids_are_refused(given: object, reason: str) -> None:
    error = refused(normalize_external_id, given)
    assert error.field == "external_id"
    assert reason in str(error)


def test_names_are_strings_up_to_255_or_null() -> None:
    assert check_name("x" * 255, "first_name") == "x" * 255
    assert check_name(None, "last_name") is None
    assert refused(check_name, "x" * 256, "first_name").field == "first_name"
    assert "not int" in str(refused(check_name, 3, "last_name"))


@pytest.mark.parametrize("name", ["plan", "_private", "MRR", "a" * 64, "signup_date_2", "_"])
def test_valid_custom_field_names(name: str) -> None:
    assert is_valid_custom_field_name(name)
    assert check_custom_field_name(name) == name


@pytest.mark.parametrize("name", ["", "2fa", "a" * 65, "plan-type", "plan type", "é", "a.b", 3])
def test_invalid_custom_field_names(name: object) -> None:
    assert not is_valid_custom_field_name(name)
    error = refused(check_custom_field_name, name)
    assert error.field.startswith("custom_fields")


@pytest.mark.parametrize("value", [None, True, False, 0, -3, 99.5, "", "x" * 10_000, 10**30])
def test_valid_custom_values(value: object) -> None:
    assert check_custom_value(value, "custom_fields.x") == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (float("-inf"), "finite"),
        ("x" * 10_001, "at most 10000"),
        ({"a": 1}, "nested objects"),
        ([1, 2], "nested arrays"),
        ((1,), "nested arrays"),
        (b"bytes", "not bytes"),
    ],
)
def test_invalid_custom_values_name_the_key(value: object, reason: str) -> None:
    error = refused(check_custom_value, value, "custom_fields.mrr")
    assert error.field == "custom_fields.mrr"
    assert reason in str(error)


def test_tag_names_are_trimmed_and_limited() -> None:
    assert normalize_tag_names([" pro-plan ", "x" * 100]) == ["pro-plan", "x" * 100]
    assert refused(normalize_tag_names, ["ok", "  "]).field == "tag_names[1]"
    assert refused(normalize_tag_names, ["ok", "x" * 101]).field == "tag_names[1]"
    assert refused(normalize_tag_names, ["ok", 7]).field == "tag_names[1]"
    assert refused(normalize_tag_names, "pro-plan").field == "tag_names"
    assert "at most 50" in str(refused(normalize_tag_names, [f"t{i}" for i in range(51)]))
    assert len(normalize_tag_names([f"t{i}" for i in range(50)])) == 50


def test_idempotency_keys() -> None:
    assert validate_idempotency_key("41-abcdef") == "41-abcdef"
    assert validate_idempotency_key("k" * 255) == "k" * 255
    assert refused(validate_idempotency_key, "k" * 256).field == "Idempotency-Key"
    assert refused(validate_idempotency_key, "").field == "Idempotency-Key"


def test_patterns() -> None:
    assert CUSTOM_FIELD_NAME_RE.fullmatch("plan")
    assert SEQUENCE_SLUG_RE.fullmatch("welcome-pro")
    assert not SEQUENCE_SLUG_RE.fullmatch("-welcome")
    assert not SEQUENCE_SLUG_RE.fullmatch("Welcome")
    assert API_KEY_RE.fullmatch("meisa_test_local_development_key_0000000001")
    assert API_KEY_RE.fullmatch("meisa_live_" + "A-_9" * 8)
    assert not API_KEY_RE.fullmatch("meisa_live_short")
    assert not API_KEY_RE.fullmatch("meisa_prod_" + "a" * 40)
    assert MAX_BODY_BYTES == 1_048_576


SEED_BODY = {
    "email": "John@Example.com ",
    "external_id": "usr_12345",
    "first_name": "John",
    "last_name": "Doe",
    "custom_fields": {"plan": "pro", "mrr": 99.00, "signup_date": "2024-01-15"},
    "tag_names": ["paying-customer", "pro-plan"],
}


def test_the_seed_body_is_valid_and_normalised() -> None:
    assert validate_upsert(SEED_BODY) == {**SEED_BODY, "email": "john@example.com"}


def test_validation_keeps_absent_fields_absent_and_names_nullable() -> None:
    assert validate_upsert({"external_id": 7}) == {"external_id": "7"}
    assert validate_upsert({"email": "a@b.co", "first_name": None}) == {
        "email": "a@b.co",
        "first_name": None,
    }


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ([], "body", "JSON object"),
        ("x", "body", "JSON object"),
        ({}, "email", "at least one of email and external_id"),
        ({"first_name": "John"}, "email", "at least one"),
        ({"email": None}, "email", "must be a string"),
        ({"external_id": None, "email": "a@b.co"}, "external_id", "must be a string or an integer"),
        ({"email": "a@b.co", "custom_field": {}}, "custom_field", "did you mean custom_fields?"),
        ({"email": "a@b.co", "tags": []}, "tags", "did you mean tag_names?"),
        ({"emial": "a@b.co"}, "emial", "did you mean email?"),
        ({"email": "a@b.co", "zzz": 1}, "zzz", "expected one of email, external_id"),
        ({"email": "a@b.co", "custom_fields": []}, "custom_fields", "must be an object"),
        ({"email": "a@b.co", "custom_fields": {"a": {"b": 1}}}, "custom_fields.a", "nested"),
        ({"email": "a@b.co", "custom_fields": {"mrr": [99]}}, "custom_fields.mrr", "nested arrays"),
        ({"email": "a@b.co", "custom_fields": {"x": float("nan")}}, "custom_fields.x", "finite"),
        ({"email": "a@b.co", "custom_fields": {"bad-key": 1}}, "custom_fields.bad-key", "name"),
        ({"email": "a@b.co", "tag_names": ["a", "b", ""]}, "tag_names[2]", "empty"),
        ({"email": "a@b.co", "tag_names": "vip"}, "tag_names", "must be a list"),
        ({"email": "a@b.co", "last_name": "x" * 256}, "last_name", "at most 255"),
    ],
)
def test_invalid_bodies_name_the_payload_path(body: object, field: str, reason: str) -> None:
    error = refused(validate_upsert, body)
    assert error.field == field
    assert reason in str(error)


def test_custom_field_count_limit() -> None:
    fields = {f"f{i}": i for i in range(200)}
    assert validate_upsert({"external_id": "x", "custom_fields": fields})["custom_fields"] == fields
    error = refused(validate_upsert, {"external_id": "x", "custom_fields": {**fields, "one": 1}})
    assert error.field == "custom_fields"
    assert "at most 200" in str(error)


def test_zero_false_and_empty_string_are_values() -> None:
    body = {"external_id": "x", "custom_fields": {"a": 0, "b": False, "c": "", "d": None}}
    assert validate_upsert(body) == body


def test_identifiers_for_other_endpoints_ignore_other_keys() -> None:
    assert normalize_identifiers({"email": " A@B.co", "add": ["x"]}) == {"email": "a@b.co"}
    assert normalize_identifiers({"external_id": 5}) == {"external_id": "5"}
    assert refused(normalize_identifiers, {"add": ["x"]}).field == "email"
    assert refused(normalize_identifiers, None).field == "body"


upsert_bodies = st.fixed_dictionaries(
    {},
    optional={
        "email": st.emails() | st.text(max_size=8),
        "external_id": st.integers() | st.text(max_size=8),
        "first_name": st.none() | st.text(max_size=8),
        "custom_fields": st.dictionaries(
            st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True) | st.text(max_size=3),
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
            max_size=4,
        ),
        "tag_names": st.lists(st.text(max_size=6), max_size=4),
    },
)


@given(upsert_bodies)
def test_validation_is_idempotent(body: dict[str, Any]) -> None:
    try:
        once = validate_upsert(body)
    except PayloadError as error:
        assert str(error).startswith(f"{error.field}: ")
        return
    assert validate_upsert(once) == once
    assert list(once) == list(body)
