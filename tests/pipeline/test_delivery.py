"""Delivery end to end in one process: ingest → SQLite log → insert function → real HTTP destination."""

from __future__ import annotations

import base64
import shutil
import threading
from typing import Any

from sluice.catalog.access import SYSTEM
from tests.conftest import HttpServer, Recorded, skip_or_fail
from tests.pipeline.conftest import Harness, counts, track, until


def received(server: HttpServer, path: str = "/hook") -> list[dict[str, Any]]:
    """Every event the destination got, whether one per request or in JSON arrays."""
    out: list[dict[str, Any]] = []
    for body in server.bodies(path):
        out.extend(body if isinstance(body, list) else [body])
    return out


async def test_an_event_reaches_the_destination_transformed_by_the_function(
    harness: Harness, http_server: HttpServer
) -> None:
    http_server.route("/hook", 200, {"ok": True})
    dst = harness.destination(f"{http_server.url}/hook")
    harness.instance(harness.function(), dst)
    await harness.apply()
    await harness.send(track(1))
    [event] = await until(lambda: received(http_server), what="the event at the destination")
    assert event["properties"] == {"n": 1, "via": "sluice"}
    assert event["messageId"] == "m-1" and event["receivedAt"] and event["timestamp"]
    view = await until(lambda: harness.delivered(dst, 1))
    assert view["latency"]["p50Ms"] is not None


async def test_without_an_instance_events_go_straight_to_the_destination(
    harness: Harness, http_server: HttpServer
) -> None:
    http_server.route("/hook", 200, {})
    harness.destination(f"{http_server.url}/hook", batchSize=10)
    disabled = harness.destination(f"{http_server.url}/hook2", name="second")
    http_server.route("/hook2", 200, {})
    harness.instance(harness.function(), disabled, enabled=False)
    await harness.apply()
    await harness.send(*(track(n) for n in range(25)))
    await until(lambda: len(received(http_server)) == 25 and len(received(http_server, "/hook2")) == 25)
    assert all("via" not in e["properties"] for e in received(http_server) + received(http_server, "/hook2"))
    # batchSize 10: arrays of at most 10 events
    assert sorted(len(b) for b in http_server.bodies("/hook")) == [5, 10, 10]


async def test_500_then_200_is_delivered_after_a_retry(harness: Harness, http_server: HttpServer) -> None:
    answers = iter([(500, {"error": "busy"}, {})])
    http_server.route_fn("/hook", lambda _: next(answers, (200, {}, {})))
    dst = harness.destination(f"{http_server.url}/hook")
    await harness.apply()
    await harness.send(track(1))
    view = await until(lambda: harness.delivered(dst, 1), what="delivery after the retry")
    assert counts(view)[("retrying", "HTTP 500")] == 1
    assert len(http_server.bodies("/hook")) == 2
    [sample] = [s for s in view["samples"] if s["outcome"] == "retrying"]
    assert sample["response"]["status"] == 500 and sample["event"]["messageId"] == "m-1"


async def test_400_is_rejected_by_destination_and_kept_as_a_dead_letter(
    harness: Harness, http_server: HttpServer
) -> None:
    http_server.route("/hook", 400, {"error": "bad field"})
    dst = harness.destination(f"{http_server.url}/hook", headers={"Authorization": "Bearer s3cr3t-token"})
    await harness.apply()
    await harness.send(track(1))
    view = await until(lambda: _not_delivered(harness, dst), what="the rejection")
    assert counts(view) == {("rejected_by_destination", "HTTP 400"): 1}
    [sample] = view["samples"]
    assert {k.lower(): v for k, v in sample["request"]["headers"].items()}["authorization"] == "[REDACTED]"
    assert "s3cr3t-token" not in str(sample)
    assert sample["response"]["body"] == '{"error": "bad field"}'
    [dead] = await harness.log.dead_letters(dst)
    assert dead.status == "rejected_by_destination" and dead.reason == "HTTP 400"
    assert len(http_server.bodies("/hook")) == 1  # not retried


async def _not_delivered(harness: Harness, dst: str) -> dict[str, Any] | None:
    view = await harness.delivery(dst)
    return view if view["notDelivered"] else None


