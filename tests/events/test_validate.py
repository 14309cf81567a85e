"""Per-type validation with Segment's reason codes."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

from sluice.errors import SluiceError
from sluice.events import (
    MAX_EVENT_BYTES,
    REASON_CODES,
    EventValidationError,
    Violation,
    validate_event,
    validate_or_raise,
)

TRACK: dict[str, Any] = {"type": "track", "userId": "u1", "event": "Clicked"}
IDENTIFY: dict[str, Any] = {"type": "identify", "userId": "u1"}
PAGE: dict[str, Any] = {"type": "page", "anonymousId": "a1"}
SCREEN: dict[str, Any] = {"type": "screen", "anonymousId": "a1"}
GROUP: dict[str, Any] = {"type": "group", "userId": "u1", "groupId": "g1"}
ALIAS: dict[str, Any] = {"type": "alias", "userId": "u1", "previousId": "p1"}
DELETE: dict[str, Any] = {"type": "delete", "userId": "u1"}
MINIMAL = [TRACK, IDENTIFY, PAGE, SCREEN, GROUP, ALIAS, DELETE]


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    event = dict(base)
    event.update(changes)
    return event


def without(base: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k not in keys}


def codes(event: object, **kwargs: Any) -> list[tuple[str, str]]:
    return [(v.code, v.field) for v in validate_event(event, **kwargs)]


@pytest.mark.parametrize("event", MINIMAL, ids=[e["type"] for e in MINIMAL])
def test_minimal_events_are_valid(event: dict[str, Any]) -> None:
    assert validate_event(event) == []


# One minimal failing event per reason code: (code, field, event).
FAILING: list[tuple[str, str, object]] = [
    ("not_an_object", "", [TRACK]),
    ("type_not_string", "type", without(TRACK, "type")),
    ("type_invalid", "type", with_(TRACK, type="purchase")),
    ("no_user_anon_id", "userId", without(TRACK, "userId")),
    ("user_id_not_string", "userId", with_(TRACK, userId={"id": 1})),
    ("anonymous_id_not_string", "anonymousId", with_(PAGE, anonymousId=["a1"])),
    ("event_not_defined", "event", without(TRACK, "event")),
    ("event_not_string", "event", with_(TRACK, event=42)),
    ("properties_not_object", "properties", with_(TRACK, properties=["a"])),
    ("traits_not_object", "traits", with_(IDENTIFY, traits="vip")),
    ("context_not_object", "context", with_(TRACK, context="web")),
    ("integrations_not_object", "integrations", with_(TRACK, integrations=["Mixpanel"])),
    ("name_not_string", "name", with_(PAGE, name=3)),
    ("category_not_string", "category", with_(PAGE, category={"a": 1})),
    ("group_id_not_defined", "groupId", without(GROUP, "groupId")),
    ("group_id_not_string", "groupId", with_(GROUP, groupId={"id": "g1"})),
    ("previous_id_not_defined", "previousId", without(ALIAS, "previousId")),
    ("previous_id_not_string", "previousId", with_(ALIAS, previousId=[1])),
    ("message_id_not_string", "messageId", with_(TRACK, messageId=12)),
    ("message_id_too_long", "messageId", with_(TRACK, messageId="m" * 101)),
    ("timestamp_invalid", "timestamp", with_(TRACK, timestamp="yesterday")),
    ("event_too_large", "", with_(TRACK, properties={"blob": "x" * MAX_EVENT_BYTES})),
]


@pytest.mark.parametrize(("code", "field", "event"), FAILING, ids=[c for c, _, _ in FAILING])
def test_each_reason_code(code: str, field: str, event: object) -> None:
    violations = validate_event(event)
    assert [(v.code, v.field) for v in violations] == [(code, field)]
    assert violations[0].message


def test_every_reason_code_has_a_failing_example() -> None:
    assert sorted({code for code, _, _ in FAILING}) == sorted(REASON_CODES)


# --- the details of each rule ----------------------------------------------------------------


@pytest.mark.parametrize("payload", [None, "track", 1, 1.5, True, [], [{"type": "track"}]])
def test_non_objects(payload: object) -> None:
    assert codes(payload) == [("not_an_object", "")]


def test_type_must_be_a_string() -> None:
    assert codes(with_(TRACK, type=None)) == [("type_not_string", "type")]
    assert codes(with_(TRACK, type=["track"])) == [("type_not_string", "type")]
    assert codes(with_(TRACK, type="Track")) == [("type_invalid", "type")]


def test_unknown_type_still_gets_the_generic_checks_but_not_the_id_requirement() -> None:
    assert codes({"type": "purchase"}) == [("type_invalid", "type")]
    bad = {"type": "purchase", "userId": True, "messageId": 1, "context": 2, "sentAt": "soon"}
    assert codes(bad) == [
        ("type_invalid", "type"),
        ("user_id_not_string", "userId"),
        ("message_id_not_string", "messageId"),
        ("timestamp_invalid", "sentAt"),
        ("context_not_object", "context"),
    ]


@pytest.mark.parametrize(
    "ids",
    [
        {"userId": "u1"},
        {"anonymousId": "a1"},
        {"userId": 42},
        {"anonymousId": 4.2},
        {"userId": "", "anonymousId": "a1"},
        {"userId": None, "anonymousId": "a1"},
    ],
)
def test_user_or_anonymous_id_accepted(ids: dict[str, Any]) -> None:
    assert validate_event({"type": "identify", **ids}) == []


@pytest.mark.parametrize(
    "ids", [{}, {"userId": ""}, {"userId": None}, {"userId": "", "anonymousId": ""}, {"anonymousId": None}]
)
def test_user_and_anonymous_id_missing(ids: dict[str, Any]) -> None:
    assert codes({"type": "identify", **ids}) == [("no_user_anon_id", "userId")]


def test_booleans_are_not_ids() -> None:
    assert codes(with_(TRACK, userId=True)) == [("user_id_not_string", "userId")]
    assert codes(with_(PAGE, anonymousId=False)) == [("anonymous_id_not_string", "anonymousId")]


def test_a_wrong_id_type_is_reported_even_when_the_other_id_is_fine() -> None:
    assert codes(with_(TRACK, anonymousId={"x": 1})) == [("anonymous_id_not_string", "anonymousId")]


def test_delete_needs_no_user_or_anonymous_id_but_checks_their_types() -> None:
    assert validate_event({"type": "delete"}) == []
    assert codes({"type": "delete", "userId": []}) == [("user_id_not_string", "userId")]


def test_track_event_name_must_be_a_non_empty_string() -> None:
    assert codes(with_(TRACK, event=None)) == [("event_not_defined", "event")]
    assert codes(with_(TRACK, event="")) == [("event_not_string", "event")]
    assert codes(with_(TRACK, event={"name": "x"})) == [("event_not_string", "event")]


def test_event_field_is_only_required_on_track() -> None:
    assert validate_event(with_(IDENTIFY, event=5)) == []


def test_properties_checked_on_track_page_and_screen() -> None:
    for base in (TRACK, PAGE, SCREEN):
        assert codes(with_(base, properties="x")) == [("properties_not_object", "properties")]
        assert validate_event(with_(base, properties={"a": [1, {"b": None}]})) == []


def test_traits_checked_on_identify_and_group_and_context() -> None:
    assert codes(with_(GROUP, traits=[1])) == [("traits_not_object", "traits")]
    assert validate_event(with_(GROUP, traits={"plan": "pro"})) == []
    ctx = {"traits": "vip", "library": {"name": "x"}}
    assert codes(with_(PAGE, context=ctx)) == [("traits_not_object", "context.traits")]
    assert validate_event(with_(PAGE, context={"traits": {"email": "a@b.c"}})) == []


def test_page_and_screen_names() -> None:
    assert validate_event(with_(SCREEN, name="Home", category="Docs")) == []
    assert codes(with_(SCREEN, name=["Home"])) == [("name_not_string", "name")]
    assert codes(with_(SCREEN, category=1)) == [("category_not_string", "category")]


def test_group_and_alias_ids() -> None:
    assert validate_event(with_(GROUP, groupId=123)) == []
    assert codes(with_(GROUP, groupId="")) == [("group_id_not_defined", "groupId")]
    assert codes(with_(GROUP, groupId=True)) == [("group_id_not_string", "groupId")]
    assert validate_event(with_(ALIAS, previousId=7)) == []
    assert codes(with_(ALIAS, previousId=None)) == [("previous_id_not_defined", "previousId")]


def test_null_optional_fields_count_as_absent() -> None:
    nulls = dict.fromkeys(
        ("context", "integrations", "properties", "messageId", "timestamp", "sentAt", "originalTimestamp"),
        None,
    )
    assert validate_event(with_(TRACK, **nulls)) == []
    assert validate_event(with_(TRACK, context={"traits": None})) == []


def test_message_id_length_limit() -> None:
    assert validate_event(with_(TRACK, messageId="m" * 100)) == []
    assert codes(with_(TRACK, messageId="m" * 101)) == [("message_id_too_long", "messageId")]


@pytest.mark.parametrize("field", ["timestamp", "originalTimestamp", "sentAt", "receivedAt"])
@pytest.mark.parametrize("value", ["2015-13-45T00:00:00Z", "", 1424730535000, "Mon, 23 Feb 2015 22:28:55 GMT"])
def test_invalid_timestamps(field: str, value: object) -> None:
    assert codes(with_(TRACK, **{field: value})) == [("timestamp_invalid", field)]


@pytest.mark.parametrize(
    "value",
    [
        "2015-02-23T22:28:55.111Z",
        "2015-02-23T22:28:55+05:30",
        "2015-02-23T22:28:55.123456",
        "2015-02-23",
        "2020-05-09 23:54:49.209808489 +0000 UTC m=+70366.298768264",
    ],
)
def test_valid_timestamps(value: str) -> None:
    assert validate_event(with_(TRACK, timestamp=value, sentAt=value)) == []


def test_violations_are_all_reported_in_order() -> None:
    event = {"type": "group", "traits": 1, "integrations": 2, "messageId": [], "timestamp": "x"}
    assert codes(event) == [
        ("no_user_anon_id", "userId"),
        ("message_id_not_string", "messageId"),
        ("timestamp_invalid", "timestamp"),
        ("integrations_not_object", "integrations"),
        ("group_id_not_defined", "groupId"),
        ("traits_not_object", "traits"),
    ]


# --- size ------------------------------------------------------------------------------------


def test_size_limit_is_inclusive_and_measured_with_orjson() -> None:
    event = with_(TRACK, properties={"text": "é" * 100})
    size = len(orjson.dumps(event))
    assert validate_event(event, max_bytes=size) == []
    assert codes(event, max_bytes=size - 1) == [("event_too_large", "")]


def test_encoded_size_is_trusted_instead_of_re_encoding() -> None:
    big = with_(TRACK, properties={"blob": "x" * MAX_EVENT_BYTES})
    assert validate_event(big, encoded_size=100) == []
    assert codes(TRACK, encoded_size=MAX_EVENT_BYTES + 1) == [("event_too_large", "")]
    assert validate_event(TRACK, encoded_size=MAX_EVENT_BYTES) == []


def test_size_is_measured_even_where_orjson_cannot_encode() -> None:
    deep: Any = "leaf"
    for _ in range(300):  # beyond orjson's nesting limit
        deep = [deep]
    huge_int = with_(TRACK, properties={"n": 2**80, "pad": "x" * 200})
    nested = with_(TRACK, properties={"deep": deep})
    surrogate = with_(TRACK, properties={"s": json.loads('"\\ud800"'), "pad": "x" * 200})  # lone surrogate
    for event in (huge_int, nested, surrogate):
        with pytest.raises(orjson.JSONEncodeError):
            orjson.dumps(event)
        assert validate_event(event) == []
        assert codes(event, max_bytes=100) == [("event_too_large", "")]


# --- validate_or_raise -----------------------------------------------------------------------


def test_validate_or_raise_returns_the_event() -> None:
    assert validate_or_raise(TRACK) is TRACK


def test_validate_or_raise_raises_with_the_violations() -> None:
    event = without(GROUP, "groupId", "userId")
    with pytest.raises(EventValidationError) as caught:
        validate_or_raise(event)
    assert isinstance(caught.value, SluiceError)
    assert caught.value.violations == tuple(validate_event(event))
    assert [v.code for v in caught.value.violations] == ["no_user_anon_id", "group_id_not_defined"]
    assert "group_id_not_defined (groupId)" in str(caught.value)


def test_validate_or_raise_passes_the_size_options() -> None:
    with pytest.raises(EventValidationError) as caught:
        validate_or_raise(TRACK, max_bytes=10)
    assert [v.code for v in caught.value.violations] == ["event_too_large"]
    with pytest.raises(EventValidationError):
        validate_or_raise(TRACK, encoded_size=MAX_EVENT_BYTES + 1)


def test_validate_or_raise_on_a_non_object() -> None:
    with pytest.raises(EventValidationError) as caught:
        validate_or_raise("track")
    assert caught.value.violations == (Violation("not_an_object", "", caught.value.violations[0].message),)


def test_violation_is_frozen_and_serialisable() -> None:
    v = Violation("type_invalid", "type", "nope")
    with pytest.raises(AttributeError):
        v.code = "other"  # type: ignore[misc]
    assert v.to_dict() == {"code": "type_invalid", "field": "type", "message": "nope"}


# --- totality --------------------------------------------------------------------------------

SPEC_KEYS = [
    "type", "userId", "anonymousId", "event", "properties", "traits", "context", "integrations", "name",
    "category", "groupId", "previousId", "messageId", "timestamp", "originalTimestamp", "sentAt",
    "receivedAt", "library", "x",
]  # fmt: skip
STRINGS = ["", "track", "group", "alias", "delete", "2015-02-23T22:28:55Z", "9999-99-99", "\x00", "é" * 3]


def garbage(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 4 or roll < 0.45:
        return rng.choice([None, True, False, 0, -1, 2**70, 1.5e308, rng.choice(STRINGS), rng.randint(-(10**6), 10**6)])
    if roll < 0.6:
        return [garbage(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(SPEC_KEYS): garbage(rng, depth + 1) for _ in range(rng.randint(0, 8))}


def test_validation_is_total_on_random_json() -> None:
    rng = random.Random(20240301)
    seen: set[str] = set()
    for _ in range(3000):
        value = json.loads(json.dumps(garbage(rng)))  # exactly what a JSON decoder can hand over
        violations = validate_event(value, max_bytes=rng.choice([64, MAX_EVENT_BYTES]))
        assert all(isinstance(v, Violation) for v in violations)
        assert {v.code for v in violations} <= set(REASON_CODES)
        seen.update(v.code for v in violations)
    assert len(seen) >= 12  # the generator really reaches the checks


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "track", "userId": "u", "event": "\\ud800", "timestamp": "\\udfff"}',  # lone surrogates
        '{"type": "track", "userId": NaN, "event": "e", "properties": {"x": Infinity}}',
        '{"type": "identify", "userId": "u", "traits": {"n": 123456789012345678901234567890}}',
        '{"type": "page", "anonymousId": "a", "timestamp": "' + "9" * 5000 + '"}',
        '{"type": "track", "userId": "u", "event": "e", "properties": ' + "[" * 900 + "]" * 900 + "}",
        '{"": {}, "\\u0000": [], "context": {"traits": []}}',
    ],
)
def test_validation_is_total_on_nasty_json(text: str) -> None:
    violations = validate_event(json.loads(text), max_bytes=1000)
    assert {v.code for v in violations} <= set(REASON_CODES)


def test_unencodable_values_do_not_raise() -> None:
    # Not JSON at all (a set): the size cannot be measured, so no size verdict, but no exception either.
    assert validate_event(with_(TRACK, properties={"tags": {1, 2}})) == []
