"""Every JavaScript example of Segment's Destination Insert Functions page runs verbatim.

The page is read at run time from ``../shared/seed/destination-insert-functions.md`` beside the
repository (its code never enters the project): the tests skip when it is absent and fail
under ``CI=true``. Each example is found by a distinctive substring, never by its position.

The only change made to Segment's code is :func:`point_at`: the example's outbound origins
(``https://example-service.com``, ``http://echo.jsontest.com``, ``https://example.com``) are
replaced by the URL of a real HTTP server on 127.0.0.1. Fragments that are not a complete
insert function get a small handler *appended* (never edited into the example), each
explained where it is built:

- the cache example is a statement with a top-level ``await``: it runs inside ``onTrack``;
- the token example defines ``getAccessToken`` only: an ``onTrack`` calls it;
- the ``uuidv5`` and ``zlib`` examples are written as ``onRequest`` (a *source* function
  handler): an ``onTrack`` calls that ``onRequest`` (the zlib one with a request-like object,
  since it calls ``request.json()``);
- the settings example reads ``settings.apiKey`` into a local: a wrapper observes the read.
"""

from __future__ import annotations

import base64
import re
import shutil
import socket
import textwrap
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sluice.functions.pool import FunctionSource, WorkerPool
from sluice.testing import arun_function
from tests.conftest import HttpServer, Recorded, skip_or_fail

SEED_PAGE = Path(__file__).resolve().parents[2] / ".." / "shared" / "seed" / "destination-insert-functions.md"

# --- reading the page -------------------------------------------------------------------------

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")


@dataclass(frozen=True)
class CodeBlock:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence, for messages


def code_blocks(text: str) -> list[CodeBlock]:
    """Every fenced block of a Markdown text, dedented (blocks inside list items are indented)."""
    lines = text.splitlines()
    blocks: list[CodeBlock] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        body = textwrap.dedent("\n".join(lines[i + 1 : j]))
        blocks.append(CodeBlock(opening.group("lang"), body.strip("\n") + "\n", i + 1))
        i = j + 1
    return blocks


# A distinctive substring of each example, so a reordering of the page does not matter.
MARKERS = {
    "post": "event_name: event.event",
    "errors": "throw new InvalidEventPayload",
    "uuidv5": "uuidv5 = uuidv5.uuidv5",
    "zlib": "zlib = zlib.zlib",
    "cache": "cache.load(",
    "settings": "const apiKey = settings.apiKey",
    "batch_default": "// handle the batch of events",
    "batch_split": "// restore original order",
    "batch_filter": "Enriched from insert function",
    "logs": "console.log('User ID is valid')",
    "token": "async function getAccessToken",
}
# The FAQ's "all event types" example is fenced as ```text, but it is JavaScript too.
ALL_TYPES_MARKER = "Ensure that all expected event types are included"


@pytest.fixture(scope="module")
def blocks() -> list[CodeBlock]:
    if shutil.which("node") is None:
        skip_or_fail("JavaScript functions need Node.js on PATH")
    if not SEED_PAGE.is_file():
        skip_or_fail(f"Segment's page is not at {SEED_PAGE}")
    return code_blocks(SEED_PAGE.read_text(encoding="utf-8"))


def example(blocks: list[CodeBlock], name: str) -> str:
    return find_block(blocks, MARKERS[name])


def find_block(blocks: list[CodeBlock], marker: str, lang: str = "js") -> str:
    """The code of the one ``lang`` block that contains ``marker``."""
    found = [b for b in blocks if b.lang == lang and marker in b.code]
    assert len(found) == 1, f"expected one ```{lang} block containing {marker!r} on the seed page, found {len(found)}"
    return found[0].code


def point_at(code: str, base_url: str, *origins: str) -> str:
    """THE ONLY CHANGE to Segment's code: its outbound origins are replaced by ``base_url``.

    Every origin must occur, so that a changed example fails loudly instead of calling out.
    """
    for origin in origins:
        assert origin in code, f"the example no longer calls {origin}"
        code = code.replace(origin, base_url.rstrip("/"))
    return code


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def js(code: str) -> FunctionSource:
    return FunctionSource(code, filename="function.js", language="javascript")


def ev(type_: str, mid: str = "m1", **fields: Any) -> dict[str, Any]:
    return {"type": type_, "userId": "019mr8mf4r", "messageId": mid, **fields}