async def test_a_hung_destination_times_out_and_is_retried(harness: Harness, http_server: HttpServer) -> None:
    release = threading.Event()
    calls: list[int] = []

    def answer(_: Recorded) -> tuple[int, Any, dict[str, str]]:
        calls.append(1)
        if len(calls) == 1:
            release.wait(10)  # hangs past the destination's timeout
        return 200, {}, {}

    http_server.route_fn("/hook", answer)
    dst = harness.destination(f"{http_server.url}/hook", timeoutMs=200)
    await harness.apply()
    try:
        await harness.send(track(1))
        view = await until(lambda: harness.delivered(dst, 1), what="delivery after the timeout")
    finally:
        release.set()
    assert counts(view)[("timeout", "timeout")] == 1
    assert len(calls) == 2


async def test_a_failing_destination_does_not_slow_a_healthy_one(harness: Harness, http_server: HttpServer) -> None:
    release = threading.Event()

    def hang(_: Recorded) -> tuple[int, Any, dict[str, str]]:
        release.wait(10)
        return 503, {}, {}

    http_server.route_fn("/broken", hang)
    http_server.route("/hook", 200, {})
    harness.destination(f"{http_server.url}/broken", name="broken", timeoutMs=5000)
    healthy = harness.destination(f"{http_server.url}/hook", batchSize=50)
    await harness.apply()
    try:
        for start in range(0, 400, 100):
            await harness.send(*(track(n) for n in range(start, start + 100)))
        # every event reaches the healthy destination while the broken one still hangs on its first
        await until(lambda: len(received(http_server)) == 400, timeout=20, what="the healthy destination")
        assert not release.is_set()
        await until(lambda: harness.delivered(healthy, 400))
    finally:
        release.set()


async def test_retry_error_expires_at_max_age_and_replay_delivers_after_the_fix(
    harness: Harness, http_server: HttpServer
) -> None:
    http_server.route("/hook", 200, {})
    failing = (
        "from sluice.fn import RetryError\ndef on_track(event, settings):\n    raise RetryError('upstream down')\n"
    )
    fn = harness.function(failing)
    dst = harness.destination(f"{http_server.url}/hook", retryMaxAgeS=1)
    harness.instance(fn, dst)
    await harness.apply()
    await harness.send(track(1))
    dead = await until(lambda: harness.log.dead_letters(dst), what="the event to expire")
    assert dead[0].status == "expired" and "RetryError: upstream down" in dead[0].reason
    view = await harness.delivery(dst)
    assert counts(view)[("expired", "RetryError")] == 1
    assert counts(view)[("retrying", "RetryError")] >= 2  # retried before it expired
    assert not received(http_server)

    harness.deploy(fn, "def on_track(event, settings):\n    event['properties']['fixed'] = True\n    return event\n")
    await harness.apply()
    assert await harness.log.replay(dst, status="expired") == 1
    harness.pipeline.wake()
    [event] = await until(lambda: received(http_server), what="the replayed event")
    assert event["properties"]["fixed"] is True and event["messageId"] == "m-1"
    assert await harness.log.dead_letters(dst) == []


async def test_function_outcomes_are_counted_with_their_reasons(harness: Harness, http_server: HttpServer) -> None:
    code = (
        "from sluice.fn import DropEvent, ValidationError\n"
        "def on_track(event, settings):\n"
        "    n = event['properties']['n']\n"
        "    if n == 0:\n"
        "        return None\n"
        "    if n == 1:\n"
        "        raise DropEvent('not wanted')\n"
        "    if n == 2:\n"
        "        raise ValidationError('no email')\n"
        "    if n == 3:\n"
        "        print('about to fail')\n"
        "        raise KeyError('email')\n"
        "    return event\n"
    )
    http_server.route("/hook", 200, {})
    dst = harness.destination(f"{http_server.url}/hook")
    harness.instance(harness.function(code), dst)
    await harness.apply()
    await harness.send(*(track(n) for n in range(5)), {"type": "identify", "userId": "u9", "messageId": "i-1"})

    view = await until(lambda: harness.counted(dst, 6), what="six outcomes")
    assert counts(view) == {
        ("filtered", "insert_function"): 1,
        ("dropped", "DropEvent"): 1,
        ("message_rejected", "ValidationError"): 1,
        ("bad_request", "KeyError"): 1,
        ("delivered", ""): 1,
        ("unsupported_event_type", "EventNotSupported"): 1,
    }
    crashed = next(s for s in view["samples"] if s["outcome"] == "bad_request")
    assert crashed["logs"] and "about to fail" in crashed["logs"][0]
    assert crashed["event"]["properties"]["n"] == 3
    # bad_request is replayable after a fix; the function's own verdicts are final
    assert [d.status for d in await harness.log.dead_letters(dst)] == ["bad_request"]


