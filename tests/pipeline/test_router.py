from __future__ import annotations

from typing import Any

import pytest

from sluice.delivery.outcomes import Outcome
from sluice.filters import DestinationFilter, parse_filter
from sluice.pipeline.router import Filtered, Proceed, Route, decide, integrations_allow


def route(**overrides: Any) -> Route:
    values: dict[str, Any] = {
        "destination_id": "dst_1",
        "destination_name": "Webhook",
        "enabled": True,
        "source_ids": frozenset({"src_a", "src_b"}),
        "instance_enabled": True,
        "filters": (),
    }
    values.update(overrides)
    return Route(**values)


def event(**extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Signed Up", "messageId": "m1", **extra}


ABSENT = object()

INTEGRATIONS_CASES = [
    pytest.param(ABSENT, True, id="absent"),
    pytest.param({}, True, id="empty"),
    pytest.param(None, True, id="null-not-a-dict"),
    pytest.param(["Webhook"], True, id="list-not-a-dict"),
    pytest.param("All", True, id="string-not-a-dict"),
    pytest.param({"All": True}, True, id="all-true"),
    pytest.param({"All": False}, False, id="all-false"),
    pytest.param({"All": False, "Webhook": True}, True, id="all-false-name-true"),
    pytest.param({"All": True, "Webhook": False}, False, id="all-true-name-false"),
    pytest.param({"Webhook": False}, False, id="name-false-all-default"),
    pytest.param({"All": False, "webhook": True}, False, id="name-case-mismatch-falls-back-to-all-false"),
    pytest.param({"All": True, "webhook": False}, True, id="name-case-mismatch-falls-back-to-all-true"),
    pytest.param({"webhook": False}, True, id="name-case-mismatch-all-default"),
    pytest.param({"all": False}, True, id="lowercase-all-is-not-All"),
    pytest.param({"All": False, "Webhook": {"apiKey": "k"}}, True, id="name-options-dict"),
    pytest.param({"All": False, "Webhook": {}}, True, id="name-empty-options-dict"),
    pytest.param({"Mixpanel": False}, True, id="other-destination-false"),
    # Only a real boolean false turns a destination off; other values count as "present, enabled".
    pytest.param({"Webhook": "false"}, True, id="name-string-false-proceeds"),
    pytest.param({"All": False, "Webhook": "false"}, True, id="name-string-false-overrides-all"),
    pytest.param({"Webhook": 0}, True, id="name-zero-proceeds"),
    pytest.param({"Webhook": None}, True, id="name-null-proceeds"),
    pytest.param({"All": "false"}, True, id="all-string-false-proceeds"),
    pytest.param({"All": 0}, True, id="all-zero-proceeds"),
]


@pytest.mark.parametrize(("integrations", "proceeds"), INTEGRATIONS_CASES)
def test_integrations_object(integrations: object, proceeds: bool) -> None:
    ev = event() if integrations is ABSENT else event(integrations=integrations)
    decision = decide(route(), "src_a", ev)
    if proceeds:
        assert decision == Proceed(use_function=True)
    else:
        assert isinstance(decision, Filtered)
        assert decision.by == "integrations"
        assert decision.outcome is Outcome.FILTERED
        assert "false" in decision.reason


def test_integrations_reasons_name_the_key() -> None:
    assert integrations_allow({"Webhook": False}, "Webhook") == (False, "integrations['Webhook'] is false")
    allowed, why = integrations_allow({"All": False}, "Webhook")
    assert not allowed and "'All'" in why and "'Webhook'" in why


def test_not_connected() -> None:
    decision = decide(route(), "src_other", event())
    assert isinstance(decision, Filtered)
    assert decision.by == "not_connected"
    assert "src_other" in decision.reason and "not connected" in decision.reason


def test_not_connected_wins_over_disabled() -> None:
    decision = decide(route(enabled=False), "src_other", event())
    assert isinstance(decision, Filtered) and decision.by == "not_connected"


def test_disabled() -> None:
    decision = decide(route(enabled=False), "src_a", event(integrations={"Webhook": True}))
    assert isinstance(decision, Filtered)
    assert decision.by == "disabled"
    assert "disabled" in decision.reason


def drop(if_: str = "all", **fields: Any) -> DestinationFilter:
    return parse_filter({"if": if_, "actions": [{"type": "DROP"}], **fields})


def test_integrations_checked_before_filters() -> None:
    decision = decide(route(filters=(drop(),)), "src_a", event(integrations={"All": False}))
    assert isinstance(decision, Filtered) and decision.by == "integrations"


def test_filter_for_all_sources_drops() -> None:
    decision = decide(route(filters=(drop(title="drop everything"),)), "src_b", event())
    assert isinstance(decision, Filtered)
    assert decision.by == "destination_filter"
    assert "'drop everything'" in decision.reason and "DROP" in decision.reason


def test_filters_by_source() -> None:
    r = route(filters=(drop(sourceId="src_b", title="only b"),))
    assert decide(r, "src_a", event()) == Proceed(use_function=True)
    decision = decide(r, "src_b", event())
    assert isinstance(decision, Filtered) and decision.by == "destination_filter"
    assert "only b" in decision.reason


def test_disabled_filter_is_skipped() -> None:
    r = route(filters=(drop(enabled=False, title="off"), drop(sourceId="src_a", title="second")))
    decision = decide(r, "src_a", event())
    assert isinstance(decision, Filtered)
    assert "'second'" in decision.reason
    assert decide(r, "src_b", event()) == Proceed(use_function=True)


def test_filter_conditions_are_fql() -> None:
    r = route(filters=(drop("event = 'Signed Up' and properties.plan != 'pro'", title="free sign-ups"),))
    assert isinstance(decide(r, "src_a", event(properties={"plan": "free"})), Filtered)
    assert decide(r, "src_a", event(properties={"plan": "pro"})) == Proceed(use_function=True)


def test_filters_may_change_the_event_without_mutating_the_input() -> None:
    strip = parse_filter({"if": "all", "actions": [{"type": "DROP_PROPERTIES", "fields": {"properties": ["email"]}}]})
    ev = event(properties={"email": "a@b.c", "plan": "pro"})
    decision = decide(route(filters=(strip,)), "src_a", ev)
    assert isinstance(decision, Proceed) and decision.event is not None
    assert decision.event["properties"] == {"plan": "pro"}
    assert ev["properties"] == {"email": "a@b.c", "plan": "pro"}


def test_filter_can_drop_even_when_integrations_enable() -> None:
    decision = decide(route(filters=(drop(),)), "src_a", event(integrations={"Webhook": True}))
    assert isinstance(decision, Filtered) and decision.by == "destination_filter"


def test_route_coerces_iterables_and_checks_filters() -> None:
    r = Route("d", "Webhook", True, source_ids={"s"}, filters=[drop()])  # type: ignore[arg-type]
    assert r.source_ids == frozenset({"s"}) and isinstance(r.filters, tuple)
    with pytest.raises(TypeError):
        Route("d", "Webhook", True, frozenset({"s"}), filters=({"if": "all"},))  # type: ignore[arg-type]


@pytest.mark.parametrize(("instance_enabled", "use_function"), [(True, True), (False, False), (None, False)])
def test_use_function(instance_enabled: bool | None, use_function: bool) -> None:
    assert decide(route(instance_enabled=instance_enabled), "src_a", event()) == Proceed(use_function=use_function)


def test_decide_does_not_mutate_event() -> None:
    ev = event(integrations={"All": False, "Webhook": {"k": 1}})
    before = repr(ev)
    decide(route(filters=(drop(sourceId="x"),)), "src_a", ev)
    assert repr(ev) == before