TRACK = ev(
    "track",
    event="Song Played",
    timestamp="2026-01-01T00:00:00.000Z",
    properties={"name": "Fallin for You", "artist": "Dierks Bentley"},
)


# --- the page itself --------------------------------------------------------------------------


def test_every_javascript_block_on_the_page_has_a_test(blocks: list[CodeBlock]) -> None:
    js_blocks = [b for b in blocks if b.lang == "js"]
    assert len(js_blocks) >= 10
    for block in js_blocks:
        claimed = [name for name, marker in MARKERS.items() if marker in block.code]
        assert len(claimed) == 1, f"the ```js block at line {block.line} is claimed by {claimed}"
    assert find_block(blocks, ALL_TYPES_MARKER, lang="text")


# --- "sends some details about them to an external service" -----------------------------------


async def test_on_track_posts_to_an_external_service(blocks: list[CodeBlock], http_server: HttpServer) -> None:
    http_server.route("/api", 200, {"ok": True})
    code = point_at(example(blocks, "post"), http_server.url, "https://example-service.com")
    run = await arun_function(code, TRACK, language="javascript")
    assert (run.status, run.error) == ("ok", None)
    assert run.event == TRACK
    (received,) = http_server.requests
    assert (received.method, received.path) == ("POST", "/api")
    assert received.headers["Content-Type"] == "application/json"
    assert received.json() == {
        "event_name": "Song Played",
        "event_properties": {"name": "Fallin for You", "artist": "Dierks Bentley"},
        "timestamp": "2026-01-01T00:00:00.000Z",
    }
    (trace,) = run.requests
    assert trace["method"] == "POST" and trace["url"] == http_server.url + "/api" and trace["status"] == 200


# --- "Errors and error handling" --------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "status", "error"),
    [
        (ev("group", groupId="g1", traits={}), "message_rejected", ("InvalidEventPayload", "Company name is required")),
        # onGroup returns nothing when the company is there: Segment's example filters the event.
        (ev("group", groupId="g1", traits={"company": "Initech"}), "filtered", None),
        (ev("page", properties={}), "message_rejected", ("ValidationError", "Page name is required")),
        (ev("page", properties={"pageName": "Home"}), "filtered", None),
        (
            ev("alias", previousId="old"),
            "unsupported_event_type",
            ("EventNotSupported", "Alias event is not supported"),
        ),
        (ev("identify", traits={"companyName": "Initech"}), "dropped", ("DropEvent", "Company name is required")),
        (ev("identify", traits={"name": "Jake"}), "ok", None),
        # No onScreen in the example: Segment's default EventNotSupported.
        (ev("screen", name="Home"), "unsupported_event_type", ("EventNotSupported", None)),
    ],
    ids=["group-no-company", "group-ok", "page-no-name", "page-ok", "alias", "identify-drop", "identify-ok", "screen"],
)
async def test_error_examples_give_their_outcomes(
    blocks: list[CodeBlock], http_server: HttpServer, event: dict[str, Any], status: str, error: Any
) -> None:
    code = point_at(example(blocks, "errors"), http_server.url, "http://example-service.com")
    run = await arun_function(code, event, language="javascript")
    assert run.status == status, run.error
    if error is None:
        assert run.error is None
    else:
        assert run.error is not None and run.error["type"] == error[0]
        assert error[1] is None or run.error["message"] == error[1]
    if status == "ok":
        assert run.event == event
    else:
        assert run.event is None
    assert http_server.requests == []  # only onTrack calls out


async def test_error_example_retries_on_connection_error(blocks: list[CodeBlock]) -> None:
    base = f"http://127.0.0.1:{closed_port()}"
    code = point_at(example(blocks, "errors"), base, "http://example-service.com")
    run = await arun_function(code, TRACK, language="javascript")
    assert run.status == "retry"
    assert run.error is not None and run.error["type"] == "RetryError"
    assert "ECONNREFUSED" in run.error["message"] or "refused" in run.error["message"].lower()


@pytest.mark.parametrize("answer", [200, 500, 429])
async def test_error_example_on_track_as_written_returns_the_event_whatever_the_status(
    blocks: list[CodeBlock], http_server: HttpServer, answer: int
) -> None:
    """In Segment's onTrack, ``return event`` sits inside the ``try``: the 5xx/429 check after it
    is unreachable, so the example as written delivers the event even on 500 or 429 (node-fetch
    does not throw on an HTTP status). The next test runs that check itself."""
    http_server.route("/api", answer, {"status": answer})
    code = point_at(example(blocks, "errors"), http_server.url, "http://example-service.com")
    run = await arun_function(code, TRACK, language="javascript")
    assert (run.status, run.error) == ("ok", None)
    (received,) = http_server.requests
    assert received.path == "/api" and received.json() == {"event": TRACK}


