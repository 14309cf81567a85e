"""fetch, cache and logs inside the worker, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

from sluice.functions.pool import FunctionSource, WorkerPool
from sluice.functions.services import RuntimeServices
from sluice.testing import MockResponse, arun_function
from tests.conftest import HttpServer

TRACK = {
    "type": "track",
    "event": "Song Played",
    "userId": "u1",
    "messageId": "m1",
    "timestamp": "2026-01-01T00:00:00.000Z",
    "properties": {"name": "Fallin for You"},
}

SEED_POST = """
async def on_track(event, settings):
    await fetch(settings["url"] + "/api", method="POST",
                headers={"Content-Type": "application/json"},
                body=json.dumps({"event_name": event["event"], "event_properties": event["properties"],
                                 "timestamp": event["timestamp"]}))
    return event
import json
"""


async def test_seed_on_track_posts_to_an_external_service(http_server: HttpServer) -> None:
    http_server.route("/api", 200, {"ok": True})
    run = await arun_function(SEED_POST, TRACK, settings={"url": http_server.url})
    assert run.status == "ok"
    assert run.event == TRACK
    (received,) = http_server.requests
    assert received.method == "POST" and received.path == "/api"
    assert received.json() == {
        "event_name": "Song Played",
        "event_properties": {"name": "Fallin for You"},
        "timestamp": "2026-01-01T00:00:00.000Z",
    }
    (trace,) = run.requests
    assert trace["method"] == "POST" and trace["url"] == http_server.url + "/api"
    assert trace["status"] == 200 and trace["responseBody"] == '{"ok": true}'
    assert trace["durationMs"] > 0


SEED_ERRORS = """
async def on_track(event, settings):
    try:
        res = await fetch(settings["url"], method="POST", json={"event": event})
    except FetchError as err:
        raise RetryError(str(err))
    if res.status >= 500 or res.status == 429:
        raise RetryError(f"HTTP Status {res.status}")
    return event

async def on_identify(event, settings):
    if event["traits"].get("companyName"):
        raise DropEvent("Company name is required")
    return event

async def on_page(event, settings):
    if not event["properties"].get("pageName"):
        raise ValidationError("Page name is required")
    return event

async def on_alias(event, settings):
    raise EventNotSupported("Alias event is not supported")
"""


async def test_seed_error_examples(http_server: HttpServer) -> None:
    http_server.route("/busy", 429, {"error": "slow down"})
    http_server.route("/down", 503, {"error": "down"})
    http_server.route("/fine", 200, {})
    cases = [
        ({"url": http_server.url + "/busy"}, TRACK, "retry", "HTTP Status 429"),
        ({"url": http_server.url + "/down"}, TRACK, "retry", "HTTP Status 503"),
        ({"url": "http://127.0.0.1:9/refused"}, TRACK, "retry", "failed"),
        ({"url": http_server.url + "/fine"}, TRACK, "ok", None),
        ({}, {"type": "identify", "userId": "u", "traits": {"companyName": "X"}}, "dropped", "Company name"),
        ({}, {"type": "page", "userId": "u", "properties": {}}, "message_rejected", "Page name is required"),
        ({}, {"type": "alias", "userId": "u", "previousId": "p"}, "unsupported_event_type", "Alias event"),
    ]
    for settings, event, status, fragment in cases:
        run = await arun_function(SEED_ERRORS, event, settings=settings)
        assert run.status == status, (settings, run.error)
        if fragment:
            assert run.error is not None and fragment in run.error["message"]
    refused = await arun_function(SEED_ERRORS, TRACK, settings={"url": "http://127.0.0.1:9/refused"})
    assert refused.requests[0]["status"] is None and "failed" in refused.requests[0]["error"]


SEED_TOKEN_CACHE = """
import time
TOKEN_EXPIRE_MS = 60 * 60 * 1000
token = None

async def get_access_token(settings):
    global token
    now = time.time() * 1000
    if not token or now - token["ts"] > TOKEN_EXPIRE_MS:
        resp = await (await fetch(settings["url"] + "/tokens", method="POST")).json()
        token = {"ts": now, "value": resp["token"]}
    return token["value"]