async def test_integrations_object_decides_per_destination_name(harness: Harness, http_server: HttpServer) -> None:
    http_server.route("/hook", 200, {})
    dst = harness.destination(f"{http_server.url}/hook", name="My Hook")
    await harness.apply()
    cases = {
        "all-off": {"All": False},
        "named-on": {"All": False, "My Hook": True},
        "named-off": {"My Hook": False},
        "case-differs": {"my hook": False},
        "options-object": {"All": False, "My Hook": {"apiKey": "x"}},
        "string-false": {"My Hook": "false"},
        "lowercase-all": {"all": False},
    }
    await harness.send(*(track(n, messageId=name, integrations=value) for n, (name, value) in enumerate(cases.items())))

    view = await until(lambda: harness.counted(dst, len(cases)))
    delivered = {e["messageId"] for e in received(http_server)}
    assert delivered == {"named-on", "case-differs", "options-object", "string-false", "lowercase-all"}
    assert counts(view)[("filtered", "integrations")] == 2


async def test_the_integrations_object_stops_an_event_before_the_function(
    harness: Harness, http_server: HttpServer
) -> None:
    http_server.route("/hook", 200, {})
    http_server.route("/seen", 200, {})
    code = (
        "from sluice.fn import fetch\n"
        "async def on_track(event, settings):\n"
        f"    await fetch('{http_server.url}/seen', method='POST', json=event)\n"
        "    return event\n"
    )
    dst = harness.destination(f"{http_server.url}/hook")
    harness.instance(harness.function(code), dst)
    await harness.apply()
    await harness.send(track(1, integrations={"hook": False}), track(2))
    await until(lambda: received(http_server))
    assert [e["messageId"] for e in http_server.bodies("/seen")] == ["m-2"]


async def test_a_deploy_reaches_delivery_without_a_restart(harness: Harness, http_server: HttpServer) -> None:
    http_server.route("/hook", 200, {})
    fn = harness.function()
    dst = harness.destination(f"{http_server.url}/hook")
    harness.instance(fn, dst)
    await harness.apply()
    await harness.send(track(1))
    await until(lambda: received(http_server))
    harness.deploy(fn, "def on_track(event, settings):\n    event['properties']['via'] = 'v2'\n    return event\n")
    # the pipeline polls the catalog on its own (every 100 ms here)
    await until(lambda: harness.pipeline.runners[dst].plan.function.code.find("v2") > 0)  # type: ignore[union-attr]
    await harness.send(track(2))
    await until(lambda: len(received(http_server)) == 2)
    assert [e["properties"]["via"] for e in received(http_server)] == ["sluice", "v2"]


async def test_a_disabled_destination_gets_nothing_sent_while_it_is_off(
    harness: Harness, http_server: HttpServer
) -> None:
    http_server.route("/hook", 200, {})
    dst = harness.destination(f"{http_server.url}/hook")
    await harness.apply()
    harness.catalog.destinations.update(SYSTEM, dst, {"enabled": False})
    await harness.apply()
    await harness.send(track(1))
    harness.catalog.destinations.update(SYSTEM, dst, {"enabled": True})
    await harness.apply()
    await harness.send(track(2))
    await until(lambda: received(http_server))
    assert (await harness.log.backlog(dst)) == 0
    assert [e["messageId"] for e in received(http_server)] == ["m-2"]


async def test_a_function_destination_is_the_destination(harness: Harness, http_server: HttpServer) -> None:
    http_server.route("/crm", 200, {})
    code = (
        "from sluice.fn import fetch, RetryError\n"
        "async def on_track(event, settings):\n"
        f"    response = await fetch('{http_server.url}/crm', method='POST', json={{'id': event['userId']}})\n"
        "    if not response.ok:\n"
        "        raise RetryError(f'crm answered {response.status}')\n"
    )
    fn = harness.function(code, resourceType="DESTINATION")
    dst = harness.destination(type="function", name="crm")
    harness.instance(fn, dst)
    await harness.apply()
    await harness.send(track(1), track(2))
    view = await until(lambda: harness.delivered(dst, 2))
    assert counts(view) == {("delivered", "function"): 2}
    assert sorted(b["id"] for b in http_server.bodies("/crm")) == ["u1", "u2"]


