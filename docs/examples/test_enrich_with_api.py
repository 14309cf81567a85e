"""Tests for enrich_with_api.py. Run them with `pytest`, locally or in CI."""

from pathlib import Path

from sluice.testing import MockResponse, run_function

FUNCTION = Path(__file__).with_name("enrich_with_api.py")  # or a folder made by `sluice fn new`

# The settings schema, as in function.toml. When FUNCTION is a folder, run_function reads it
# from the folder's function.toml and `schema=` can go.
SCHEMA = [
    {"name": "apiUrl", "label": "API URL", "type": "STRING", "required": True},
    {"name": "apiKey", "label": "API Key", "type": "STRING", "required": True, "sensitive": True},
]
SETTINGS = {"apiUrl": "https://crm.example.com/v1", "apiKey": "sk_test_4eC39HqLyjWD"}
TRACK = {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m1", "properties": {}}


def run(event, mocks, settings=SETTINGS):
    return run_function(FUNCTION, event, settings=settings, schema=SCHEMA, mocks=mocks)


def test_adds_the_tier():
    result = run(TRACK, [MockResponse("https://crm.example.com/v1/users/*", json={"tier": "gold"})])

    assert result.status == "ok", result.error
    assert result.event["properties"]["tier"] == "gold"
    (request,) = result.requests
    assert request["method"] == "GET"
    assert request["url"] == "https://crm.example.com/v1/users/u1"
    assert request["requestHeaders"]["Authorization"] == "[REDACTED]"  # secrets never show


def test_unknown_user_passes_unchanged():
    result = run(TRACK, [MockResponse("https://crm.example.com/v1/users/*", status=404)])

    assert result.status == "ok"
    assert result.event == TRACK
    assert result.logs == ["INFO: no CRM record for u1"]


def test_crm_outage_is_retried():
    result = run(TRACK, [MockResponse("https://crm.example.com/*", status=503)])

    assert result.status == "retry"
    assert result.error == {"type": "RetryError", "message": "CRM answered HTTP 503"}


def test_network_failure_is_retried():
    result = run(TRACK, [MockResponse("https://crm.example.com/*", error="connection refused")])

    assert result.status == "retry"
    assert result.error["message"] == "connection refused"
    assert result.requests[0]["error"] == "connection refused"


def test_missing_api_key_is_invalid_settings():
    result = run(TRACK, [], settings={"apiUrl": "https://crm.example.com/v1"})

    assert result.status == "invalid_settings"
    assert "'apiKey'" in result.error["message"]
    assert result.successful is False  # what makes `sluice fn test` exit 1