@pytest.mark.parametrize(
    ("answer", "status"), [(500, "retry"), (503, "retry"), (429, "retry"), (200, "ok"), (404, "ok")]
)
async def test_error_example_status_check_retries_on_5xx_and_429(
    blocks: list[CodeBlock], http_server: HttpServer, answer: int, status: str
) -> None:
    # The example's own status check, cut out of its onTrack at run time and run after a fetch
    # (wrapped because, as written, it cannot be reached: see the test above).
    source = example(blocks, "errors")
    found = re.search(r"^([ \t]*)if \(res\.status >= 500.*?^\1\}$", source, re.MULTILINE | re.DOTALL)
    assert found is not None, "the 5xx/429 check is no longer in the example"
    http_server.route("/api", answer, {})
    code = (
        "async function onTrack(event) {\n"
        f"  const res = await fetch({http_server.url + '/api'!r}, {{ method: 'POST' }})\n"
        f"{found.group(0)}\n"
        "  return event\n"
        "}\n"
    )
    run = await arun_function(code, TRACK, language="javascript")
    assert run.status == status
    if status == "retry":
        assert run.error == {"type": "RetryError", "message": f"HTTP Status {answer}"}


# --- "Logs" -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "status", "logs"),
    [
        ("short", "message_rejected", ["User ID is short"]),
        (42, "message_rejected", ["User ID is 42"]),
        # Valid: the example logs and returns nothing, so the event is filtered.
        ("019mr8mf4r", "filtered", ["User ID is 019mr8mf4r", "User ID is valid"]),
    ],
)
async def test_logging_example_captures_console_and_validates(
    blocks: list[CodeBlock], user_id: Any, status: str, logs: list[str]
) -> None:
    run = await arun_function(example(blocks, "logs"), {**TRACK, "userId": user_id}, language="javascript")
    assert run.status == status
    assert run.logs == logs
    if status == "message_rejected":
        assert run.error == {"type": "ValidationError", "message": "User ID is invalid"}


# --- runtime libraries: uuidv5 and zlib -------------------------------------------------------


async def test_uuidv5_example(blocks: list[CodeBlock]) -> None:
    # Written as a source function's onRequest: an appended onTrack calls it.
    code = example(blocks, "uuidv5") + (
        "\nasync function onTrack(event, settings) {\n  await onRequest(event, settings)\n  return event\n}\n"
    )
    run = await arun_function(code, TRACK, language="javascript")
    assert run.status == "ok", run.error
    assert run.logs == [
        "function",
        str(uuid.uuid5(uuid.NAMESPACE_URL, "http://google/com/page")),
        str(uuid.uuid5(uuid.NAMESPACE_DNS, "google.com")),
    ]


async def test_zlib_example(blocks: list[CodeBlock]) -> None:
    # Written as a source function's onRequest, which calls request.json(): an appended onTrack
    # calls it with a request-like object whose json() gives the event.
    code = example(blocks, "zlib") + (
        "\nasync function onTrack(event, settings) {\n"
        "  await onRequest({ json: () => event }, settings)\n"
        "  return event\n"
        "}\n"
    )
    run = await arun_function(code, TRACK, language="javascript")
    assert run.status == "ok", run.error
    assert run.logs == [base64.b64encode(zlib.compress(b"something")).decode(), "something", "Done"]


# --- cache and module state -------------------------------------------------------------------


async def test_cache_example_loads_once_across_invocations(blocks: list[CodeBlock], http_server: HttpServer) -> None:
    http_server.route("/key/value/one/two", 200, {"one": "two", "key": "value"})
    fragment = point_at(example(blocks, "cache"), http_server.url, "http://echo.jsontest.com")
    # The example is a statement with a top-level await: it runs inside a handler that then
    # shows the value it got.
    code = (
        "async function onTrack(event, settings) {\n"
        f"{textwrap.indent(fragment, '  ')}"
        "  event.properties.cached = val\n"
        "  return event\n"
        "}\n"
    )
    async with WorkerPool(js(code)) as pool:
        for i in range(3):
            (result,) = await pool.run_events([{**TRACK, "messageId": f"m{i}"}])
            assert result["status"] == "ok", result["error"]
            assert result["event"]["properties"]["cached"] == {"one": "two", "key": "value"}
        assert pool.stats.started == 1  # one worker process served all three
    assert [r.path for r in http_server.requests] == ["/key/value/one/two"]
    # A new instance has its own, empty, process-local cache.
    async with WorkerPool(js(code)) as pool:
        (result,) = await pool.run_events([TRACK])
        assert result["status"] == "ok"
    assert len(http_server.requests) == 2


