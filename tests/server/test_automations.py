"""The automation engine (CONTRACT.md §6): matchers, triggers, rule order, the seed's rules, and
the validation of malformed rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meisa_sync.server.automations import (
    AddTag,
    Enroll,
    EventTrigger,
    FieldTrigger,
    Firing,
    RemoveTag,
    Rule,
    RuleError,
    Unenroll,
    evaluate,
    parse_rule,
)
from meisa_sync.server.changes import change_set, merge
from meisa_sync.server.matchers import parse_matcher

SEQUENCES = {"welcome", "welcome-pro", "win-back"}

# CONTRACT.md §6's table of the seed's automations, in table order.
SEED_RULES: list[dict[str, Any]] = [
    {
        "name": "signup",
        "trigger": {"field": "plan", "to": "free"},
        "actions": [
            {"type": "add_tag", "tag": "free-plan"},
            {"type": "enroll", "sequence": "welcome"},
        ],
    },
    {
        "name": "to pro",
        "trigger": {"field": "plan", "to": "pro"},
        "actions": [
            {"type": "add_tag", "tag": "pro-plan"},
            {"type": "remove_tag", "tag": "free-plan"},
        ],
    },
    {
        "name": "free to paid",
        "trigger": {"field": "plan", "from": "free", "to": {"not_in": ["free", "churned"]}},
        "actions": [
            {"type": "add_tag", "tag": "paying-customer"},
            {"type": "enroll", "sequence": "welcome-pro"},
        ],
    },
    {
        "name": "churn",
        "trigger": {"field": "plan", "to": "churned"},
        "actions": [
            {"type": "add_tag", "tag": "churned"},
            {"type": "remove_tag", "tag": "paying-customer"},
            {"type": "enroll", "sequence": "win-back"},
        ],
    },
]


def make_rules(*data: Mapping[str, Any]) -> list[Rule]:
    """Rules as the server stores them, created in argument order."""
    return [
        Rule.from_spec(parse_rule(item, known_sequences=SEQUENCES), id=f"r{seq}", created_seq=seq)
        for seq, item in enumerate(data)
    ]


def field_rule(trigger: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": extra.pop("name", "rule"),
        "trigger": {"field": "plan", **trigger},
        "actions": [{"type": "add_tag", "tag": "hit"}],
        **extra,
    }


def fires(
    trigger: Mapping[str, Any], changes: Mapping[str, tuple[Any, Any]], *, created: bool = False
) -> bool:
    return bool(evaluate(make_rules(field_rule(trigger)), changes, created=created))


def names(firings: Sequence[Firing]) -> list[str]:
    return [firing.rule.name for firing in firings]


# --- matchers, one by one -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matcher", "value", "matches"),
    [
        ("pro", "pro", True),
        ("pro", "Pro", False),
        ("pro", None, False),
        (99, 99.0, True),
        (99.0, 99, True),
        (99, "99", False),
        ("99", 99, False),
        (1, True, False),
        (True, 1, False),
        (True, True, True),
        (False, None, False),
        (0, None, False),
        ("", None, False),
        (None, None, True),
        (None, "", False),
        (None, 0, False),
    ],
)
def test_a_scalar_matches_by_json_equality(matcher: Any, value: Any, matches: bool) -> None:
    assert parse_matcher(matcher, "to").matches(value) is matches


@pytest.mark.parametrize(
    ("values", "value", "matches"),
    [
        (["free", "pro"], "pro", True),
        (["free", "pro"], "team", False),
        (["free", "pro"], None, False),
        ([None, "free"], None, True),
        ([1, 2], 2.0, True),
        ([1, 2], "2", False),
        ([1], True, False),
    ],
)
def test_in(values: list[Any], value: Any, matches: bool) -> None:
    assert parse_matcher({"in": values}, "to").matches(value) is matches


@pytest.mark.parametrize(
    ("values", "value", "matches"),
    [
        (["free", "churned"], "pro", True),
        (["free", "churned"], "free", False),
        (["free", "churned"], None, False),
        ([None], None, False),
        ([99], 99.0, False),
        ([99], "99", True),
        (["free"], False, True),
    ],
)
def test_not_in_never_matches_null(values: list[Any], value: Any, matches: bool) -> None:
    assert parse_matcher({"not_in": values}, "to").matches(value) is matches


@pytest.mark.parametrize(
    ("bounds", "value", "matches"),
    [
        ({"gt": 10}, 11, True),
        ({"gt": 10}, 10, False),
        ({"gte": 10}, 10, True),
        ({"gte": 10}, 9.99, False),
        ({"lt": 10}, 9.5, True),
        ({"lt": 10}, 10.0, False),
        ({"lte": 10}, 10.0, True),
        ({"lte": 10}, 11, False),
        ({"gte": 10, "lt": 100}, 10, True),
        ({"gte": 10, "lt": 100}, 99.9, True),
        ({"gte": 10, "lt": 100}, 100, False),
        ({"gt": 0}, True, False),
        ({"lt": 1}, False, False),
        ({"gt": 0}, "5", False),
        ({"gt": 0}, None, False),
        ({"gte": 0.5}, 1, True),
    ],
)
def test_numeric_comparisons_and_only_numbers_match(
    bounds: dict[str, Any], value: Any, matches: bool
) -> None:
    assert parse_matcher(bounds, "to").matches(value) is matches


@pytest.mark.parametrize(
    ("present", "value", "matches"),
    [
        (True, "x", True),
        (True, 0, True),
        (True, False, True),
        (True, "", True),
        (True, None, False),
        (False, None, True),
        (False, 0, False),
    ],
)
def test_exists(present: bool, value: Any, matches: bool) -> None:
    assert parse_matcher({"exists": present}, "to").matches(value) is matches


# --- triggers ------------------------------------------------------------------------------------


def test_a_trigger_without_matchers_fires_on_any_change_of_its_field() -> None:
    assert fires({}, {"plan": ("free", "pro")})
    assert fires({}, {"plan": ("free", None)})
    assert not fires({}, {"mrr": (0, 99)})


def test_to_matches_the_new_value() -> None:
    assert fires({"to": "pro"}, {"plan": ("free", "pro")})
    assert not fires({"to": "pro"}, {"plan": ("pro", "team")})


def test_from_matches_the_old_value() -> None:
    assert fires({"from": "free"}, {"plan": ("free", "pro")})
    assert not fires({"from": "free"}, {"plan": ("team", "pro")})


def test_from_and_to_must_both_match() -> None:
    trigger = {"from": "free", "to": "pro"}
    assert fires(trigger, {"plan": ("free", "pro")})
    assert not fires(trigger, {"plan": ("free", "team")})
    assert not fires(trigger, {"plan": ("team", "pro")})


def test_no_change_no_fire() -> None:
    # Re-sending the stored value leaves the field out of the change set.
    stored = {"plan": "pro", "mrr": 99}
    changes = change_set(stored, merge(stored, {"plan": "pro", "mrr": 99.0}))
    assert changes == {}
    assert not fires({"to": "pro"}, changes)
    assert not fires({}, changes)


def test_null_on_create_matches_from_null_and_from_absent() -> None:
    changes = change_set({}, merge({}, {"plan": "free"}))
    assert fires({"from": None, "to": "free"}, changes, created=True)
    assert fires({"from": {"exists": False}}, changes, created=True)
    assert not fires({"from": {"exists": True}}, changes, created=True)
    assert not fires({"from": {"not_in": ["pro"]}}, changes, created=True)


def test_deleting_a_field_fires_with_a_null_new_value() -> None:
    stored = {"plan": "pro"}
    changes = change_set(stored, merge(stored, {"plan": None}))
    assert fires({"from": "pro", "to": None}, changes)
    assert fires({"to": {"exists": False}}, changes)
    assert not fires({"to": {"not_in": ["free"]}}, changes)


def test_a_firing_carries_the_change_and_the_actions() -> None:
    (rule,) = make_rules(SEED_RULES[2])
    (firing,) = evaluate([rule], {"plan": ("free", "pro"), "mrr": (0, 99)}, created=False)
    assert firing == Firing(
        rule, "plan", "free", "pro", (AddTag("paying-customer"), Enroll("welcome-pro"))
    )


def test_contact_created_fires_once_at_creation_only() -> None:
    rules = make_rules(
        {
            "name": "hello",
            "trigger": {"event": "contact_created"},
            "actions": [{"type": "add_tag", "tag": "new"}],
        }
    )
    (firing,) = evaluate(rules, {"plan": (None, "free"), "mrr": (None, 0)}, created=True)
    assert (firing.field, firing.old, firing.new) == (None, None, None)
    assert evaluate(rules, {}, created=True) != [], "a contact created with no custom fields"
    assert evaluate(rules, {"plan": ("free", "pro")}, created=False) == []


def test_disabled_rules_never_fire() -> None:
    rules = make_rules(
        field_rule({"to": "pro"}, enabled=False),
        {
            "name": "hello",
            "enabled": False,
            "trigger": {"event": "contact_created"},
            "actions": [{"type": "add_tag", "tag": "new"}],
        },
    )
    assert evaluate(rules, {"plan": (None, "pro")}, created=True) == []


def test_rules_run_by_position_then_creation_order() -> None:
    rules = make_rules(
        field_rule({}, name="c", position=20),
        field_rule({}, name="a", position=10),
        field_rule({}, name="d", position=20),
        field_rule({}, name="b", position=10),
        field_rule({}, name="first", position=-5),
    )
    # However the server happens to list them.
    shuffled = [rules[index] for index in (2, 4, 0, 3, 1)]
    assert names(evaluate(shuffled, {"plan": ("free", "pro")}, created=False)) == [
        "first",
        "a",
        "b",
        "c",
        "d",
    ]


def test_each_rule_fires_at_most_once_and_all_see_the_same_change_set() -> None:
    rules = make_rules(
        {
            "name": "plan",
            "trigger": {"field": "plan"},
            "actions": [
                {"type": "add_tag", "tag": "x"},
                {"type": "remove_tag", "tag": "x"},
                {"type": "add_tag", "tag": "x"},
            ],
        },
        {
            "name": "mrr",
            "trigger": {"field": "mrr", "from": 0},
            "actions": [{"type": "unenroll", "sequence": "welcome"}],
        },
    )
    firings = evaluate(rules, {"plan": ("free", "pro"), "mrr": (0, 99)}, created=False)
    assert names(firings) == ["plan", "mrr"]
    assert firings[0].actions == (AddTag("x"), RemoveTag("x"), AddTag("x")), "list order"
    assert firings[1].actions == (Unenroll("welcome"),)


# --- the seed's story -----------------------------------------------------------------------------


def upsert(stored: dict[str, Any], sent: dict[str, Any], rules: list[Rule]) -> list[Firing]:
    merged = merge(stored, sent)
    firings = evaluate(rules, change_set(stored, merged), created=not stored)
    stored.clear()
    stored.update(merged)
    return firings


def test_the_seed_story_signup_upgrade_churn() -> None:
    rules = make_rules(*SEED_RULES)
    fields: dict[str, Any] = {}

    signup = upsert(fields, {"plan": "free", "signup_source": "website"}, rules)
    assert [(f.rule.name, f.actions) for f in signup] == [
        ("signup", (AddTag("free-plan"), Enroll("welcome"))),
    ]

    upgrade = upsert(fields, {"plan": "pro", "billing_cycle": "annual", "mrr": 99}, rules)
    assert [(f.rule.name, f.actions) for f in upgrade] == [
        ("to pro", (AddTag("pro-plan"), RemoveTag("free-plan"))),
        ("free to paid", (AddTag("paying-customer"), Enroll("welcome-pro"))),
    ]

    assert upsert(fields, {"plan": "pro", "mrr": 99.0}, rules) == [], "a re-sync fires nothing"

    churn = upsert(fields, {"plan": "churned", "previous_plan": "pro"}, rules)
    assert [(f.rule.name, f.old, f.new, f.actions) for f in churn] == [
        (
            "churn",
            "pro",
            "churned",
            (AddTag("churned"), RemoveTag("paying-customer"), Enroll("win-back")),
        ),
    ]


@pytest.mark.parametrize(
    ("old", "new", "fired"),
    [
        ("free", "team", ["free to paid"]),
        ("free", "churned", ["churn"]),
        ("pro", "free", ["signup"]),
        ("churned", "pro", ["to pro"]),
        (None, "pro", ["to pro"]),
        ("free", None, []),
    ],
)
def test_the_seed_rules_on_other_plan_changes(old: Any, new: Any, fired: list[str]) -> None:
    rules = make_rules(*SEED_RULES)
    assert names(evaluate(rules, {"plan": (old, new)}, created=old is None)) == fired


# --- rule validation ------------------------------------------------------------------------------


def test_defaults_and_normalisation() -> None:
    spec = parse_rule(
        {
            "name": "  To pro ",
            "trigger": {"field": "plan"},
            "actions": [{"type": "add_tag", "tag": " vip "}],
        },
        known_sequences=(),
    )
    assert (spec.name, spec.enabled, spec.position) == ("To pro", True, 0)
    assert spec.trigger == FieldTrigger("plan")
    assert spec.actions == (AddTag("vip"),)


def test_the_json_form_round_trips() -> None:
    for data in [
        *SEED_RULES,
        {
            "name": "new",
            "trigger": {"event": "contact_created"},
            "actions": [{"type": "unenroll", "sequence": "welcome"}],
        },
    ]:
        spec = parse_rule(data, known_sequences=SEQUENCES)
        stored = spec.to_json()
        assert stored == {"enabled": True, "position": 0, **data}
        rule = Rule.from_stored(id="r1", created_seq=7, **stored)
        assert rule == Rule.from_spec(spec, id="r1", created_seq=7)
        assert rule.to_json() == {"id": "r1", **stored}


def test_an_event_trigger_parses() -> None:
    spec = parse_rule(
        {
            "name": "x",
            "trigger": {"event": "contact_created"},
            "actions": [{"type": "enroll", "sequence": "welcome"}],
        },
        known_sequences=SEQUENCES,
    )
    assert spec.trigger == EventTrigger()


def test_stored_rules_are_not_checked_against_sequences_again() -> None:
    rule = Rule.from_stored(
        id="r",
        created_seq=0,
        name="x",
        enabled=True,
        position=0,
        trigger={"field": "plan"},
        actions=[{"type": "enroll", "sequence": "retired"}],
    )
    assert rule.actions == (Enroll("retired"),)


VALID: dict[str, Any] = {
    "name": "to pro",
    "trigger": {"field": "plan", "to": "pro"},
    "actions": [{"type": "add_tag", "tag": "pro-plan"}],
}


def with_(**changes: Any) -> dict[str, Any]:
    return {**VALID, **changes}


def trigger_to(matcher: Any) -> dict[str, Any]:
    return with_(trigger={"field": "plan", "to": matcher})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([], "body"),
        ({k: v for k, v in VALID.items() if k != "name"}, "name"),
        ({k: v for k, v in VALID.items() if k != "trigger"}, "trigger"),
        ({k: v for k, v in VALID.items() if k != "actions"}, "actions"),
        (with_(id="abc"), "id"),
        (with_(triggers={}), "triggers"),
        (with_(name=""), "name"),
        (with_(name="   "), "name"),
        (with_(name="x" * 256), "name"),
        (with_(name=5), "name"),
        (with_(enabled="yes"), "enabled"),
        (with_(enabled=1), "enabled"),
        (with_(position="1"), "position"),
        (with_(position=1.5), "position"),
        (with_(position=True), "position"),
        (with_(position=2**31), "position"),
        (with_(trigger="plan"), "trigger"),
        (with_(trigger={}), "trigger"),
        (with_(trigger={"to": "pro"}), "trigger"),
        (with_(trigger={"field": "plan", "too": "pro"}), "trigger.too"),
        (with_(trigger={"field": "1plan"}), "trigger.field"),
        (with_(trigger={"field": "plan-name"}), "trigger.field"),
        (with_(trigger={"field": 3}), "trigger.field"),
        (with_(trigger={"event": "contact_deleted"}), "trigger.event"),
        (with_(trigger={"event": "contact_created", "field": "plan"}), "trigger.field"),
        (trigger_to(["free", "pro"]), "trigger.to"),
        (trigger_to({}), "trigger.to"),
        (trigger_to({"eq": "pro"}), "trigger.to.eq"),
        (trigger_to({"in": "pro"}), "trigger.to.in"),
        (trigger_to({"in": []}), "trigger.to.in"),
        (trigger_to({"in": ["pro", ["x"]]}), "trigger.to.in[1]"),
        (trigger_to({"not_in": [{"a": 1}]}), "trigger.to.not_in[0]"),
        (trigger_to({"in": ["pro"], "not_in": ["free"]}), "trigger.to"),
        (trigger_to({"gt": 1, "exists": True}), "trigger.to"),
        (trigger_to({"gt": "1"}), "trigger.to.gt"),
        (trigger_to({"gt": 0, "lte": True}), "trigger.to.lte"),
        (trigger_to({"gte": float("nan")}), "trigger.to.gte"),
        (trigger_to({"lt": float("inf")}), "trigger.to.lt"),
        (trigger_to({"exists": "yes"}), "trigger.to.exists"),
        (trigger_to(float("inf")), "trigger.to"),
        (trigger_to("x" * 10_001), "trigger.to"),
        (with_(trigger={"field": "plan", "from": {"in": [1, None, []]}}), "trigger.from.in[2]"),
        (with_(actions={"type": "add_tag"}), "actions"),
        (with_(actions=[]), "actions"),
        (with_(actions=[{"type": "add_tag", "tag": "t"}] * 51), "actions"),
        (with_(actions=["add_tag"]), "actions[0]"),
        (with_(actions=[VALID["actions"][0], {"type": "tag", "tag": "t"}]), "actions[1].type"),
        (with_(actions=[{"tag": "t"}]), "actions[0].type"),
        (with_(actions=[{"type": "add_tag"}]), "actions[0].tag"),
        (with_(actions=[{"type": "add_tag", "tag": ""}]), "actions[0].tag"),
        (with_(actions=[{"type": "remove_tag", "tag": "x" * 101}]), "actions[0].tag"),
        (with_(actions=[{"type": "remove_tag", "tag": 7}]), "actions[0].tag"),
        (
            with_(actions=[{"type": "add_tag", "tag": "t", "sequence": "welcome"}]),
            "actions[0].sequence",
        ),
        (with_(actions=[{"type": "enroll", "tag": "t"}]), "actions[0].tag"),
        (with_(actions=[{"type": "enroll"}]), "actions[0].sequence"),
        (with_(actions=[{"type": "enroll", "sequence": "Welcome"}]), "actions[0].sequence"),
        (with_(actions=[{"type": "enroll", "sequence": "nurture"}]), "actions[0].sequence"),
        (with_(actions=[{"type": "unenroll", "sequence": "nurture"}]), "actions[0].sequence"),
    ],
)
def test_malformed_rules_name_the_field(data: Any, field: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule(data, known_sequences=SEQUENCES)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_an_unknown_sequence_is_named() -> None:
    with pytest.raises(RuleError, match="unknown sequence 'nurture'"):
        parse_rule(
            with_(actions=[{"type": "enroll", "sequence": "nurture"}]), known_sequences=SEQUENCES
        )


# --- properties -----------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
matchers = (
    json_scalars
    | st.builds(lambda v: {"in": v}, st.lists(json_scalars, min_size=1, max_size=4))
    | st.builds(lambda v: {"not_in": v}, st.lists(json_scalars, min_size=1, max_size=4))
    | st.builds(lambda v: {"exists": v}, st.booleans())
    | st.dictionaries(
        st.sampled_from(["gt", "gte", "lt", "lte"]),
        st.integers(min_value=-100, max_value=100) | st.floats(-100, 100),
        min_size=1,
    )
)


@settings(deadline=None, max_examples=200)
@given(matcher=matchers, value=json_scalars)
def test_matchers_survive_their_json_form(matcher: Any, value: Any) -> None:
    parsed = parse_matcher(matcher, "to")
    again = parse_matcher(parsed.to_json(), "to")
    assert again == parsed
    assert again.matches(value) is parsed.matches(value)


@settings(deadline=None, max_examples=100)
@given(from_=matchers, to=matchers, old=json_scalars, new=json_scalars)
def test_a_field_trigger_fires_iff_both_matchers_match(
    from_: Any, to: Any, old: Any, new: Any
) -> None:
    expected = parse_matcher(from_, "from").matches(old) and parse_matcher(to, "to").matches(new)
    changes = {"plan": (old, new)}
    assert fires({"from": from_, "to": to}, changes) is expected
    assert not fires({"from": from_, "to": to}, {"mrr": (old, new)})
