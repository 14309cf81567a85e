"""DESIGN §3.3's outcome table (the rows that concern a function) and §3.4's batch pairing, for
Python and JavaScript from one parametrized suite: the same inputs must give the same status,
error type and message in both languages."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from sluice.errors import FunctionSyntaxError, NoHandlerError
from sluice.functions.pool import FunctionSource, Limits, WorkerPool
from sluice.testing import FunctionRun, arun_function
from tests.conftest import skip_or_fail

LANGUAGES = ["python", "javascript"]

# One function per language that does what the event's properties.action says.
SINGLE = {
    "python": """
import asyncio

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
    if action == "throw":
        raise TypeError("boom")
    if action == "crash":
        return None["x"]
    if action == "wrongtype":
        return "a string"
    if action == "notjson":
        event["properties"]["s"] = {1, 2}
        return event
    if action == "huge":
        event["properties"]["blob"] = "x" * 100_000
        return event
    if action == "sleep":
        await asyncio.sleep(30)
    if action == "spin":
        while True:
            pass
    event["properties"]["seen"] = True
    return event
""",
    "javascript": """
async function onTrack(event, settings) {
  const action = event.properties.action
  if (action === 'filter') return undefined
  if (action === 'drop') throw new DropEvent('not wanted')
  if (action === 'unsupported') throw new EventNotSupported('tracks are not for us')
  if (action === 'invalid') throw new InvalidEventPayload('payload is bad')
  if (action === 'validation') throw new ValidationError('userId is required')
  if (action === 'retry') throw new RetryError('HTTP 503')
  if (action === 'throw') throw new TypeError('boom')
  if (action === 'crash') return null.x
  if (action === 'wrongtype') return 'a string'
  if (action === 'notjson') {
    event.properties.s = 10n
    return event
  }
  if (action === 'huge') {
    event.properties.blob = 'x'.repeat(100000)
    return event
  }
  if (action === 'sleep') await new Promise(resolve => setTimeout(resolve, 30000))
  if (action === 'spin') while (true) {}
  event.properties.seen = true
  return event
}
""",
}

# (action, status, error type, a fragment of the message that both languages share)
ROWS = [
    ("ok", "ok", None, None),
    ("filter", "filtered", None, None),
    ("drop", "dropped", "DropEvent", "not wanted"),
    ("unsupported", "unsupported_event_type", "EventNotSupported", "tracks are not for us"),
    ("invalid", "message_rejected", "InvalidEventPayload", "payload is bad"),
    ("validation", "message_rejected", "ValidationError", "userId is required"),
    ("retry", "retry", "RetryError", "HTTP 503"),
    ("throw", "bad_request", "TypeError", "boom"),
    ("crash", "bad_request", "TypeError", None),  # None["x"] / null.x: the language's own words
    ("wrongtype", "bad_request", "TypeError", "handler returned str"),  # str(ing)
    ("notjson", "bad_request", "TypeError", "not JSON"),  # a set / a BigInt
    ("huge", "bad_request", "OutputTooLarge", "over the 65536 byte limit"),
]


@pytest.fixture(params=LANGUAGES)
def language(request: pytest.FixtureRequest) -> str:
    lang = str(request.param)
    if lang == "javascript" and shutil.which("node") is None:
        skip_or_fail("JavaScript functions need Node.js on PATH")
    return lang


def track(action: str = "ok") -> dict[str, Any]:
    return {"type": "track", "event": "Clicked", "userId": "u1", "messageId": "m1", "properties": {"action": action}}


def check(run: FunctionRun, status: str, error_type: str | None, fragment: str | None) -> None:
    assert run.status == status, run.error
    if error_type is None:
        assert run.error is None
    else:
        assert run.error is not None and run.error["type"] == error_type, run.error
        assert fragment is None or fragment in run.error["message"], run.error


@pytest.mark.parametrize(("action", "status", "error_type", "fragment"), ROWS, ids=[r[0] for r in ROWS])
async def test_single_event_outcome(
    language: str, action: str, status: str, error_type: str | None, fragment: str | None
) -> None:
    run = await arun_function(SINGLE[language], track(action), language=language)
    check(run, status, error_type, fragment)
    if status == "ok":
        assert run.event["properties"] == {"action": "ok", "seen": True}
    else:
        assert run.event is None


async def test_missing_handler_is_unsupported_event_type(language: str) -> None:
    run = await arun_function(SINGLE[language], {"type": "identify", "userId": "u1", "traits": {}}, language=language)
    check(run, "unsupported_event_type", "EventNotSupported", None)
    assert run.error is not None and "identify" in run.error["message"].lower()


@pytest.mark.parametrize("action", ["sleep", "spin"])
async def test_time_limit_is_timeout_and_the_next_event_runs(language: str, action: str) -> None:
    filename = "function.js" if language == "javascript" else "function.py"
    pool = WorkerPool(FunctionSource(SINGLE[language], filename, language), limits=Limits(timeout_s=1.0))
    async with pool:
        (slow,) = await pool.run_events([track(action)])
        (after,) = await pool.run_events([track("ok")])
    assert slow["status"] == "timeout"
    assert slow["error"]["type"] == "Timeout"
    assert after["status"] == "ok"


async def test_settings_failing_the_schema_are_invalid_settings(language: str) -> None:
    schema = [
        {"name": "apiKey", "label": "API Key", "type": "STRING", "required": True, "sensitive": True},
        {"name": "regions", "label": "Regions", "type": "ARRAY"},
    ]
    run = await arun_function(SINGLE[language], track(), schema=schema, settings={"regions": "eu"}, language=language)
    check(run, "invalid_settings", "InvalidSettings", "setting 'apiKey' (API Key) is required")
    assert run.error is not None and "setting 'regions' must be an array of strings" in run.error["message"]
    assert run.logs == []


@pytest.mark.parametrize(
    ("code", "error_cls"),
    [
        (
            {"python": "def on_track(e, s):\n    return e\n  x = (\n", "javascript": "function onTrack(e) {\n"},
            FunctionSyntaxError,
        ),
        (
            {"python": "def helper(e, s):\n    return e\n", "javascript": "function helper(e) { return e }\n"},
            NoHandlerError,
        ),
    ],
    ids=["syntax-error", "no-handler"],
)
async def test_code_that_does_not_load(language: str, code: dict[str, str], error_cls: type[Exception]) -> None:
    with pytest.raises(error_cls):
        await arun_function(code[language], track(), language=language)


# --- batches (DESIGN §3.4) --------------------------------------------------------------------

BATCH = {
    "python": """
