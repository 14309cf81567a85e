"""Outcome values, trace redaction, and destination config validation."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.delivery import SENSITIVE_PATHS, Outcome, mask_config, retryable, secrets_of, validate_config
from sluice.delivery.outcomes import REDACTED, trace_request, trace_response
from sluice.delivery.secrets import value_at
from sluice.errors import InvalidInput


def test_outcome_values_are_design_names() -> None:
    assert {str(o) for o in Outcome} == {
        "delivered",
        "filtered",
        "dropped",
        "unsupported_event_type",
        "message_rejected",
        "retrying",
        "expired",
        "bad_request",
        "invalid_settings",
        "timeout",
        "rejected_by_destination",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Outcome.RETRYING, True),
        (Outcome.TIMEOUT, True),
        ("retrying", True),
        (Outcome.DELIVERED, False),
        (Outcome.REJECTED_BY_DESTINATION, False),
        (Outcome.EXPIRED, False),
        (429, True),
        (500, True),
        (503, True),
        (599, True),
        (200, False),
        (400, False),
        (401, False),
        (404, False),
    ],
)
def test_retryable(value: Outcome | str | int, expected: bool) -> None:
    assert retryable(value) is expected


def test_trace_redacts_auth_headers_secrets_and_truncates_body() -> None:
    body = b'{"token":"s3cr3t-value","pad":"' + b"x" * 5000 + b'"}'
    trace = trace_request(
        "POST",
        "https://h.example/hook?key=s3cr3t-value",
        {"Authorization": "Bearer abc", "Cookie": "a=b", "X-Api-Key": "k", "X-Plain": "ok s3cr3t-value", "X-Mine": "v"},
        body,
        secrets=["s3cr3t-value"],
        redact_header_names=["x-mine"],
    )
    assert trace["url"] == f"https://h.example/hook?key={REDACTED}"
    assert trace["headers"] == {
        "Authorization": REDACTED,
        "Cookie": REDACTED,
        "X-Api-Key": REDACTED,
        "X-Plain": f"ok {REDACTED}",
        "X-Mine": REDACTED,
    }
    assert "s3cr3t" not in trace["body"]
    assert len(trace["body"].encode()) == 2048
    assert trace["bodyTruncated"] is True and trace["bodyBytes"] == len(body)


def test_secret_across_the_truncation_point_leaves_no_prefix() -> None:
    secret = "ABCDEFGHIJKLMNOP"
    body = b"y" * 2040 + secret.encode()
    trace = trace_response(500, {"Set-Cookie": "sid=1"}, body, secrets=[secret])
    assert "ABCDEFGH" not in trace["body"]
    assert trace["headers"] == {"Set-Cookie": REDACTED}
    assert trace["status"] == 500


# --- config -----------------------------------------------------------------------------------


def test_webhook_defaults() -> None:
    assert validate_config("webhook", {"url": "https://h.example/x"}) == {
        "url": "https://h.example/x",
        "method": "POST",
        "headers": {},
        "batchSize": 1,
        "timeoutMs": 10_000,
        "retryMaxAgeS": 4 * 3600,
    }
    assert validate_config("webhook", {"url": "http://h/x", "method": "put"})["method"] == "PUT"


def test_segment_defaults() -> None:
    cfg = validate_config("segment", {"url": "http://127.0.0.1:1/", "writeKey": "wk"})
    assert cfg == {
        "url": "http://127.0.0.1:1",
        "writeKey": "wk",
        "batchSize": 100,
        "timeoutMs": 10_000,
        "retryMaxAgeS": 4 * 3600,
    }


def test_function_destination_config_holds_only_the_retry_age() -> None:
    assert validate_config("function", {}) == {"retryMaxAgeS": 4 * 3600}
    assert validate_config("function", {"retryMaxAgeS": 5}) == {"retryMaxAgeS": 5}


@pytest.mark.parametrize(
    ("type_", "config", "field"),
    [
        ("webhook", {}, "config.url"),
        ("webhook", {"url": ""}, "config.url"),
        ("webhook", {"url": 5}, "config.url"),
        ("webhook", {"url": "ftp://h/x"}, "config.url"),
        ("webhook", {"url": "h.example/x"}, "config.url"),
        ("webhook", {"url": "http://"}, "config.url"),
        ("webhook", {"url": "http://h:99999/x"}, "config.url"),
        ("webhook", {"url": "http://h/x", "batchSize": 0}, "config.batchSize"),
        ("webhook", {"url": "http://h/x", "batchSize": 501}, "config.batchSize"),
        ("webhook", {"url": "http://h/x", "batchSize": "10"}, "config.batchSize"),
        ("webhook", {"url": "http://h/x", "batchSize": True}, "config.batchSize"),
        ("webhook", {"url": "http://h/x", "timeoutMs": 99}, "config.timeoutMs"),
        ("webhook", {"url": "http://h/x", "timeoutMs": 120_001}, "config.timeoutMs"),
        ("webhook", {"url": "http://h/x", "headers": ["a"]}, "config.headers"),
        ("webhook", {"url": "http://h/x", "headers": {"X-N": 1}}, "config.headers"),
        ("webhook", {"url": "http://h/x", "headers": {"X-N": "a\r\nEvil: 1"}}, "config.headers"),
        ("webhook", {"url": "http://h/x", "method": "GET"}, "config.method"),
        ("webhook", {"url": "http://h/x", "batchsize": 2}, "config.batchsize"),
        ("segment", {"url": "http://h"}, "config.writeKey"),
        ("segment", {"writeKey": "wk"}, "config.url"),
        ("segment", {"url": "http://h", "writeKey": ""}, "config.writeKey"),
        ("webhook", "http://h/x", "config"),
        ("function", {"url": "http://h/x"}, "config.url"),
        ("webhook", {"url": "http://h/x", "retryMaxAgeS": 0}, "config.retryMaxAgeS"),
        ("segment", {"url": "http://h", "writeKey": "k", "retryMaxAgeS": "1h"}, "config.retryMaxAgeS"),
        ("nope", {"url": "http://h/x"}, "type"),
    ],
)
def test_bad_config_names_the_field(type_: str, config: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_config(type_, config)
    assert info.value.field == field
    assert info.value.to_dict()["type"] == "validation_error"


def test_sensitive_fields_and_masking() -> None:
    assert SENSITIVE_PATHS["webhook"] == (("headers",),) and SENSITIVE_PATHS["segment"] == (("writeKey",),)
    hook: dict[str, Any] = {"url": "http://h/x", "headers": {"Authorization": "Bearer t", "X-Env": "prod"}}
    assert mask_config("webhook", hook) == {
        "url": "http://h/x",
        "headers": {"Authorization": "••••••", "X-Env": "••••••"},
    }
    assert sorted(secrets_of("webhook", hook)) == ["Bearer t", "prod"]
    seg = {"url": "http://h", "writeKey": "wk"}
    assert mask_config("segment", seg) == {"url": "http://h", "writeKey": "••••••"}
    assert secrets_of("segment", seg) == ["wk"]
    assert hook["headers"]["Authorization"] == "Bearer t"  # the input is not modified


def test_secrets_nested_in_lists_are_found_masked_and_never_modified_in_place() -> None:
    config: dict[str, Any] = {
        "subscriptions": [
            {"name": "a", "request": {"url": "http://h/a", "headers": {"Authorization": "Bearer one"}}},
            {"name": "b", "request": {"url": "http://h/b"}},
            {"name": "c", "request": {"url": "http://h/c", "headers": {"X-Key": "two", "X-Empty": ""}}},
        ],
        "timeoutMs": 100,
    }
    assert sorted(secrets_of("actions-webhook", config)) == ["Bearer one", "two"]
    masked = mask_config("actions-webhook", config)
    assert masked["subscriptions"][0]["request"]["headers"] == {"Authorization": "••••••"}
    assert masked["subscriptions"][2]["request"]["headers"] == {"X-Key": "••••••", "X-Empty": ""}
    assert masked["subscriptions"][1] == config["subscriptions"][1] and masked["timeoutMs"] == 100
    assert config["subscriptions"][0]["request"]["headers"]["Authorization"] == "Bearer one"
    assert value_at(config, ("subscriptions", 2, "request", "headers", "X-Key")) == "two"
    assert value_at(config, ("subscriptions", 9, "request")) is None
