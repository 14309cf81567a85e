"""sluice.actions.config: validation of an actions-webhook config (fields named), compilation into
Subscriptions, matching, and the secret header values."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sluice.actions import (
    Subscription,
    compile_subscriptions,
    matching_subscriptions,
    secret_header_values,
    validate_actions_config,
)
from sluice.errors import InvalidInput

ORDER = "type = 'track' and event = 'Order Completed'"


def sub(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "Orders",
        "trigger": ORDER,
        "mapping": {"revenue": {"@path": "$.properties.revenue"}, "user": {"@path": "$.userId"}},
        "request": {"url": "https://hooks.example.com/orders"},
    }
    base.update(overrides)
    return base


def config(*subs: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"subscriptions": list(subs) or [sub()], **top}


def invalid(value: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        validate_actions_config(value)
    return caught.value


# --- defaults -------------------------------------------------------------------------------------


def test_defaults_are_filled_in() -> None:
    assert validate_actions_config(config()) == {
        "subscriptions": [
            {
                "name": "Orders",
                "enabled": True,
                "trigger": ORDER,
                "mapping": {"revenue": {"@path": "$.properties.revenue"}, "user": {"@path": "$.userId"}},
                "request": {
                    "url": "https://hooks.example.com/orders",
                    "method": "POST",
                    "headers": {},
                    "batch": False,
                    "batchSize": 100,
                },
            }
        ],
        "timeoutMs": 10_000,
        "retryMaxAgeS": 14_400,
    }


def test_given_values_are_kept_and_validation_is_idempotent() -> None:
    given = config(
        sub(
            enabled=False,
            request={
                "url": "http://127.0.0.1:9000/x?y=1",
                "method": "patch",
                "headers": {"Authorization": "Bearer s3cret-token", "X-Team": "growth"},
                "batch": True,
                "batchSize": 500,
            },
        ),
        sub(name="Signups", trigger="type = 'identify'", mapping={}),
        timeoutMs=100,
        retryMaxAgeS=604_800,
    )
    before = copy.deepcopy(given)
    validated = validate_actions_config(given)
    assert given == before  # the input is not changed
    first = validated["subscriptions"][0]
    assert first["enabled"] is False
    assert first["request"] == {
        "url": "http://127.0.0.1:9000/x?y=1",
        "method": "PATCH",
        "headers": {"Authorization": "Bearer s3cret-token", "X-Team": "growth"},
        "batch": True,
        "batchSize": 500,
    }
    assert validated["subscriptions"][1]["mapping"] == {}
    assert (validated["timeoutMs"], validated["retryMaxAgeS"]) == (100, 604_800)
    assert validate_actions_config(validated) == validated


# --- errors name the field ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "field", "fragment"),
    [
        ([], "config", "must be an object"),
        ({}, "config.subscriptions", "at least one"),
        ({"subscriptions": []}, "config.subscriptions", "at least one"),
        ({"subscriptions": {"a": 1}}, "config.subscriptions", "list"),
        ({"subscriptions": [sub(name=f"s{i}") for i in range(51)]}, "config.subscriptions", "at most 50"),
        (config(url="https://x.example"), "config.url", "unknown setting 'url'"),
        (config(timeoutMs=99), "config.timeoutMs", "between 100 and 120000"),
        (config(timeoutMs=120_001), "config.timeoutMs", "between"),
        (config(timeoutMs="100"), "config.timeoutMs", "integer"),
        (config(retryMaxAgeS=0), "config.retryMaxAgeS", "between 1 and 604800"),
        (config(retryMaxAgeS=True), "config.retryMaxAgeS", "integer"),
        (config("nope"), "config.subscriptions[0]", "must be an object"),  # type: ignore[arg-type]
        (config(sub(), sub(extra=1)), "config.subscriptions[1].extra", "unknown setting 'extra'"),
        (config(sub(name="")), "config.subscriptions[0].name", "required"),
        (config(sub(name=None)), "config.subscriptions[0].name", "required"),
        (config(sub(name="x" * 201)), "config.subscriptions[0].name", "at most 200"),
        (config(sub(), sub(name="Orders")), "config.subscriptions[1].name", "unique"),
        (config(sub(enabled="yes")), "config.subscriptions[0].enabled", "true or false"),
        (config(sub(trigger=None)), "config.subscriptions[0].trigger", "required"),
        (config(sub(trigger="  ")), "config.subscriptions[0].trigger", "required"),
        (config(sub(trigger=3)), "config.subscriptions[0].trigger", "required"),
        (config(sub(mapping=None)), "config.subscriptions[0].mapping", "required"),
        (config(sub(mapping=[1])), "config.subscriptions[0].mapping", "an object"),
        (
            config(sub(), sub(name="b", mapping={"user": {"@pth": "$.userId"}})),
            "config.subscriptions[1].mapping.user.@pth",
            "unknown directive",
        ),
        (config(sub(mapping={"a": [{"@if": {"exists": 1}}]})), "config.subscriptions[0].mapping.a[0].@if", '"then"'),
        (config(sub(request=None)), "config.subscriptions[0].request", "must be an object"),
        (
            config(sub(request={"url": "https://a.example", "verb": "POST"})),
            "config.subscriptions[0].request.verb",
            "unknown",
        ),
        (config(sub(), sub(name="b", request={})), "config.subscriptions[1].request.url", "required"),
        (
            config(sub(), sub(name="b", request={"url": "ftp://a.example"})),
            "config.subscriptions[1].request.url",
            "http",
        ),
        (config(sub(request={"url": "https://"})), "config.subscriptions[0].request.url", "no host"),
        (config(sub(request={"url": "https://a.example:99999"})), "config.subscriptions[0].request.url", "valid URL"),
        (config(sub(request={"url": "https://a.example/a b"})), "config.subscriptions[0].request.url", "spaces"),
        (config(sub(request={"url": 5})), "config.subscriptions[0].request.url", "string"),
        (
            config(sub(request={"url": "https://a.example", "method": "GET"})),
            "config.subscriptions[0].request.method",
            "POST",
        ),
        (
            config(sub(request={"url": "https://a.example", "method": None})),
            "config.subscriptions[0].request.method",
            "one of",
        ),
        (
            config(sub(request={"url": "https://a.example", "headers": []})),
            "config.subscriptions[0].request.headers",
            "object",
        ),
        (
            config(sub(request={"url": "https://a.example", "headers": {"A": 1}})),
            "config.subscriptions[0].request.headers",
            "string",
        ),
        (
            config(sub(request={"url": "https://a.example", "headers": {"A B": "x"}})),
            "config.subscriptions[0].request.headers",
            "not allowed",
        ),
        (
            config(sub(request={"url": "https://a.example", "headers": {"A": "x\r\nB: y"}})),
            "config.subscriptions[0].request.headers",
            "not allowed",
        ),
        (
            config(sub(request={"url": "https://a.example", "batch": "true"})),
            "config.subscriptions[0].request.batch",
            "true or false",
        ),
        (
            config(sub(request={"url": "https://a.example", "batchSize": 0})),
            "config.subscriptions[0].request.batchSize",
            "between 1 and 500",
        ),
        (
            config(sub(request={"url": "https://a.example", "batchSize": 501})),
            "config.subscriptions[0].request.batchSize",
            "between",
        ),
        (
            config(sub(request={"url": "https://a.example", "batchSize": 2.0})),
            "config.subscriptions[0].request.batchSize",
            "integer",
        ),
    ],
)
def test_invalid_configs_name_the_field(value: Any, field: str, fragment: str) -> None:
    error = invalid(value)
    assert error.field == field
    assert fragment in error.message
    assert error.status == 422


@pytest.mark.parametrize("trigger", ["type = = 'track'", "type = 'track' and", "event = 'unterminated", "(type = 'x'"])
def test_invalid_trigger_names_the_field_and_the_position(trigger: str) -> None:
    error = invalid(config(sub(), sub(name="b", trigger=trigger)))
    assert error.field == "config.subscriptions[1].trigger"
    assert "trigger is not valid FQL" in error.message
    assert "position" in error.message


def test_null_headers_mean_none() -> None:
    validated = validate_actions_config(config(sub(request={"url": "https://a.example", "headers": None})))
    assert validated["subscriptions"][0]["request"]["headers"] == {}


# --- compile_subscriptions ------------------------------------------------------------------------

TRACK = {
    "type": "track",
    "event": "Order Completed",
    "userId": "u1",
    "properties": {"revenue": 12.5, "products": [{"product_id": "p1"}]},
}
IDENTIFY = {"type": "identify", "userId": "u1", "traits": {"email": "a@example.com"}}


def compiled() -> list[Subscription]:
    return compile_subscriptions(
        validate_actions_config(
            config(
                sub(),
                sub(
                    name="Every track",
                    trigger="type = 'track'",
                    mapping={
                        "event": {"@path": "$.event"},
                        "ids": {"@arrayPath": ["$.properties.products", {"id": {"@path": "$.product_id"}}]},
                    },
                    request={
                        "url": "https://hooks.example.com/track",
                        "method": "put",
                        "headers": {"X-Api-Key": "k3y-k3y-k3y"},
                        "batch": True,
                        "batchSize": 20,
                    },
                ),
                sub(
                    name="Identify (off)",
                    enabled=False,
                    trigger="type = 'identify'",
                    mapping={"email": {"@path": "$.traits.email"}},
                ),
            )
        )
    )


def test_compile_subscriptions_builds_ready_to_run_values() -> None:
    orders, tracks, identify = compiled()
    assert (orders.name, orders.enabled, orders.url, orders.method, dict(orders.headers)) == (
        "Orders",
        True,
        "https://hooks.example.com/orders",
        "POST",
        {},
    )
    assert (orders.batch, orders.batch_size) == (False, 100)
    assert (tracks.method, dict(tracks.headers), tracks.batch, tracks.batch_size) == (
        "PUT",
        {"X-Api-Key": "k3y-k3y-k3y"},
        True,
        20,
    )
    assert identify.enabled is False
    assert orders.trigger(TRACK) is True
    assert orders.trigger({**TRACK, "event": "Cart Viewed"}) is False
    assert orders.mapper(TRACK) == {"revenue": 12.5, "user": "u1"}
    assert tracks.mapper(TRACK) == {"event": "Order Completed", "ids": [{"id": "p1"}]}
    assert identify.mapper(IDENTIFY) == {"email": "a@example.com"}


def test_subscriptions_are_frozen() -> None:
    orders = compiled()[0]
    with pytest.raises(AttributeError):
        orders.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        orders.headers["X"] = "y"  # type: ignore[index]


def test_matching_subscriptions_skips_disabled_ones_and_non_matches() -> None:
    subscriptions = compiled()
    assert [s.name for s in matching_subscriptions(subscriptions, TRACK)] == ["Orders", "Every track"]
    assert [s.name for s in matching_subscriptions(subscriptions, {**TRACK, "event": "X"})] == ["Every track"]
    assert matching_subscriptions(subscriptions, IDENTIFY) == []  # only the disabled one would match


def test_a_trigger_that_raises_does_not_match() -> None:
    orders = compiled()[0]

    def boom(_event: Any) -> bool:
        raise RuntimeError("bug")

    broken = Subscription(
        name="b", enabled=True, trigger=boom, mapper=orders.mapper, url=orders.url, method="POST",
        headers={}, batch=False, batch_size=1,
    )  # fmt: skip
    assert matching_subscriptions([broken, orders], TRACK) == [orders]


# --- secrets --------------------------------------------------------------------------------------


def test_secret_header_values() -> None:
    validated = validate_actions_config(
        config(
            sub(request={"url": "https://a.example", "headers": {"Authorization": "Bearer tok-123", "X-Env": "prod"}}),
            sub(name="b", request={"url": "https://b.example", "headers": {"X-Other": "prod", "Empty": ""}}),
            sub(name="c"),
        )
    )
    assert secret_header_values(validated) == ["Bearer tok-123", "tok-123", "prod"]


def test_secret_header_values_of_a_config_without_headers() -> None:
    assert secret_header_values(validate_actions_config(config())) == []