async def test_tail_lines_follow_outcomes_while_someone_watches(harness: Harness, http_server: HttpServer) -> None:
    http_server.route("/hook", 200, {})
    dst = harness.destination(f"{http_server.url}/hook")
    await harness.apply()
    await harness.send(track(1))
    await until(lambda: received(http_server))
    assert harness.recorder.lines(dst, 0)[0] == []  # nobody was watching
    harness.recorder.follow(dst)
    await harness.send(track(2), track(3, integrations={"All": False}))
    lines, cursor = await until(lambda: _lines(harness, dst, 2))
    assert [(line["messageId"], line["outcome"]) for line in lines] == [("m-2", "delivered"), ("m-3", "filtered")] or [
        (line["messageId"], line["outcome"]) for line in lines
    ] == [("m-3", "filtered"), ("m-2", "delivered")]
    assert cursor >= 2


def _lines(harness: Harness, dst: str, n: int) -> tuple[list[dict[str, Any]], int] | None:
    lines, cursor = harness.recorder.lines(dst, 0)
    return (lines, cursor) if len(lines) >= n else None


async def test_a_segment_destination_forwards_batches_to_a_tracking_api(
    harness: Harness, http_server: HttpServer
) -> None:
    http_server.route("/v1/batch", 200, {"success": True})
    dst = harness.destination(type="segment", url=http_server.url, writeKey="downstream-key", batchSize=20)
    harness.instance(harness.function(), dst)
    await harness.apply()
    await harness.send(*(track(n) for n in range(30)))
    await until(lambda: sum(len(b["batch"]) for b in http_server.bodies("/v1/batch")) == 30)
    bodies = http_server.bodies("/v1/batch")
    assert sorted(len(b["batch"]) for b in bodies) == [10, 20]
    assert all(e["properties"]["via"] == "sluice" for b in bodies for e in b["batch"])
    [auth] = {r.headers["Authorization"] for r in http_server.requests}
    assert auth == "Basic " + base64.b64encode(b"downstream-key:").decode()


async def test_a_javascript_insert_function_runs_in_the_pipeline(harness: Harness, http_server: HttpServer) -> None:
    if shutil.which("node") is None:
        skip_or_fail("Node.js is not installed")
    code = (
        "let calls = 0\n"
        "async function onTrack(event, settings) {\n"
        "  calls += 1\n"
        "  if (event.properties.n === 2) throw new ValidationError('n must not be 2')\n"
        "  event.properties.via = 'node'\n"
        "  event.properties.calls = calls\n"
        "  return event\n"
        "}\n"
    )
    http_server.route("/hook", 200, {})
    dst = harness.destination(f"{http_server.url}/hook")
    harness.instance(harness.function(code, language="javascript"), dst)
    await harness.apply()
    await harness.send(*(track(n) for n in range(4)))
    view = await until(lambda: harness.counted(dst, 4))
    assert counts(view) == {("delivered", ""): 3, ("message_rejected", "ValidationError"): 1}
    got = sorted(received(http_server), key=lambda e: e["properties"]["n"])
    assert [e["properties"]["via"] for e in got] == ["node"] * 3
    assert (
        sorted(e["properties"]["calls"] for e in got) == [1, 2, 4] or len({e["properties"]["calls"] for e in got}) == 3
    )


COUNT_PER_USER = """
from sluice.fn import store

async def on_track(event, settings):
    key = "events:" + event["userId"]
    n = await store.get(key, 0) + 1
    await store.set(key, n)
    event["properties"]["userEvents"] = n
    return event
"""


async def test_a_function_counts_events_per_user_in_its_store(harness: Harness, http_server: HttpServer) -> None:
    http_server.route("/hook", 200, {})
    dst = harness.destination(f"{http_server.url}/hook")
    instance = harness.instance(harness.function(COUNT_PER_USER), dst)
    await harness.apply()
    users = ["u1", "u2", "u1", "u1", "u2", "u1"]
    # One at a time: a get-then-set is not atomic across the overlapping handlers of one micro-batch.
    for n, user in enumerate(users):
        await harness.send(track(n, userId=user))
        await until(lambda n=n: len(received(http_server)) == n + 1, what=f"event {n} at the destination")
    got = [(e["userId"], e["properties"]["userEvents"]) for e in received(http_server)]
    assert got == [("u1", 1), ("u2", 1), ("u1", 2), ("u1", 3), ("u2", 2), ("u1", 4)]
    store = harness.catalog.function_store
    assert (store.get(instance, "events:u1"), store.get(instance, "events:u2")) == (4, 2)
