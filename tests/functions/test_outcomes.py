"""Every outcome of DESIGN §3.3 that concerns a function, through the real isolated runtime."""

from __future__ import annotations

import pytest

from sluice.errors import ForbiddenImportError, FunctionLoadError, FunctionSyntaxError, NoHandlerError
from sluice.testing import arun_function

TRACK = {"type": "track", "event": "Clicked", "userId": "u1", "messageId": "m1", "properties": {"a": 1}}

OUTCOMES = """
from sluice.fn import DropEvent, EventNotSupported, InvalidEventPayload, RetryError, ValidationError

async def on_track(event, settings):
    action = event["properties"].get("action")
    if action == "filter":
        return None
    if action == "drop":
        raise DropEvent("not wanted")
    if action == "unsupported":
        raise EventNotSupported("tracks are not for us")
    if action == "invalid":
        raise InvalidEventPayload("payload is bad")
    if action == "validation":
        raise ValidationError("userId is required")
    if action == "retry":
        raise RetryError("HTTP 503")
    if action == "crash":
        return 1 / 0
    if action == "wrongtype":
        return "a string"
    if action == "notjson":
        event["properties"]["s"] = {1, 2}
        return event
    if action == "huge":
        event["properties"]["blob"] = "x" * 100_000
        return event
    event["properties"]["seen"] = True
    return event
"""

CASES = [
    ("ok", "ok", None, None),
    ("filter", "filtered", None, None),
    ("drop", "dropped", "DropEvent", "not wanted"),
    ("unsupported", "unsupported_event_type", "EventNotSupported", "tracks are not for us"),
    ("invalid", "message_rejected", "InvalidEventPayload", "payload is bad"),
    ("validation", "message_rejected", "ValidationError", "userId is required"),
    ("retry", "retry", "RetryError", "HTTP 503"),
    ("crash", "bad_request", "ZeroDivisionError", "division by zero (line 19)"),
    ("wrongtype", "bad_request", "TypeError", "handler returned str"),
    ("notjson", "bad_request", "TypeError", "not JSON"),
    ("huge", "bad_request", "OutputTooLarge", "over the 65536 byte limit"),
]


@pytest.mark.parametrize(("action", "status", "error_type", "message"), CASES)
async def test_each_outcome(action: str, status: str, error_type: str | None, message: str | None) -> None:
    event = {**TRACK, "properties": {"action": action}}
    run = await arun_function(OUTCOMES, event)
    assert run.status == status
    if error_type is None:
        assert run.error is None
    else:
        assert run.error is not None
        assert run.error["type"] == error_type
        assert message is not None and message in run.error["message"]
    if status == "ok":
        assert run.event["properties"] == {"action": "ok", "seen": True}
    else:
        assert run.event is None


async def test_missing_handler_is_unsupported_event_type() -> None:
    run = await arun_function(OUTCOMES, {"type": "identify", "userId": "u1", "traits": {}})
    assert run.status == "unsupported_event_type"
    assert run.error == {"type": "EventNotSupported", "message": "the function defines no on_identify"}


async def test_sync_handlers_and_camel_case_aliases() -> None:
    code = "def onIdentify(event, settings):\n    event['traits']['via'] = 'camel'\n    return event\n"
    run = await arun_function(code, {"type": "identify", "userId": "u1", "traits": {}})
    assert run.status == "ok"
    assert run.event["traits"] == {"via": "camel"}


async def test_error_classes_are_prebound_globals_as_in_segment() -> None:
    code = (
        "async def onGroup(event, settings):\n    if not event['traits'].get('company'):\n"
        "        raise InvalidEventPayload('Company name is required')\n    return event\n"
    )
    run = await arun_function(code, {"type": "group", "groupId": "g", "userId": "u", "traits": {}})
    assert (run.status, run.error) == (
        "message_rejected",
        {"type": "InvalidEventPayload", "message": "Company name is required"},
    )


async def test_invalid_settings_names_the_setting_and_never_runs_the_handler() -> None:
    schema = [
        {"name": "apiKey", "label": "API Key", "type": "STRING", "required": True, "sensitive": True},
        {"name": "regions", "label": "Regions", "type": "ARRAY"},
    ]
    code = "def on_track(event, settings):\n    print('ran')\n    return event\n"
    run = await arun_function(code, TRACK, schema=schema, settings={"regions": "eu"})
    assert run.status == "invalid_settings"
    assert run.error is not None
    assert "setting 'apiKey' (API Key) is required" in run.error["message"]
    assert "setting 'regions' must be an array of strings" in run.error["message"]
    assert run.logs == []


async def test_wrong_setting_type_never_quotes_a_secret_value() -> None:
    schema = [{"name": "token", "label": "Token", "type": "BOOLEAN", "sensitive": True}]
    run = await arun_function(
        "def on_track(e, s):\n    return e\n", TRACK, schema=schema, settings={"token": "hunter2"}
    )
    assert run.status == "invalid_settings"
    assert run.error is not None
    assert "token" in run.error["message"] and "hunter2" not in run.error["message"]


@pytest.mark.parametrize(
    ("code", "error_cls", "line", "fragment"),
    [
        ("def on_track(event, settings):\n    return event\n  x = (\n", FunctionSyntaxError, 3, "syntax error"),
        ("import os\nimport subprocess\ndef on_track(e, s):\n    return e\n", ForbiddenImportError, 2, "'subprocess'"),
        ("from requests import get\ndef on_track(e, s):\n    return e\n", ForbiddenImportError, 1, "'requests'"),
        ("from sluice import errors\ndef on_track(e, s):\n    return e\n", ForbiddenImportError, 1, "sluice.errors"),
        ("def helper(e, s):\n    return e\n", NoHandlerError, None, "no handler defined"),
        ("x = 1\ny = 1 / 0\ndef on_track(e, s):\n    return e\n", FunctionLoadError, 2, "ZeroDivisionError"),
    ],
)
async def test_code_that_does_not_load_names_line_or_module(
    code: str, error_cls: type[FunctionLoadError], line: int | None, fragment: str
) -> None:
    with pytest.raises(error_cls) as caught:
        await arun_function(code, TRACK)
    assert caught.value.line == line
    assert fragment in str(caught.value)
    if line is not None:
        assert f"line {line}" in str(caught.value)


async def test_allow_listed_packages_import() -> None:
    code = (
        "import jwt, phonenumbers, xmltodict, dateutil.parser, pendulum, httpx, json, hashlib\n"
        "def on_identify(event, settings):\n"
        "    n = phonenumbers.parse(event['traits']['phone'], 'US')\n"
        "    event['traits']['e164'] = phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)\n"
        "    event['traits']['token'] = jwt.encode({'sub': event['userId']}, 'k', algorithm='HS256')\n"
        "    return event\n"
    )
    run = await arun_function(code, {"type": "identify", "userId": "u1", "traits": {"phone": "(415) 555-0100"}})
    assert run.status == "ok", run.error
    assert run.event["traits"]["e164"] == "+14155550100"
    assert run.event["traits"]["token"].count(".") == 2