async def test_token_example_fetches_once_and_refreshes_when_expired(
    blocks: list[CodeBlock], http_server: HttpServer
) -> None:
    issued: list[str] = []

    def tokens(recorded: Recorded) -> tuple[int, Any, dict[str, str]]:
        assert recorded.method == "POST"
        issued.append(f"tok-{len(issued) + 1}")
        return 200, {"token": issued[-1]}, {}

    http_server.route_fn("/tokens", tokens)
    fragment = point_at(example(blocks, "token"), http_server.url, "https://example.com")
    # The example defines getAccessToken only: an onTrack uses it. An onIdentify stands in for
    # the passing of an hour by back-dating the cached token (the example refreshes on age).
    code = (
        fragment + "\nasync function onTrack(event, settings) {\n"
        "  event.properties.token = await getAccessToken()\n"
        "  return event\n"
        "}\n"
        "async function onIdentify(event, settings) {\n"
        "  token.ts -= TOKEN_EXPIRE_MS + 1\n"
        "  return event\n"
        "}\n"
    )
    async with WorkerPool(js(code)) as pool:
        results = [(await pool.run_events([{**TRACK, "messageId": f"a{i}"}]))[0] for i in range(3)]
        results += await pool.run_events([{**TRACK, "messageId": f"b{i}"} for i in range(5)])  # one frame
        assert [r["event"]["properties"]["token"] for r in results] == ["tok-1"] * 8
        (aged,) = await pool.run_events([ev("identify", traits={})])
        assert aged["status"] == "ok", aged["error"]
        (refreshed,) = await pool.run_events([TRACK])
        (again,) = await pool.run_events([TRACK])
    assert refreshed["event"]["properties"]["token"] == "tok-2"
    assert again["event"]["properties"]["token"] == "tok-2"
    assert issued == ["tok-1", "tok-2"]
    assert [r.path for r in http_server.requests] == ["/tokens", "/tokens"]


# --- settings ---------------------------------------------------------------------------------

API_KEY = [{"name": "apiKey", "label": "API Key", "type": "STRING", "required": True, "sensitive": True}]


async def test_settings_example_reads_the_api_key(blocks: list[CodeBlock]) -> None:
    # The example reads settings.apiKey into a local and returns nothing (so the event is
    # filtered). An appended onIdentify calls it with a settings object that records the read.
    code = example(blocks, "settings") + (
        "\nasync function onIdentify(event, settings) {\n"
        "  const seen = []\n"
        "  const watched = { get apiKey() { seen.push(settings.apiKey); return settings.apiKey } }\n"
        "  const out = await onTrack(event, watched)\n"
        "  event.traits.read = seen.length === 1 && seen[0] === settings.apiKey\n"
        "  event.traits.returned = out === undefined ? 'nothing' : 'something'\n"
        "  return event\n"
        "}\n"
    )
    settings = {"apiKey": "super_secret_string"}
    run = await arun_function(code, ev("identify", traits={}), settings=settings, schema=API_KEY, language="javascript")
    assert run.status == "ok", run.error
    assert run.event["traits"] == {"read": True, "returned": "nothing"}
    direct = await arun_function(code, TRACK, settings=settings, schema=API_KEY, language="javascript")
    assert (direct.status, direct.error) == ("filtered", None)


async def test_settings_example_without_the_required_api_key_is_invalid_settings(blocks: list[CodeBlock]) -> None:
    run = await arun_function(example(blocks, "settings"), TRACK, settings={}, schema=API_KEY, language="javascript")
    assert run.status == "invalid_settings"
    assert run.error is not None and "apiKey" in run.error["message"]


# --- batches ----------------------------------------------------------------------------------

# Segment's sample batch: an identify and two tracks.
SAMPLE_BATCH = [
    ev("identify", "id-1", traits={"email": "jake@yahoo.com", "name": "Jake Peterson", "age": 26}),
    ev("track", "tr-1", event="Song Played", properties={"name": "Fallin for You", "artist": "Dierks Bentley"}),
    ev("track", "tr-2", event="Song Played", properties={"name": "Get Right", "artist": "Jennifer Lopez"}),
]


