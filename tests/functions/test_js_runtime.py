"""The JavaScript (Segment-compatible) runtime: real Node.js workers through :class:`WorkerPool`."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sluice.errors import FunctionLoadError, FunctionSyntaxError, NoHandlerError
from sluice.functions.pool import FunctionSource, Limits, WorkerPool
from sluice.functions.settings import SettingSpec
from tests.conftest import HttpServer, skip_or_fail

LIMIT_S = 1.0


@pytest.fixture(autouse=True)
def _node() -> None:
    if shutil.which("node") is None:
        skip_or_fail("Node.js is not installed")


def js(code: str, schema: tuple[SettingSpec, ...] | None = None) -> FunctionSource:
    return FunctionSource(code, filename="function.js", language="javascript", schema=schema)


def track(what: str = "ok", mid: str = "m1", **props: Any) -> dict[str, Any]:
    return {"type": "track", "event": "E", "userId": "u1", "messageId": mid, "properties": {"what": what, **props}}


async def run1(pool: WorkerPool, event: dict[str, Any]) -> dict[str, Any]:
    (result,) = await pool.run_events([event])
    return result


OUTCOMES = """
async function onTrack(event, settings) {
  const what = event.properties.what;
  if (what === 'filter') return;
  if (what === 'null') return null;
  if (what === 'drop') throw new DropEvent('not wanted');
  if (what === 'unsupported') throw new EventNotSupported('tracks are not for us');
  if (what === 'invalid') throw new InvalidEventPayload('payload is bad');
  if (what === 'validation') throw new ValidationError('userId is required');
  if (what === 'retry') throw new RetryError('HTTP 503');
  if (what === 'crash') { const x = undefined; return x.y; }
  if (what === 'string') throw 'a string';
  if (what === 'wrongtype') return 'a string';
  if (what === 'bigint') { event.properties.n = 10n; return event; }
  if (what === 'huge') { event.properties.blob = 'x'.repeat(100000); return event; }
  if (what === 'sub') { class Mine extends ValidationError {}; throw new Mine('subclassed'); }
  event.properties.seen = true;
  event.properties.settingsKey = settings.region;
  return event;
}
function onIdentify(event) { event.traits.sync = true; return event; }
"""

CASES = [
    ("ok", "ok", None, None),
    ("filter", "filtered", None, None),
    ("null", "filtered", None, None),
    ("drop", "dropped", "DropEvent", "not wanted"),
    ("unsupported", "unsupported_event_type", "EventNotSupported", "tracks are not for us"),
    ("invalid", "message_rejected", "InvalidEventPayload", "payload is bad"),
    ("validation", "message_rejected", "ValidationError", "userId is required"),
    ("sub", "message_rejected", "Mine", "subclassed"),
    ("retry", "retry", "RetryError", "HTTP 503"),
    ("crash", "bad_request", "TypeError", "(line 11)"),
    ("string", "bad_request", "Error", "a string"),
    ("wrongtype", "bad_request", "TypeError", "handler returned string"),
    ("bigint", "bad_request", "TypeError", "not JSON"),
    ("huge", "bad_request", "OutputTooLarge", "over the 65536 byte limit"),
]


@pytest.fixture
async def outcomes() -> AsyncIterator[WorkerPool]:
    async with WorkerPool(js(OUTCOMES), {"region": "eu"}) as pool:
        yield pool


async def test_load_reports_handlers(outcomes: WorkerPool) -> None:
    assert outcomes.handlers == ("track", "identify")
    assert outcomes.sandbox["runtime"] == "node"


@pytest.mark.parametrize(("what", "status", "error_type", "message"), CASES)
async def test_each_outcome(
    outcomes: WorkerPool, what: str, status: str, error_type: str | None, message: str | None
) -> None:
    result = await run1(outcomes, track(what))
    assert result["status"] == status, result
    if error_type is None:
        assert result["error"] is None
    else:
        assert result["error"]["type"] == error_type
        assert message is not None and message in result["error"]["message"]
    if status == "ok":
        assert result["event"]["properties"] == {"what": "ok", "seen": True, "settingsKey": "eu"}
    else:
        assert result["event"] is None


async def test_sync_handler_and_missing_handler(outcomes: WorkerPool) -> None:
    results = await outcomes.run_events(
        [{"type": "identify", "userId": "u", "traits": {"é": "ü"}}, {"type": "page", "name": "Home"}, [1]]
    )
    assert results[0]["status"] == "ok"
    assert results[0]["event"]["traits"] == {"é": "ü", "sync": True}  # byte offsets are UTF-8 offsets
    assert results[1]["status"] == "unsupported_event_type"
    assert results[1]["error"] == {"type": "EventNotSupported", "message": "the function defines no onPage"}
    assert results[2]["status"] == "unsupported_event_type"


async def test_encoded_events_pass_through_as_bytes(outcomes: WorkerPool) -> None:
    events = [b'{"type":"identify","userId":"\xc3\xa9","traits":{}}'] * 3
    results = await outcomes.run_encoded_events(events)
    assert all(r["status"] == "ok" for r in results)
    assert results[2]["event"] == '{"type":"identify","userId":"é","traits":{"sync":true}}'.encode()


async def test_invalid_settings_never_reach_the_worker() -> None:
    schema = (SettingSpec("apiKey", "API Key", required=True),)
    async with WorkerPool(js(OUTCOMES, schema), {}) as pool:
        result = await run1(pool, track())
    assert result["status"] == "invalid_settings"
    assert "apiKey" in result["error"]["message"]


# --- loading -------------------------------------------------------------------------------------


async def test_syntax_error_names_the_line() -> None:
    with pytest.raises(FunctionSyntaxError) as info:
        await WorkerPool(js("async function onTrack(e) {\n  return e\n}}\n")).start()
    assert info.value.line == 3
    assert "function.js, line 3" in str(info.value)


async def test_import_statement_is_a_syntax_error() -> None:
    with pytest.raises(FunctionSyntaxError, match="import"):
        await WorkerPool(js("import fs from 'fs'\nasync function onTrack(e) { return e }\n")).start()


async def test_error_at_load_time_names_the_line() -> None:
    with pytest.raises(FunctionLoadError) as info:
        await WorkerPool(js("const x = 1;\nnull.boom;\nasync function onTrack(e) { return e }\n")).start()
    assert info.value.line == 2
    assert "TypeError" in str(info.value)


async def test_no_handler() -> None:
    with pytest.raises(NoHandlerError, match="onTrack"):
        await WorkerPool(js("function helper() {}\n")).start()


async def test_arrow_function_handlers_count() -> None:
    async with WorkerPool(js("const onTrack = async (e) => e;\n")) as pool:
        assert pool.handlers == ("track",)
        assert (await run1(pool, track()))["status"] == "ok"


async def test_require_is_not_available() -> None:
    with pytest.raises(FunctionLoadError, match=r"require\('fs'\) is not available in sluice functions"):
        await WorkerPool(js("const fs = require('fs');\nasync function onTrack(e) { return e }\n")).start()


# --- batches -------------------------------------------------------------------------------------

BATCH = """
async function onBatch(events, settings) {
  const mode = events[0].properties.mode;
  if (mode === 'same') return events.map((e, i) => (i === 1 ? null : e));
  if (mode === 'shorter') return [events[2]];
  if (mode === 'unknown') return [{ ...events[0], messageId: 'nope' }];
  if (mode === 'slot') return [events[0], new ValidationError('no email'), new RetryError('later')];
  if (mode === 'retry') throw new RetryError('all of them');
  if (mode === 'crash') throw new Error('boom');
  if (mode === 'longer') return [...events, ...events];
  return 'nonsense';
}
async function onTrack(event) { event.properties.single = true; return event; }
"""


def batch_events(mode: str) -> list[dict[str, Any]]:
    return [track("b", f"m{i}", mode=mode) for i in range(3)]


@pytest.fixture
async def batcher() -> AsyncIterator[WorkerPool]:
    async with WorkerPool(js(BATCH)) as pool:
        yield pool


@pytest.mark.parametrize(
    ("mode", "statuses", "batch_status"),
    [
        ("same", ["ok", "filtered", "ok"], "ok"),
        ("shorter", ["filtered", "filtered", "ok"], "ok"),
        ("unknown", ["bad_request"] * 3, "bad_request"),
        ("slot", ["ok", "message_rejected", "retry"], "ok"),
        ("retry", ["retry"] * 3, "retry"),
        ("crash", ["bad_request"] * 3, "bad_request"),
        ("longer", ["bad_request"] * 3, "bad_request"),
        ("other", ["bad_request"] * 3, "bad_request"),
    ],
)
async def test_on_batch_pairing(batcher: WorkerPool, mode: str, statuses: list[str], batch_status: str) -> None:
    out = await batcher.run_batch(batch_events(mode))
    assert [r["status"] for r in out["results"]] == statuses
    assert out["status"] == batch_status
    if mode == "shorter":
        assert out["results"][2]["event"]["messageId"] == "m2"
    if mode == "slot":
        assert out["results"][1]["error"] == {"type": "ValidationError", "message": "no email"}
    if mode == "retry":
        assert all(r["error"]["message"] == "all of them" for r in out["results"])


async def test_single_events_of_a_batch_function_use_the_single_handler(batcher: WorkerPool) -> None:
    result = await run1(batcher, track())
    assert result["event"]["properties"]["single"] is True


# --- limits and crashes --------------------------------------------------------------------------

MISBEHAVE = """
let big = [];
async function onTrack(event) {
  const what = event.properties.what;
  if (what === 'spin') { while (true) {} }
  if (what === 'spin_after_await') { await null; while (true) {} }
  if (what === 'hang') { await new Promise(() => {}); }
  if (what === 'sleep') { await new Promise((r) => setTimeout(r, 200)); }
  if (what === 'memory') { for (;;) big.push(new Array(100000).fill({ a: Math.random() })); }
  return event;
}
"""


@pytest.fixture
async def misbehave() -> AsyncIterator[WorkerPool]:
    async with WorkerPool(js(MISBEHAVE), limits=Limits(timeout_s=LIMIT_S, grace_s=1.0, memory_mb=64)) as pool:
        yield pool


@pytest.mark.parametrize("what", ["spin", "spin_after_await", "hang"])
async def test_timeouts_replace_the_worker_and_the_next_frame_works(misbehave: WorkerPool, what: str) -> None:
    before = misbehave.worker_pids
    started = time.monotonic()
    results = await misbehave.run_events([track("ok", "a"), track(what, "b")])
    elapsed = time.monotonic() - started
    assert results[1]["status"] == "timeout", results
    assert LIMIT_S * 0.9 <= elapsed <= LIMIT_S + 1.0 + 0.8
    after = await run1(misbehave, track("ok"))
    assert after["status"] == "ok"
    assert misbehave.worker_pids != before


async def test_async_handlers_overlap_within_a_frame(misbehave: WorkerPool) -> None:
    started = time.monotonic()
    results = await misbehave.run_events([track("sleep", f"m{i}") for i in range(20)])
    assert [r["status"] for r in results] == ["ok"] * 20
    assert time.monotonic() - started < 1.5  # 20 × 200 ms run concurrently


async def test_heap_overflow_is_bad_request_and_the_pool_recovers(misbehave: WorkerPool) -> None:
    result = await run1(misbehave, track("memory"))
    assert result["status"] == "bad_request", result
    assert result["error"]["type"] == "MemoryError"
    assert "64 MiB" in result["error"]["message"]
    assert (await run1(misbehave, track("ok")))["status"] == "ok"


async def test_kill_9_mid_frame_retries_and_loses_nothing(misbehave: WorkerPool) -> None:
    (pid,) = misbehave.worker_pids
    task = asyncio.create_task(misbehave.run_events([track("sleep", f"m{i}") for i in range(5)]))
    await asyncio.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    results = await task
    assert [r["status"] for r in results] == ["retry"] * 5
    assert "SIGKILL" in results[0]["error"]["message"]
    assert (await run1(misbehave, track("ok")))["status"] == "ok"
    assert misbehave.stats.crashed == 1


# --- state ---------------------------------------------------------------------------------------

STATE = """
let count = 0;
let token = null;
async function onTrack(event) {
  count += 1;
  if (!token) token = 'tok-' + Math.random();
  event.properties.count = count;
  event.properties.token = token;
  return event;
}
"""


async def test_module_state_persists_within_an_instance_and_is_not_shared() -> None:
    async with WorkerPool(js(STATE)) as one, WorkerPool(js(STATE)) as two:
        first = await run1(one, track())
        second = await run1(one, track())
        other = await run1(two, track())
    assert first["event"]["properties"]["count"] == 1
    assert second["event"]["properties"]["count"] == 2
    assert second["event"]["properties"]["token"] == first["event"]["properties"]["token"]
    assert other["event"]["properties"]["count"] == 1
    assert other["event"]["properties"]["token"] != first["event"]["properties"]["token"]


# --- services ------------------------------------------------------------------------------------

SERVICES = """
async function onTrack(event, settings) {
  const what = event.properties.what;
  if (what === 'fetch') {
    const res = await fetch(event.properties.url + '/api?key=' + settings.apiKey, {
      method: 'POST',
      headers: new Headers({ Authorization: 'Bearer ' + settings.apiKey, 'Content-Type': 'application/json' }),
      body: JSON.stringify({ secret: settings.apiKey, n: 1 }),
    });
    event.properties.status = res.status;
    event.properties.ok = res.ok;
    event.properties.body = await res.json();
    event.properties.type = res.headers.get('content-type');
    return event;
  }
  if (what === 'fetchtext') {
    const res = await fetch(event.properties.url + '/missing');
    event.properties.text = await res.text();
    event.properties.status = res.status;
    return event;
  }
  if (what === 'fetchfail') { await fetch('http://127.0.0.1:1/nothing'); }
  if (what === 'log') {
    console.log('key is', settings.apiKey, { a: 1 });
    console.error('second line');
    throw new Error('failed with ' + settings.apiKey);
  }
  if (what === 'flood') { for (let i = 0; i < 1000; i++) console.log('line ' + i + ' ' + 'x'.repeat(50)); return event; }
  if (what === 'cache') {
    event.properties.v1 = await cache.load('k', 60000, async () => 'v' + Math.random());
    event.properties.v2 = await cache.load('k', 60000, async () => 'other');
    cache.delete('k');
    event.properties.v3 = await cache.load('k', -1, () => 'fresh');
    return event;
  }
  if (what === 'aws') { return new AWS.S3(); }
  if (what === 'stripe') { return stripe(settings.apiKey); }
  if (what === 'require') { require('fs'); }
  return event;
}
"""

SECRET = "sk_live_abcdef123456"
SCHEMA = (SettingSpec("apiKey", "API Key", required=True, sensitive=True),)


@pytest.fixture
async def services() -> AsyncIterator[WorkerPool]:
    async with WorkerPool(js(SERVICES, SCHEMA), {"apiKey": SECRET}) as pool:
        yield pool


async def test_fetch_is_traced_and_secrets_redacted(services: WorkerPool, http_server: HttpServer) -> None:
    http_server.route("/api", 201, {"tier": "gold"})
    result = await run1(services, track("fetch", url=http_server.url))
    assert result["status"] == "ok", result
    props = result["event"]["properties"]
    assert props["status"] == 201 and props["ok"] is True and props["body"] == {"tier": "gold"}
    assert props["type"] == "application/json"
    assert http_server.bodies("/api") == [{"secret": SECRET, "n": 1}]  # the real request carries the secret
    (req,) = result["requests"]
    assert req["method"] == "POST"
    assert req["url"] == f"{http_server.url}/api?key=[REDACTED]"
    assert req["requestHeaders"]["authorization"] == "[REDACTED]"
    assert req["requestBody"] == '{"secret":"[REDACTED]","n":1}'
    assert req["status"] == 201
    assert req["responseBody"] == '{"tier": "gold"}'
    assert req["durationMs"] > 0
    assert SECRET not in str(result)


async def test_fetch_non_2xx_and_network_errors(services: WorkerPool, http_server: HttpServer) -> None:
    result = await run1(services, track("fetchtext", url=http_server.url))
    assert result["event"]["properties"]["status"] == 404
    assert "no route" in result["event"]["properties"]["text"]
    failed = await run1(services, track("fetchfail"))
    assert failed["status"] == "bad_request"
    assert failed["error"]["type"] == "FetchError"
    assert failed["requests"][0]["error"]


async def test_console_is_captured_and_redacted(services: WorkerPool) -> None:
    result = await run1(services, track("log"))
    assert result["logs"] == ["key is [REDACTED] { a: 1 }", "second line"]
    assert result["error"]["message"].startswith("failed with [REDACTED]")


async def test_console_output_is_bounded(services: WorkerPool) -> None:
    result = await run1(services, track("flood"))
    assert sum(len(line.encode()) + 1 for line in result["logs"]) <= 4096 + 100
    assert result["logs"][-1] == "… (logs truncated at 4 KB)"


async def test_cache_load_and_delete(services: WorkerPool) -> None:
    props = (await run1(services, track("cache")))["event"]["properties"]
    assert props["v1"] == props["v2"] and props["v1"].startswith("v")
    assert props["v3"] == "fresh"


@pytest.mark.parametrize(("what", "name"), [("aws", "AWS (aws-sdk)"), ("stripe", "stripe (stripe)")])
async def test_segment_libraries_not_shipped_say_so(services: WorkerPool, what: str, name: str) -> None:
    result = await run1(services, track(what))
    assert result["status"] == "bad_request"
    assert result["error"]["type"] != "ReferenceError"
    assert (
        f"{name} is part of Segment's functions runtime but is not available in sluice's runtime"
        in (result["error"]["message"])
    )


async def test_require_fails_clearly_in_a_handler(services: WorkerPool) -> None:
    result = await run1(services, track("require"))
    assert "require('fs') is not available in sluice functions" in result["error"]["message"]


async def test_mocks_answer_fetch() -> None:
    code = "async function onTrack(e) { const r = await fetch('https://api.example.com/x'); e.r = await r.json(); return e }"
    mocks = [{"url": "https://api.example.com/*", "json": {"mocked": True}}]
    async with WorkerPool(js(code), mocks=mocks) as pool:
        result = await run1(pool, track())
    assert result["event"]["r"] == {"mocked": True}
    assert result["requests"][0]["status"] == 200


# --- globals and libraries -----------------------------------------------------------------------

LIBRARIES = r"""
async function onTrack(event) {
  const p = {};
  p.lodash = _.get({ a: { b: 2 } }, 'a.b');
  p.moment = moment.tz('2024-01-15T12:00:00Z', 'America/New_York').format('HH:mm');
  const token = jsonwebtoken.sign({ sub: 'u1' }, 'shh', { algorithm: 'HS256', noTimestamp: true });
  p.jwt = jsonwebtoken.verify(token, 'shh').sub;
  p.xml = xml({ a: 'b' });
  p.xml2js = (await xml2js.parseStringPromise('<r><x>1</x></r>')).r.x[0];
  p.uuid = uuidv5.uuidv5('dns', 'google.com');
  p.zlib = zlib.zlib.inflateSync(zlib.zlib.deflateSync('hello')).toString();
  const form = new FormData();
  form.append('k', 'v');
  p.form = form.getHeaders()['content-type'].startsWith('multipart/form-data');
  p.phone = libphonenumberjslib.libphonenumberjs.parsePhoneNumber('+14155552671').country;
  p.fetchretry = typeof fetchretrylib.fetchretry(fetch);
  p.oauth = typeof OAuth.OAuth2;
  p.crypto = crypto.createHash('sha256').update('x').digest('hex').slice(0, 8);
  p.https = typeof https.request;
  p.btoa = atob(btoa('hi'));
  p.buffer = Buffer.from('hi').toString('base64');
  p.url = new URL('https://a.example/p?q=1').searchParams.get('q');
  p.qs = new URLSearchParams({ a: '1' }).toString();
  p.headers = new Headers({ 'X-A': '1' }).get('x-a');
  p.timer = await new Promise((r) => setTimeout(() => r('t'), 1));
  p.noProcess = typeof process;
  event.properties = p;
  return event;
}
"""


async def test_library_globals() -> None:
    async with WorkerPool(js(LIBRARIES)) as pool:
        result = await run1(pool, track())
    assert result["status"] == "ok", result
    assert result["event"]["properties"] == {
        "lodash": 2,
        "moment": "07:00",
        "jwt": "u1",
        "xml": "<a>b</a>",
        "xml2js": "1",
        "uuid": result["event"]["properties"]["uuid"],
        "zlib": "hello",
        "form": True,
        "phone": "US",
        "fetchretry": "function",
        "oauth": "function",
        "crypto": "2d711642",
        "https": "function",
        "btoa": "hi",
        "buffer": "aGk=",
        "url": "1",
        "qs": "a=1",
        "headers": "1",
        "timer": "t",
        "noProcess": "undefined",
    }
    assert len(result["event"]["properties"]["uuid"]) == 36


async def test_segment_reassignment_pattern_survives_invocations() -> None:
    code = "async function onTrack(e) { uuidv5 = uuidv5.uuidv5; zlib = zlib.zlib; e.u = uuidv5('url', 'x'); return e }"
    async with WorkerPool(js(code)) as pool:
        results = await pool.run_events([track(mid="a"), track(mid="b")])
    assert [r["status"] for r in results] == ["ok", "ok"]


async def test_console_never_reaches_the_protocol_pipe() -> None:
    code = "console.log('at load');\nasync function onTrack(e) { console.log('x'.repeat(70000)); return e }"
    async with WorkerPool(js(code)) as pool:
        results = await pool.run_events([track(mid=str(i)) for i in range(3)])
    assert [r["status"] for r in results] == ["ok"] * 3


async def test_throughput_of_a_trivial_handler() -> None:
    async with WorkerPool(js("function onTrack(e) { return e }")) as pool:
        events = [track(mid=str(i)) for i in range(100)]
        await pool.run_events(events)
        started = time.perf_counter()
        frames = 100
        await asyncio.gather(*(pool.run_events(events) for _ in range(frames)))
        rate = frames * 100 / (time.perf_counter() - started)
    assert rate > 5000, rate  # the real target (≥ 35,000/s) is measured by the benchmark


async def test_missing_node_is_a_clear_start_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from sluice.errors import WorkerStartError
    from sluice.functions import pool as pool_module

    monkeypatch.setitem(pool_module.WORKER_ENV, "PATH", "/nonexistent")
    with pytest.raises(WorkerStartError, match=r"JavaScript functions need Node.js 20 or newer \(node was not found"):
        await WorkerPool(js(STATE)).start()


async def test_missing_libraries_name_npm_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from sluice.errors import WorkerStartError
    from sluice.functions import pool as pool_module

    monkeypatch.setattr(pool_module, "_JS_REQUIRED", ("no-such-package-for-sluice",))
    with pytest.raises(WorkerStartError, match="npm ci"):
        await WorkerPool(js(STATE)).start()