def on_batch(events, settings):
    mode = events[0]["properties"]["mode"]
    if mode == "same":
        return [None if e["messageId"] == "b" else {**e, "seen": True} for e in events]
    if mode == "swapped":
        return list(reversed(events))
    if mode == "shorter":
        return [{**events[2], "kept": True}, events[0]]
    if mode == "error_instance":
        return [e if e["properties"].get("email") else ValidationError("no email") for e in events]
    if mode == "unknown_id":
        return [{**events[0], "messageId": "zzz"}]
    if mode == "retry":
        raise RetryError("upstream 503")
    if mode == "drop":
        raise DropEvent("all of them")
    if mode == "not_a_list":
        return {"x": 1}
    raise KeyError("k")

def on_track(event, settings):
    return event
""",
    "javascript": """
async function onBatch(events, settings) {
  const mode = events[0].properties.mode
  if (mode === 'same') return events.map(e => (e.messageId === 'b' ? null : { ...e, seen: true }))
  if (mode === 'swapped') return [...events].reverse()
  if (mode === 'shorter') return [{ ...events[2], kept: true }, events[0]]
  if (mode === 'error_instance') return events.map(e => (e.properties.email ? e : new ValidationError('no email')))
  if (mode === 'unknown_id') return [{ ...events[0], messageId: 'zzz' }]
  if (mode === 'retry') throw new RetryError('upstream 503')
  if (mode === 'drop') throw new DropEvent('all of them')
  if (mode === 'not_a_list') return { x: 1 }
  throw new RangeError('k')
}

async function onTrack(event, settings) {
  return event
}
""",
}


def batch(mode: str, emails: tuple[bool, ...] = (True, True, True)) -> list[dict[str, Any]]:
    out = []
    for mid, has_email in zip("abc", emails, strict=True):
        props: dict[str, Any] = {"mode": mode}
        if has_email:
            props["email"] = f"{mid}@example.com"
        out.append({"type": "track", "event": "E", "userId": "u", "messageId": mid, "properties": props})
    return out


async def run_batch(language: str, events: list[dict[str, Any]]) -> FunctionRun:
    run = await arun_function(BATCH[language], batch=events, language=language)
    assert run.results is not None and len(run.results) == len(events)
    return run


async def test_same_length_pairs_by_position_with_null_filtered(language: str) -> None:
    run = await run_batch(language, batch("same"))
    assert run.statuses == ["ok", "filtered", "ok"]
    assert run.results is not None
    assert [r["event"]["messageId"] if r["event"] else None for r in run.results] == ["a", None, "c"]
    assert run.results[0]["event"]["seen"] is True


async def test_same_length_pairs_by_position_even_with_swapped_ids(language: str) -> None:
    run = await run_batch(language, batch("swapped"))
    assert run.statuses == ["ok", "ok", "ok"]
    assert run.results is not None
    assert [r["event"]["messageId"] for r in run.results] == ["c", "b", "a"]


async def test_shorter_list_pairs_by_message_id(language: str) -> None:
    run = await run_batch(language, batch("shorter"))
    assert run.statuses == ["ok", "filtered", "ok"]
    assert run.results is not None
    assert run.results[2]["event"]["kept"] is True and run.results[0]["event"]["messageId"] == "a"


async def test_error_instance_at_a_position_gives_that_event_its_outcome(language: str) -> None:
    run = await run_batch(language, batch("error_instance", (True, False, True)))
    assert run.statuses == ["ok", "message_rejected", "ok"]
    assert run.results is not None
    assert run.results[1]["error"] == {"type": "ValidationError", "message": "no email"}


@pytest.mark.parametrize(
    ("mode", "status", "error_type", "fragment"),
    [
        ("unknown_id", "bad_request", "BatchShapeError", "unknown messageId 'zzz'"),
        ("not_a_list", "bad_request", "BatchShapeError", None),
        ("retry", "retry", "RetryError", "upstream 503"),
        ("drop", "dropped", "DropEvent", "all of them"),
    ],
)
async def test_whole_batch_outcomes(
    language: str, mode: str, status: str, error_type: str, fragment: str | None
) -> None:
    run = await run_batch(language, batch(mode))
    check(run, status, error_type, fragment)
    assert run.statuses == [status] * 3


async def test_any_other_exception_from_on_batch_is_bad_request_for_all(language: str) -> None:
    run = await run_batch(language, batch("other"))
    assert run.status == "bad_request"
    assert run.error is not None and run.error["type"] in ("KeyError", "RangeError")
    assert run.statuses == ["bad_request"] * 3
