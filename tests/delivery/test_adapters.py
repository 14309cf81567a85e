"""Webhook and Segment-forwarder adapters against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import orjson
import pytest

from sluice.delivery import (
    Outcome,
    SegmentForwarderAdapter,
    WebhookAdapter,
    make_adapter,
    parse_retry_after,
)
from sluice.delivery.outcomes import REDACTED
from sluice.errors import InvalidInput
from tests.conftest import HttpServer
from tests.delivery.conftest import HungServer


def ev(i: int) -> dict[str, Any]:
    return {"type": "track", "event": f"E{i}", "messageId": f"m{i}", "properties": {"i": i}}


def hook(server: HttpServer, **config: Any) -> dict[str, Any]:
    return {"url": server.url + "/hook", **config}


# --- webhook: status mapping --------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 204])
async def test_2xx_is_delivered(http_server: HttpServer, client: httpx.AsyncClient, status: int) -> None:
    http_server.route("/hook", status, {"ok": True})
    [result] = await WebhookAdapter(hook(http_server), client=client).send([ev(1)])
    assert result.outcome is Outcome.DELIVERED
    assert result.reason == f"HTTP {status}" and result.status_code == status
    assert result.request is None and result.response is None  # no traces on the hot path by default
    assert result.duration_ms > 0


async def test_delivered_traces_on_request(http_server: HttpServer, client: httpx.AsyncClient) -> None:
    http_server.route("/hook", 200, {"ok": True})
    [result] = await WebhookAdapter(hook(http_server), client=client, trace_delivered=True).send([ev(1)])
    assert result.request is not None and result.response is not None
    assert result.response["status"] == 200 and orjson.loads(result.response["body"]) == {"ok": True}


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_429_and_5xx_are_retrying(http_server: HttpServer, client: httpx.AsyncClient, status: int) -> None:
    http_server.route("/hook", status, {"error": "busy"})
    [result] = await WebhookAdapter(hook(http_server), client=client).send([ev(1)])
    assert result.outcome is Outcome.RETRYING and result.retryable
    assert result.reason == f"HTTP {status}" and result.status_code == status
    assert result.response is not None and orjson.loads(result.response["body"]) == {"error": "busy"}
    assert result.retry_after_s is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_other_4xx_is_rejected(http_server: HttpServer, client: httpx.AsyncClient, status: int) -> None:
    http_server.route("/hook", status, {"error": "no"})
    [result] = await WebhookAdapter(hook(http_server), client=client).send([ev(1)])
    assert result.outcome is Outcome.REJECTED_BY_DESTINATION and not result.retryable
    assert result.reason == f"HTTP {status}"
    assert result.request is not None and result.request["method"] == "POST"


async def test_retry_after_seconds_is_surfaced(http_server: HttpServer, client: httpx.AsyncClient) -> None:
    http_server.route("/hook", 429, {}, {"Retry-After": "7"})
    [result] = await WebhookAdapter(hook(http_server), client=client).send([ev(1)])
    assert result.outcome is Outcome.RETRYING and result.retry_after_s == 7.0


async def test_retry_after_http_date_is_surfaced(http_server: HttpServer, client: httpx.AsyncClient) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    http_server.route("/hook", 503, {}, {"Retry-After": format_datetime(when, usegmt=True)})
    [result] = await WebhookAdapter(hook(http_server), client=client).send([ev(1)])
    assert result.retry_after_s is not None and 100 < result.retry_after_s <= 120


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(" 30 ") == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now=now) == 60.0
    assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now=now) == 0.0


# --- webhook: failures without an answer ---------------------------------------------------------


async def test_hung_destination_times_out(hung_server: HungServer, client: httpx.AsyncClient) -> None:
    adapter = WebhookAdapter({"url": hung_server.url + "/hook", "timeoutMs": 100}, client=client)
    [result] = await adapter.send([ev(1)])
    assert hung_server.received.is_set()
    assert result.outcome is Outcome.TIMEOUT and result.retryable
    assert "timed out after 100 ms" in result.reason
    assert result.status_code is None and result.response is None
    assert result.request is not None and result.request["url"] == hung_server.url + "/hook"


async def test_connection_refused_is_retrying(refused_url: str, client: httpx.AsyncClient) -> None:
    [result] = await WebhookAdapter({"url": refused_url}, client=client).send([ev(1)])
    assert result.outcome is Outcome.RETRYING
    assert result.reason.startswith("network error: ConnectError")
    assert result.status_code is None and result.response is None and result.request is not None


async def test_network_error_message_is_redacted(refused_url: str, client: httpx.AsyncClient) -> None:
    adapter = WebhookAdapter({"url": refused_url + "?k=topsecret1"}, client=client, secrets=["topsecret1"])
    [result] = await adapter.send([ev(1)])
    assert "topsecret1" not in repr(result)


# --- webhook: batching -----------------------------------------------------------------------------


async def test_batch_size_1_sends_one_object_per_request(http_server: HttpServer, client: httpx.AsyncClient) -> None:
    http_server.route("/hook", 200, {})
    events = [ev(i) for i in range(3)]
    results = await WebhookAdapter(hook(http_server), client=client).send(events)
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 3
    bodies = [r.json() for r in http_server.requests]
    assert sorted(bodies, key=lambda b: b["messageId"]) == events
    assert all(r.headers["Content-Type"] == "application/json" for r in http_server.requests)


async def test_batch_size_n_sends_json_arrays(http_server: HttpServer, client: httpx.AsyncClient) -> None:
    http_server.route("/hook", 200, {})
    events = [ev(i) for i in range(5)]
    results = await WebhookAdapter(hook(http_server, batchSize=2), client=client).send(events)
    assert len(results) == 5 and all(r.outcome is Outcome.DELIVERED for r in results)
    bodies = sorted((r.json() for r in http_server.requests), key=lambda b: b[0]["messageId"])
    assert bodies == [events[0:2], events[2:4], events[4:5]]


async def test_a_batched_request_gives_its_events_the_same_result(
    http_server: HttpServer, client: httpx.AsyncClient
) -> None:
    http_server.route("/hook", 500, {})
    results = await WebhookAdapter(hook(http_server, batchSize=3), client=client).send([ev(i) for i in range(4)])
    assert results[0] is results[1] is results[2]
    assert results[3] is not results[0]
    assert all(r.outcome is Outcome.RETRYING for r in results)
    assert len(http_server.requests) == 2


async def test_bytes_events_are_sent_as_they_are(http_server: HttpServer, client: httpx.AsyncClient) -> None:
    http_server.route("/hook", 200, {})
    raw = [b'{"type":"track","event":"A"}', b'{"type":"track","event":"B"}']
    await WebhookAdapter(hook(http_server, batchSize=10), client=client).send(raw)
    [request] = http_server.requests
    assert request.body == b"[" + raw[0] + b"," + raw[1] + b"]"


async def test_no_events_no_requests(http_server: HttpServer, client: httpx.AsyncClient) -> None:
    assert await WebhookAdapter(hook(http_server), client=client).send([]) == []
    assert http_server.requests == []


async def test_method_is_configurable(http_server: HttpServer, client: httpx.AsyncClient) -> None:
    http_server.route("/hook", 200, {})
    await WebhookAdapter(hook(http_server, method="PUT"), client=client).send([ev(1)])
    assert http_server.requests[0].method == "PUT"


# --- webhook: headers and secrets -----------------------------------------------------------------


async def test_headers_are_sent_but_redacted_in_traces(http_server: HttpServer, client: httpx.AsyncClient) -> None:
    http_server.route("/hook", 400, {"echo": "Bearer tok-123456"})
    headers = {"Authorization": "Bearer tok-123456", "X-Tenant": "acme-prod", "Accept": "application/json"}
    [result] = await WebhookAdapter(hook(http_server, headers=headers), client=client).send([ev(1)])
    sent = http_server.requests[0].headers
    assert sent["Authorization"] == "Bearer tok-123456" and sent["X-Tenant"] == "acme-prod"
    assert result.request is not None and result.response is not None
    traced = {k.lower(): v for k, v in result.request["headers"].items()}
    assert traced["authorization"] == REDACTED and traced["x-tenant"] == REDACTED
    assert traced["accept"] == "application/json"
    assert "tok-123456" not in orjson.dumps(result.to_dict()).decode()


async def test_given_secrets_are_redacted_from_url_and_bodies(
    http_server: HttpServer, client: httpx.AsyncClient
) -> None:
    http_server.route("/hook", 500, {"seen": "pw-SECRET-42"})
    config = {"url": http_server.url + "/hook?sig=pw-SECRET-42"}
    event = {"type": "identify", "traits": {"password": "pw-SECRET-42"}}
    [result] = await WebhookAdapter(config, client=client, secrets=["pw-SECRET-42"]).send([event])
    assert http_server.requests[0].path == "/hook?sig=pw-SECRET-42"  # the real request is untouched
    assert http_server.requests[0].json() == event
    assert result.request is not None and result.response is not None
    assert result.request["url"].endswith(f"sig={REDACTED}")
    assert REDACTED in result.request["body"] and REDACTED in result.response["body"]
    assert "pw-SECRET-42" not in orjson.dumps(result.to_dict()).decode()


async def test_large_bodies_are_truncated_in_traces(http_server: HttpServer, client: httpx.AsyncClient) -> None:
    http_server.route("/hook", 400, {"blob": "z" * 10_000})
    [result] = await WebhookAdapter(hook(http_server), client=client).send([{"blob": "y" * 10_000}])
    assert result.request is not None and result.response is not None
    for trace in (result.request, result.response):
        assert trace["bodyTruncated"] is True and len(trace["body"]) == 2048 and trace["bodyBytes"] > 10_000


# --- segment forwarder ------------------------------------------------------------------------------


def basic(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


async def test_forwarder_posts_batches_with_basic_auth(http_server: HttpServer, client: httpx.AsyncClient) -> None:
    http_server.route("/v1/batch", 200, {"success": True})
    adapter = SegmentForwarderAdapter({"url": http_server.url + "/", "writeKey": "wk_live_1"}, client=client)
    events = [ev(i) for i in range(3)]
    results = await adapter.send(events)
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 3
    [request] = http_server.requests
    assert request.method == "POST" and request.path == "/v1/batch"
    assert request.headers["Authorization"] == basic("wk_live_1")
    body = request.json()
    assert body["batch"] == events
    assert datetime.fromisoformat(body["sentAt"].replace("Z", "+00:00")).tzinfo is not None


async def test_forwarder_splits_by_batch_size(http_server: HttpServer, client: httpx.AsyncClient) -> None:
    http_server.route("/v1/batch", 200, {})
    adapter = SegmentForwarderAdapter({"url": http_server.url, "writeKey": "wk", "batchSize": 2}, client=client)
    await adapter.send([ev(i) for i in range(5)])
    sizes = sorted(len(r.json()["batch"]) for r in http_server.requests)
    assert sizes == [1, 2, 2]


async def test_forwarder_splits_at_500_kb(http_server: HttpServer, client: httpx.AsyncClient) -> None:
    http_server.route("/v1/batch", 200, {})
    adapter = SegmentForwarderAdapter({"url": http_server.url, "writeKey": "wk"}, client=client)
    big = [{"type": "track", "event": "Big", "properties": {"pad": "p" * 30_000, "i": i}} for i in range(40)]
    results = await adapter.send(big)
    assert len(results) == 40 and all(r.outcome is Outcome.DELIVERED for r in results)
    assert len(http_server.requests) >= 3
    assert all(len(r.body) <= 500_000 for r in http_server.requests)
    assert sum(len(r.json()["batch"]) for r in http_server.requests) == 40


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, Outcome.DELIVERED), (400, Outcome.REJECTED_BY_DESTINATION), (401, Outcome.REJECTED_BY_DESTINATION),
     (429, Outcome.RETRYING), (500, Outcome.RETRYING)],
)  # fmt: skip
async def test_forwarder_status_mapping(
    http_server: HttpServer, client: httpx.AsyncClient, status: int, outcome: Outcome
) -> None:
    http_server.route("/v1/batch", status, {})
    adapter = SegmentForwarderAdapter({"url": http_server.url, "writeKey": "wk"}, client=client)
    [result] = await adapter.send([ev(1)])
    assert result.outcome is outcome and result.status_code == status


async def test_forwarder_redacts_the_write_key(http_server: HttpServer, client: httpx.AsyncClient) -> None:
    http_server.route("/v1/batch", 401, {"error": "bad key wk_secret_9"})
    adapter = SegmentForwarderAdapter({"url": http_server.url, "writeKey": "wk_secret_9"}, client=client)
    [result] = await adapter.send([{"type": "track", "event": "E", "context": {"key": "wk_secret_9"}}])
    assert result.request is not None
    assert result.request["headers"]["authorization"] == REDACTED
    dumped = orjson.dumps(result.to_dict()).decode()
    assert "wk_secret_9" not in dumped and basic("wk_secret_9").split()[1] not in dumped


async def test_forwarder_timeout_and_refused(
    hung_server: HungServer, refused_url: str, client: httpx.AsyncClient
) -> None:
    hung = SegmentForwarderAdapter({"url": hung_server.url, "writeKey": "wk", "timeoutMs": 100}, client=client)
    assert (await hung.send([ev(1)]))[0].outcome is Outcome.TIMEOUT
    refused = SegmentForwarderAdapter({"url": refused_url.removesuffix("/hook"), "writeKey": "wk"}, client=client)
    assert (await refused.send([ev(1)]))[0].outcome is Outcome.RETRYING


# --- factory -------------------------------------------------------------------------------------------


def test_make_adapter(client: httpx.AsyncClient) -> None:
    assert isinstance(make_adapter("webhook", {"url": "http://127.0.0.1:1/x"}, client=client), WebhookAdapter)
    seg = make_adapter("segment", {"url": "http://127.0.0.1:1", "writeKey": "k"}, client=client)
    assert isinstance(seg, SegmentForwarderAdapter)
    with pytest.raises(InvalidInput) as info:
        make_adapter("function", {}, client=client)
    assert info.value.field == "type"
    with pytest.raises(InvalidInput) as info:
        WebhookAdapter({"url": "mailto:x"}, client=client)
    assert info.value.field == "config.url"


async def test_configured_content_type_replaces_the_default(http_server: HttpServer, client: httpx.AsyncClient) -> None:
    http_server.route("/hook", 200, {})
    config = hook(http_server, headers={"content-type": "application/vnd.acme+json"})
    await WebhookAdapter(config, client=client).send([ev(1)])
    assert http_server.requests[0].headers["content-type"] == "application/vnd.acme+json"