async def on_track(event, settings):
    event["properties"]["token"] = await get_access_token(settings)
    cached = await cache.load("profile", 60_000, lambda: fetch_profile(settings))
    event["properties"]["plan"] = cached["plan"]
    return event

async def fetch_profile(settings):
    res = await fetch(settings["url"] + "/profile")
    return await res.json()
"""


async def test_seed_token_cache_and_cache_load_fetch_once_per_instance(http_server: HttpServer) -> None:
    http_server.route("/tokens", 200, {"token": "tok-1"})
    http_server.route("/profile", 200, {"plan": "gold"})
    async with WorkerPool(FunctionSource(SEED_TOKEN_CACHE), {"url": http_server.url}) as pool:
        first = await pool.run_events([dict(TRACK, properties={}) for _ in range(5)])
        second = await pool.run_events([dict(TRACK, properties={})])
    for result in [*first, *second]:
        assert result["status"] == "ok"
        assert result["event"]["properties"] == {"token": "tok-1", "plan": "gold"}
    paths = [r.path for r in http_server.requests]
    # concurrent invocations may race for the module-level token, but cache.load shares one load
    assert paths.count("/profile") == 1
    assert 1 <= paths.count("/tokens") <= 5
    assert len(second[0]["requests"]) == 0  # later invocations hit the caches


async def test_async_handlers_of_one_micro_batch_overlap_their_io(http_server: HttpServer) -> None:
    http_server.set_barrier(5)  # each request waits until five are in flight at once
    code = (
        "async def on_track(event, settings):\n"
        "    res = await fetch(settings['url'] + '/barrier')\n"
        "    if not res.ok:\n        raise RetryError('barrier broke: handlers ran one at a time')\n"
        "    return event\n"
    )
    async with WorkerPool(FunctionSource(code), {"url": http_server.url}) as pool:
        results = await pool.run_events([dict(TRACK, messageId=str(i)) for i in range(5)])
    assert [r["status"] for r in results] == ["ok"] * 5


async def test_logs_are_captured_per_invocation_and_bounded_to_4kb() -> None:
    code = (
        "import logging, asyncio\n"
        "async def on_track(event, settings):\n"
        "    n = event['properties']['n']\n"
        "    print('User ID is', event['userId'], n)\n"
        "    await asyncio.sleep(0.01 * (3 - n))\n"
        "    logging.getLogger('mine').warning('warned %s', n)\n"
        "    log.info('via log', n)\n"
        "    if n == 2:\n        print('x' * 5000)\n"
        "    return event\n"
    )
    async with WorkerPool(FunctionSource(code)) as pool:
        results = await pool.run_events([dict(TRACK, properties={"n": n}) for n in range(3)])
    for n in (0, 1):
        assert results[n]["logs"] == [f"User ID is u1 {n}", f"WARNING mine: warned {n}", f"INFO: via log {n}"]
    big = results[2]["logs"]
    assert big[:3] == ["User ID is u1 2", "WARNING mine: warned 2", "INFO: via log 2"]
    assert big[-1] == "… (logs truncated at 4 KB)"
    assert sum(len(line.encode()) + 1 for line in big[:-1]) <= 4096 + 1


async def test_secrets_are_redacted_from_logs_traces_and_errors(http_server: HttpServer) -> None:
    http_server.route("/echo", 200, {"seen": "sk_live_abcdef123456"}, {"X-Echo": "sk_live_abcdef123456"})
    schema = [
        {"name": "apiKey", "label": "API Key", "type": "STRING", "sensitive": True},
        {"name": "url", "label": "URL", "type": "STRING"},
    ]
    code = (
        "async def on_track(event, settings):\n"
        "    print('using key', settings['apiKey'])\n"
        "    await fetch(settings['url'] + '/echo?key=' + settings['apiKey'], method='POST',\n"
        "                headers={'Authorization': 'Bearer ' + settings['apiKey'], 'X-Key': settings['apiKey']},\n"
        "                json={'key': settings['apiKey']})\n"
        "    raise ValueError('bad key ' + settings['apiKey'])\n"
    )
    settings = {"apiKey": "sk_live_abcdef123456", "url": http_server.url}
    run = await arun_function(code, TRACK, schema=schema, settings=settings)
    assert run.status == "bad_request"
    dumped = str(run.to_dict())
    assert "sk_live_abcdef123456" not in dumped
    assert run.logs == ["using key [REDACTED]"]
    assert run.error == {"type": "ValueError", "message": "bad key [REDACTED] (line 6)"}
    (trace,) = run.requests
    assert trace["url"].endswith("/echo?key=[REDACTED]")
    assert trace["requestHeaders"]["Authorization"] == "[REDACTED]"
    assert trace["requestHeaders"]["X-Key"] == "[REDACTED]"
    assert trace["requestBody"] == '{"key":"[REDACTED]"}'
    assert trace["responseBody"] == '{"seen": "[REDACTED]"}'
    # the destination itself did receive the real value
    assert http_server.requests[0].headers["Authorization"] == "Bearer sk_live_abcdef123456"


async def test_fetch_mocks_answer_and_are_traced() -> None:
    code = (
        "async def on_identify(event, settings):\n"
        "    res = await fetch('https://api.example.com/users/' + event['userId'])\n"
        "    event['traits']['tier'] = (await res.json())['tier']\n"
        "    try:\n        await fetch('https://down.example.com/x', {'method': 'POST', 'body': 'hi'})\n"
        "    except FetchError as err:\n        print('failed:', err)\n"
        "    return event\n"
    )
    run = await arun_function(
        code,
        {"type": "identify", "userId": "u7", "traits": {}},
        mocks=[
            MockResponse("https://api.example.com/users/*", json={"tier": "gold"}),
            MockResponse("https://down.example.com/*", method="POST", error="connection refused"),
        ],
    )
    assert run.status == "ok", run.error
    assert run.event["traits"]["tier"] == "gold"
    assert [r["url"] for r in run.requests] == ["https://api.example.com/users/u7", "https://down.example.com/x"]
    assert run.requests[1]["requestBody"] == "hi" and run.requests[1]["error"] == "connection refused"
    assert run.logs == ["failed: connection refused"]


async def test_cache_ttl_lru_and_delete_with_an_injected_clock() -> None:
    now = [100.0]
    services = RuntimeServices(cache_max_entries=2, clock=lambda: now[0])
    calls: list[str] = []

    def loader(name: str) -> Any:
        async def load() -> str:
            calls.append(name)
            return f"{name}-{len(calls)}"

        return load

    assert await services.cache_load("a", 1000, loader("a")) == "a-1"
    assert await services.cache_load("a", 1000, loader("a")) == "a-1"
    now[0] += 1.001  # past the 1000 ms TTL
    assert await services.cache_load("a", 1000, loader("a")) == "a-2"
    assert await services.cache_load("b", -1, loader("b")) == "b-3"  # -1: no expiry
    assert await services.cache_load("c", None, loader("c")) == "c-4"  # evicts the least recently used: a
    now[0] += 10_000
    assert await services.cache_load("b", -1, loader("b")) == "b-3"
    assert await services.cache_load("a", 1000, loader("a")) == "a-5"
    services.cache_delete("a")
    assert await services.cache_load("a", 1000, loader("a")) == "a-6"


async def test_concurrent_cache_loads_share_one_call_and_errors_are_not_cached() -> None:
    services = RuntimeServices()
    calls = 0

    async def slow() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return calls

    assert await asyncio.gather(*(services.cache_load("k", 1000, slow) for _ in range(5))) == [1] * 5

    async def broken() -> int:
        raise RuntimeError("upstream down")

    for _ in range(2):
        try:
            await services.cache_load("e", 1000, broken)
        except RuntimeError as exc:
            assert str(exc) == "upstream down"
    assert await services.cache_load("e", 1000, slow) == 2


async def test_fetch_body_dict_is_sent_as_json(http_server: HttpServer) -> None:
    http_server.route("/in", 202, {})
    code = "async def on_track(event, settings):\n    await fetch(settings['url'] + '/in', method='PUT', body={'a': [1, 2]})\n    return event\n"
    run = await arun_function(code, TRACK, settings={"url": http_server.url})
    assert run.status == "ok"
    (received,) = http_server.requests
    assert received.method == "PUT" and received.json() == {"a": [1, 2]}
    assert received.headers["Content-Type"] == "application/json"
