"""The filter engine: each action, Segment's order across filters, scoping, and no mutation."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from sluice.filters import (
    ALWAYS_KEPT,
    DestinationFilter,
    Dropped,
    Kept,
    apply_filters,
    parse_actions,
    parse_filter,
    sample_bucket,
)


def flt(
    *actions: dict[str, Any],
    when: Callable[[Mapping[str, Any]], bool] = lambda event: True,
    **fields: Any,
) -> DestinationFilter:
    """A filter with a plain-Python condition (the engine does not care how it was compiled)."""
    return DestinationFilter(if_="test", condition=when, actions=parse_actions(list(actions)), **fields)


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "track",
        "event": "Order Completed",
        "messageId": "m-1",
        "userId": "u-1",
        "timestamp": "2026-11-26T10:00:00Z",
        "properties": {"email": "a@example.com", "phone": "555", "plan": "pro", "total": 10},
        "context": {"ip": "10.0.0.1", "library": {"name": "analytics.js"}},
    }
    base.update(overrides)
    return base


DROP = {"type": "DROP"}


def kept(outcome: object) -> dict[str, Any]:
    assert isinstance(outcome, Kept), outcome
    return outcome.event


# --- the actions ------------------------------------------------------------------------------


def test_no_filters_keeps_the_same_object() -> None:
    e = event()
    outcome = apply_filters([], "src", e)
    assert outcome == Kept(e, False)
    assert isinstance(outcome, Kept) and outcome.event is e


def test_drop_names_the_filter_by_title_then_id() -> None:
    outcome = apply_filters([flt(DROP, title="No test users", id="df_1")], "src", event())
    assert outcome == Dropped("df_1", "No test users", "dropped by filter 'No test users' (DROP)")
    outcome = apply_filters([flt(DROP, id="df_2")], "src", event())
    assert isinstance(outcome, Dropped) and outcome.reason == "dropped by filter 'df_2' (DROP)"


def test_a_condition_that_does_not_match_contributes_nothing() -> None:
    e = event()
    outcome = apply_filters([flt(DROP, when=lambda ev: ev.get("type") == "identify")], "src", e)
    assert outcome == Kept(e, False)


def test_drop_properties_at_a_path_and_at_the_top_level() -> None:
    e = event()
    action = {"type": "DROP_PROPERTIES", "fields": {"properties": ["email", "phone"], "": ["context"]}}
    out = kept(apply_filters([flt(action)], "src", e))
    assert out == {k: v for k, v in event().items() if k != "context"} | {"properties": {"plan": "pro", "total": 10}}


def test_allow_properties_keeps_only_the_listed_keys() -> None:
    action = {"type": "ALLOW_PROPERTIES", "fields": {"properties": ["plan"], "context": ["library"]}}
    out = kept(apply_filters([flt(action)], "src", event()))
    assert out["properties"] == {"plan": "pro"}
    assert out["context"] == {"library": {"name": "analytics.js"}}
    assert out["userId"] == "u-1"


def test_allow_at_the_top_level_always_keeps_the_identifying_fields() -> None:
    e = event(anonymousId="a-1", sentAt="2026-11-26T10:00:00Z", integrations={"All": True})
    out = kept(apply_filters([flt({"type": "ALLOW_PROPERTIES", "fields": {"": ["properties"]}})], "src", e))
    assert set(out) == {"type", "event", "messageId", "userId", "anonymousId", "timestamp", "sentAt", "properties"}
    assert {"type", "messageId", "userId", "anonymousId", "event", "timestamp"} <= ALWAYS_KEPT


def test_missing_paths_and_non_objects_are_left_alone() -> None:
    e = event(traits="not an object")
    action = {"type": "DROP_PROPERTIES", "fields": {"traits": ["x"], "nowhere.deeper": ["y"], "userId": ["z"]}}
    outcome = apply_filters([flt(action)], "src", e)
    assert outcome == Kept(e, False)
    assert isinstance(outcome, Kept) and outcome.event is e


def test_properties_apply_to_every_object_of_an_array() -> None:
    e = event(
        properties={
            "products": [
                {"sku": "a", "price": 1, "cost": 0.5},
                "not an object",
                {"sku": "b", "price": 2},
                {"sku": "c", "cost": 1, "variants": [{"id": 1, "cost": 2}, {"id": 2}]},
            ]
        }
    )
    dropped = kept(
        apply_filters([flt({"type": "DROP_PROPERTIES", "fields": {"properties.products": ["cost"]}})], "s", e)
    )
    assert dropped["properties"]["products"] == [
        {"sku": "a", "price": 1},
        "not an object",
        {"sku": "b", "price": 2},
        {"sku": "c", "variants": [{"id": 1, "cost": 2}, {"id": 2}]},
    ]
    # arrays met on the way fan out too
    nested = {"type": "DROP_PROPERTIES", "fields": {"properties.products.variants": ["cost"]}}
    out = kept(apply_filters([flt(nested)], "s", e))
    assert out["properties"]["products"][3]["variants"] == [{"id": 1}, {"id": 2}]
    assert out["properties"]["products"][0] is e["properties"]["products"][0]  # untouched objects are shared
    allowed = kept(
        apply_filters([flt({"type": "ALLOW_PROPERTIES", "fields": {"properties.products": ["sku"]}})], "s", e)
    )
    assert allowed["properties"]["products"] == [{"sku": "a"}, "not an object", {"sku": "b"}, {"sku": "c"}]


def test_sample_without_a_path_keeps_about_percent() -> None:
    rng = random.Random(7)
    sample = flt({"type": "SAMPLE", "percent": 0.3}, title="Sample")
    results = [apply_filters([sample], "src", event(), rng=rng) for _ in range(4000)]
    share = sum(isinstance(r, Kept) for r in results) / len(results)
    assert 0.27 < share < 0.33
    dropped = next(r for r in results if isinstance(r, Dropped))
    assert dropped.reason == "sampled out by filter 'Sample' (SAMPLE 30%)"


@pytest.mark.parametrize("percent, kept_all", [(0, False), (1, True), (1.0, True)])
def test_sample_edges(percent: float, kept_all: bool) -> None:
    sample = flt({"type": "SAMPLE", "percent": percent})
    results = {isinstance(apply_filters([sample], "s", event(userId=f"u{i}")), Kept) for i in range(200)}
    assert results == {kept_all}


def test_sample_by_path_is_deterministic_per_value_and_keeps_about_percent() -> None:
    sample = flt({"type": "SAMPLE", "percent": 0.25, "path": "userId"}, title="Quarter")
    ids = [f"user-{i}" for i in range(8000)]
    first = {uid: isinstance(apply_filters([sample], "s", event(userId=uid)), Kept) for uid in ids}
    share = sum(first.values()) / len(ids)
    assert 0.23 < share < 0.27
    for uid in ids[:500]:  # the same user is always kept or always dropped, whatever the rng
        again = apply_filters([sample], "s", event(userId=uid, messageId="other"), rng=random.Random(uid))
        assert isinstance(again, Kept) == first[uid]
    # a bucket is stable across processes and releases (blake2b of the value), and numbers hash as their text
    assert sample_bucket("user-1") == pytest.approx(sample_bucket("user-1"))
    assert sample_bucket(123) == sample_bucket("123")
    assert 0 <= sample_bucket({"a": [1, 2]}) < 1
    dropped = next(o for uid in ids if isinstance(o := apply_filters([sample], "s", event(userId=uid)), Dropped))
    assert dropped.reason == "sampled out by filter 'Quarter' (SAMPLE 25% by userId)"


def test_sample_by_a_nested_path_and_without_a_value_there() -> None:
    sample = flt({"type": "SAMPLE", "percent": 0.5, "path": "context.device.id"})
    keeps = {
        d: isinstance(apply_filters([sample], "s", event(context={"device": {"id": d}})), Kept) for d in "abcdefgh"
    }
    for d, was_kept in keeps.items():
        assert isinstance(apply_filters([sample], "s", event(context={"device": {"id": d}})), Kept) == was_kept
    # no value at the path: sampled at random (the share holds for events without it)
    rng = random.Random(3)
    results = [apply_filters([sample], "s", event(context={}), rng=rng) for _ in range(2000)]
    assert 0.45 < sum(isinstance(r, Kept) for r in results) / 2000 < 0.55


# --- Segment's order: Sample → Drop → Drop Properties → Allow Properties ----------------------------


def test_sample_runs_before_drop_across_filters() -> None:
    # the DROP filter comes first, yet an event sampled out is reported as sampled out
    filters = [flt(DROP, title="Drop all"), flt({"type": "SAMPLE", "percent": 0}, title="None kept")]
    outcome = apply_filters(filters, "s", event())
    assert isinstance(outcome, Dropped) and outcome.title == "None kept" and "SAMPLE 0%" in outcome.reason
    # a sampled-in event still meets the DROP
    filters = [flt(DROP, title="Drop all"), flt({"type": "SAMPLE", "percent": 1}, title="All kept")]
    outcome = apply_filters(filters, "s", event())
    assert isinstance(outcome, Dropped) and outcome.title == "Drop all"


def test_drop_properties_run_before_allow_properties_across_filters() -> None:
    allow = flt({"type": "ALLOW_PROPERTIES", "fields": {"properties": ["email", "plan"]}})
    drop = flt({"type": "DROP_PROPERTIES", "fields": {"properties": ["email"]}})
    for filters in ([allow, drop], [drop, allow]):
        assert kept(apply_filters(filters, "s", event()))["properties"] == {"plan": "pro"}


def test_drop_wins_over_property_actions() -> None:
    filters = [flt({"type": "DROP_PROPERTIES", "fields": {"properties": ["email"]}}), flt(DROP, id="df_9")]
    assert isinstance(apply_filters(filters, "s", event()), Dropped)


def test_conditions_see_the_original_event() -> None:
    # the second filter's condition reads properties.email, which the first filter removes
    strip = flt({"type": "DROP_PROPERTIES", "fields": {"properties": ["email"]}})
    by_email = flt(DROP, when=lambda ev: "email" in ev.get("properties", {}), title="Has email")
    outcome = apply_filters([strip, by_email], "s", event())
    assert isinstance(outcome, Dropped) and outcome.title == "Has email"


def test_several_actions_in_one_filter() -> None:
    both = flt(
        {"type": "ALLOW_PROPERTIES", "fields": {"properties": ["plan", "email"]}},
        {"type": "DROP_PROPERTIES", "fields": {"properties": ["email"], "": ["context"]}},
        {"type": "SAMPLE", "percent": 1},
    )
    out = kept(apply_filters([both], "s", event()))
    assert out["properties"] == {"plan": "pro"} and "context" not in out


# --- scoping and enabled -------------------------------------------------------------------------


def test_source_scoping() -> None:
    only_web = flt(DROP, source_id="src_web")
    assert isinstance(apply_filters([only_web], "src_web", event()), Dropped)
    assert isinstance(apply_filters([only_web], "src_ios", event()), Kept)
    every = flt(DROP, source_id=None)
    assert isinstance(apply_filters([every], "src_ios", event()), Dropped)


def test_disabled_filters_do_nothing() -> None:
    calls: list[object] = []

    def when(ev: Mapping[str, Any]) -> bool:
        calls.append(ev)
        return True

    outcome = apply_filters([flt(DROP, enabled=False, when=when)], "s", event())
    assert isinstance(outcome, Kept) and not outcome.changed
    assert calls == []  # not even evaluated


# --- the input is never mutated ------------------------------------------------------------------


def test_the_input_event_is_never_mutated() -> None:
    e = event(properties={"email": "x", "items": [{"a": 1, "b": 2}], "plan": "p"})
    snapshot = copy.deepcopy(e)
    filters = [
        flt({"type": "DROP_PROPERTIES", "fields": {"properties": ["email"], "properties.items": ["a"]}}),
        flt({"type": "ALLOW_PROPERTIES", "fields": {"": ["properties"], "properties": ["items", "plan"]}}),
    ]
    outcome = apply_filters(filters, "s", e)
    assert isinstance(outcome, Kept) and outcome.changed
    assert outcome.event == {
        "type": "track",
        "event": "Order Completed",
        "messageId": "m-1",
        "userId": "u-1",
        "timestamp": "2026-11-26T10:00:00Z",
        "properties": {"items": [{"b": 2}], "plan": "p"},
    }
    assert e == snapshot
    assert outcome.event is not e and outcome.event["properties"] is not e["properties"]


def test_parse_filter_with_all_matches_everything() -> None:
    every = parse_filter({"if": "all", "actions": [DROP], "title": "Everything"})
    for e in (event(), {"type": "identify"}, {}):
        assert isinstance(apply_filters([every], "s", e), Dropped)


def test_real_fql_conditions() -> None:
    no_tests = parse_filter(
        {"if": "type = 'track' and match(userId, 'test-*')", "actions": [DROP], "title": "No test users"}
    )
    strip = parse_filter(
        {"if": "properties.plan = 'pro'", "actions": [{"type": "DROP_PROPERTIES", "fields": {"properties": ["email"]}}]}
    )
    assert isinstance(apply_filters([no_tests, strip], "s", event(userId="test-7")), Dropped)
    out = kept(apply_filters([no_tests, strip], "s", event(userId="real")))
    assert "email" not in out["properties"]
    free = event(userId="real", properties={"plan": "free", "email": "x"})
    assert apply_filters([no_tests, strip], "s", free) == Kept(free, False)
