"""Merge and change detection of custom fields (CONTRACT.md §4, "Change detection")."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meisa_sync.server.changes import change_set, is_number, json_equal, merge

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
field_names = st.sampled_from(["plan", "mrr", "seats", "trial", "signup_source"])
field_maps = st.dictionaries(field_names, scalars.filter(lambda v: v is not None))
sent_maps = st.dictionaries(field_names, scalars)


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (99, 99.0, True),
        (0, -0.0, True),
        (99, "99", False),
        ("99", 99.0, False),
        (True, 1, False),
        (False, 0, False),
        (1.0, True, False),
        (True, True, True),
        ("", None, False),
        (0, None, False),
        (False, None, False),
        (None, None, True),
        ("free", "free", True),
        ("free", "Free", False),
        ([1, "a"], [1.0, "a"], True),
        ([1], [True], False),
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"b": 1}, False),
    ],
)
def test_json_equality(a: Any, b: Any, equal: bool) -> None:
    assert json_equal(a, b) is equal
    assert json_equal(b, a) is equal


def test_bools_are_not_numbers() -> None:
    assert is_number(0) and is_number(2.5)
    assert not is_number(True) and not is_number("1") and not is_number(None)


def test_merge_overwrites_deletes_and_keeps() -> None:
    stored = {"plan": "free", "mrr": 0, "source": "ads"}
    assert merge(stored, {"plan": "pro", "mrr": None, "seats": 3}) == {
        "plan": "pro",
        "source": "ads",
        "seats": 3,
    }
    assert stored == {"plan": "free", "mrr": 0, "source": "ads"}, "stored is not touched"


def test_merge_keeps_falsy_values() -> None:
    assert merge({}, {"a": 0, "b": False, "c": ""}) == {"a": 0, "b": False, "c": ""}


def test_deleting_an_absent_key_is_nothing() -> None:
    assert merge({"plan": "free"}, {"mrr": None}) == {"plan": "free"}


def test_change_set_reports_old_and_new() -> None:
    stored = {"plan": "free", "mrr": 0}
    merged = merge(stored, {"plan": "pro", "mrr": 99})
    assert change_set(stored, merged) == {"plan": ("free", "pro"), "mrr": (0, 99)}


def test_resending_a_value_is_no_change() -> None:
    stored = {"plan": "pro", "mrr": 99}
    assert change_set(stored, merge(stored, {"plan": "pro", "mrr": 99})) == {}


def test_numbers_compare_by_value() -> None:
    stored = {"mrr": 99}
    assert change_set(stored, merge(stored, {"mrr": 99.0})) == {}


def test_a_string_is_not_a_number() -> None:
    stored = {"mrr": 99}
    assert change_set(stored, merge(stored, {"mrr": "99"})) == {"mrr": (99, "99")}


def test_a_bool_is_not_a_number() -> None:
    stored = {"trial": 1}
    assert change_set(stored, merge(stored, {"trial": True})) == {"trial": (1, True)}


def test_deletion_is_a_change_to_none() -> None:
    stored = {"plan": "free", "mrr": 0}
    assert change_set(stored, merge(stored, {"mrr": None})) == {"mrr": (0, None)}


def test_on_creation_every_sent_field_is_a_change_from_none() -> None:
    sent = {"plan": "free", "mrr": 0, "trial": False, "note": ""}
    assert change_set({}, merge({}, sent)) == {
        "plan": (None, "free"),
        "mrr": (None, 0),
        "trial": (None, False),
        "note": (None, ""),
    }


def test_on_creation_a_sent_null_is_no_change() -> None:
    assert change_set({}, merge({}, {"plan": None})) == {}


def test_change_set_order_follows_the_merged_fields_then_deletions() -> None:
    stored = {"a": 1, "b": 2, "c": 3}
    merged = {"c": 4, "d": 5, "a": 0}
    assert list(change_set(stored, merged)) == ["c", "d", "a", "b"]


@settings(deadline=None)
@given(stored=field_maps, sent=sent_maps)
def test_change_set_is_exactly_the_fields_that_differ(
    stored: dict[str, Any], sent: dict[str, Any]
) -> None:
    merged = merge(stored, sent)
    changes = change_set(stored, merged)
    for key in stored.keys() | merged.keys():
        old, new = stored.get(key), merged.get(key)
        if json_equal(old, new):
            assert key not in changes
        else:
            assert changes[key] == (old, new)
    assert set(changes) <= set(sent), "only sent fields can change"
    assert None not in merged.values(), "null never gets stored"