async def test_default_batch_example_returns_the_batch(blocks: list[CodeBlock]) -> None:
    # The page says onBatch needs single-event handlers beside it; the example shows onBatch
    # alone, and a batch goes to it as it is.
    run = await arun_function(example(blocks, "batch_default"), batch=SAMPLE_BATCH, language="javascript")
    assert run.status == "ok", run.error
    assert run.results is not None
    assert [r["status"] for r in run.results] == ["ok", "ok", "ok"]
    assert [r["event"] for r in run.results] == SAMPLE_BATCH


async def test_split_by_type_example_restores_the_original_order(blocks: list[CodeBlock]) -> None:
    batch = [
        ev("track", "t1", event="A", properties={}),
        ev("identify", "i1", traits={"email": "a@example.com"}),
        ev("track", "t2", event="B", properties={}),
        ev("identify", "i2", traits={}),
        ev("track", "t3", event="C", properties={}),
    ]
    run = await arun_function(example(blocks, "batch_split"), batch=batch, language="javascript")
    assert run.status == "ok", run.error
    assert run.results is not None
    assert [r["status"] for r in run.results] == ["ok"] * 5
    # Processed grouped by type (tracks, then identifies), returned in the input's order.
    assert [r["event"]["messageId"] for r in run.results] == ["t1", "i1", "t2", "i2", "t3"]
    assert [r["event"] for r in run.results] == batch


async def test_split_by_type_example_retries_a_batch_with_a_type_it_does_not_handle(blocks: list[CodeBlock]) -> None:
    # A page event has no case in the example's switch: its sub-batch result is undefined, the
    # order restoring step throws a TypeError, and the example turns that into a RetryError.
    batch = [*SAMPLE_BATCH, ev("page", "p1", properties={})]
    run = await arun_function(example(blocks, "batch_split"), batch=batch, language="javascript")
    assert run.status == "retry"
    assert run.error is not None and run.error["type"] == "RetryError"
    assert run.results is not None
    assert [r["status"] for r in run.results] == ["retry"] * 4


async def test_filtering_batch_example_returns_a_subset(blocks: list[CodeBlock]) -> None:
    batch = [
        ev("track", "k1", event="A", properties={"name": "keep"}),
        ev("track", "d1", event="B", properties={"name": "drop"}),
        ev("track", "k2", event="C", properties={}),
        ev("track", "d2", event="D", properties={"name": "drop"}),
    ]
    run = await arun_function(example(blocks, "batch_filter"), batch=batch, language="javascript")
    assert run.status == "ok", run.error
    assert run.results is not None
    # A shorter list is paired to its inputs by messageId; the rest are filtered.
    assert [r["status"] for r in run.results] == ["ok", "filtered", "ok", "filtered"]
    assert run.results[0]["event"]["properties"] == {"name": "keep", "message": "Enriched from insert function"}
    assert run.results[2]["event"]["properties"] == {"message": "Enriched from insert function"}
    assert run.results[2]["event"]["messageId"] == "k2"


async def test_filtering_batch_example_retries_when_its_logic_throws(blocks: list[CodeBlock]) -> None:
    # An identify has no properties: reading event.properties.name throws inside the try.
    run = await arun_function(example(blocks, "batch_filter"), batch=SAMPLE_BATCH, language="javascript")
    assert run.status == "retry"
    assert run.error is not None and run.error["type"] == "RetryError"
    assert run.error["message"] == "Failed function"
    assert run.results is not None and [r["status"] for r in run.results] == ["retry"] * 3
    # console.log(error) logged the TypeError with its stack, one captured line per line.
    assert run.logs[0] == "TypeError: Cannot read properties of undefined (reading 'name')"
    assert run.logs[1].strip().startswith("at onBatch (function.js:")


# --- FAQ: handlers for every event type -------------------------------------------------------


@pytest.mark.parametrize("type_", ["track", "page", "identify", "alias", "group"])
async def test_all_event_types_example_passes_each_type(blocks: list[CodeBlock], type_: str) -> None:
    code = find_block(blocks, ALL_TYPES_MARKER, lang="text")
    event = ev(type_, properties={}, traits={})
    run = await arun_function(code, event, language="javascript")
    assert (run.status, run.event) == ("ok", event)
