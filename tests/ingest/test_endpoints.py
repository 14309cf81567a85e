"""Endpoints, auth, enrichment, batch merge, validation counters, dedupe, backlog and append failures."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from sluice.ingest import ENDPOINTS, IngestStats, MemoryDeduplicator, create_ingest_app
from sluice.queue.memory import MemoryEventLog
from tests.ingest.conftest import DISABLED_KEY, KEY, SOURCE, Harness, MakeHarness, basic

VALID: dict[str, dict[str, Any]] = {
    "track": {"userId": "u1", "event": "Signed Up", "properties": {"plan": "pro"}},
    "identify": {"userId": "u1", "traits": {"email": "a@example.com"}},
    "page": {"anonymousId": "a1", "name": "Home"},
    "screen": {"anonymousId": "a1", "name": "Main"},
    "group": {"userId": "u1", "groupId": "g1"},
    "alias": {"userId": "u2", "previousId": "u1"},
}
OK = {"success": True}


def test_endpoint_list() -> None:
    assert set(ENDPOINTS) == {f"/v1/{k}" for k in [*VALID, "batch", "import"]}


@pytest.mark.parametrize("kind", list(VALID))
async def test_single_endpoints_set_the_type_from_the_path(h: Harness, kind: str) -> None:
    r = await h.post(f"/v1/{kind}", {**VALID[kind], "type": "bogus"})
    assert r.status_code == 200 and r.json() == OK
    assert r.headers["content-type"] == "application/json"
    [event] = await h.stored()
    assert event["type"] == kind
    assert h.stats.snapshot().accepted == {SOURCE: 1}


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import"])
async def test_batch_and_import_merge_top_level_context_and_integrations(h: Harness, path: str) -> None:
    body = {
        "batch": [
            {"type": "track", "userId": "u", "event": "A", "context": {"library": {"version": "2"}, "ip": "1.2.3.4"}},
            {"type": "identify", "userId": "u", "integrations": {"Mixpanel": False}},
        ],
        "context": {"library": {"name": "analytics-python", "version": "1"}, "locale": "en"},
        "integrations": {"All": True, "Mixpanel": True},
    }
    assert (await h.post(path, body)).status_code == 200
    first, second = await h.stored()
    assert first["context"] == {
        "library": {"name": "analytics-python", "version": "2"},
        "locale": "en",
        "ip": "1.2.3.4",
    }
    assert first["integrations"] == {"All": True, "Mixpanel": True}
    assert second["context"] == {"library": {"name": "analytics-python", "version": "1"}, "locale": "en"}
    assert second["integrations"] == {"All": True, "Mixpanel": False}


async def test_one_append_per_request(h: Harness) -> None:
    before = h.log.commits
    body = {"batch": [{"type": "track", "userId": str(i), "event": "E"} for i in range(50)]}
    assert (await h.post("/v1/batch", body)).status_code == 200
    assert h.log.commits == before + 1
    assert len(await h.stored()) == 50


# --- auth ----------------------------------------------------------------------------------------


async def test_basic_auth_with_and_without_colon_and_body_write_key(h: Harness) -> None:
    track = VALID["track"]
    assert (await h.post("/v1/track", track, key=None, headers=basic(KEY))).status_code == 200
    assert (await h.post("/v1/track", track, key=None, headers=basic(KEY, colon=False))).status_code == 200
    r = await h.post("/v1/track", {**track, "writeKey": KEY}, key=None)
    assert r.status_code == 200
    r = await h.post("/v1/batch", {"writeKey": KEY, "batch": [{**track, "type": "track", "writeKey": KEY}]}, key=None)
    assert r.status_code == 200
    events = await h.stored()
    assert len(events) == 4
    assert all("writeKey" not in e for e in events)  # a credential is never stored


async def test_header_key_wins_over_body_key(h: Harness) -> None:
    r = await h.post("/v1/track", {**VALID["track"], "writeKey": KEY}, key="wk_2")
    assert r.status_code == 200
    assert await h.stored() == [] and len(await h.stored("src_2")) == 1


@pytest.mark.parametrize(
    ("key", "headers", "body_key", "needle"),
    [
        ("nope", {}, None, "invalid write key"),
        (DISABLED_KEY, {}, None, "disabled"),
        (None, {}, None, "no write key"),
        (None, {}, "nope", "invalid write key"),
        (None, {}, DISABLED_KEY, "disabled"),
        (None, {"Authorization": "Basic !!!not-base64"}, None, "malformed"),
        (None, basic(""), None, "no write key"),
    ],
)
async def test_unauthorized(
    h: Harness, key: str | None, headers: dict[str, str], body_key: str | None, needle: str
) -> None:
    body = dict(VALID["track"])
    if body_key is not None:
        body["writeKey"] = body_key
    r = await h.post("/v1/track", body, key=key, headers=headers)
    assert r.status_code == 401
    assert r.json()["success"] is False and needle in r.json()["error"]
    assert await h.stored() == [] and await h.stored("src_off") == []
    assert h.stats.snapshot().refused == {401: 1}


async def test_write_keys_are_cached_for_the_ttl(make_harness: MakeHarness) -> None:
    h = make_harness(write_key_ttl_s=5.0)
    for _ in range(3):
        assert (await h.post("/v1/track", VALID["track"])).status_code == 200
        assert (await h.post("/v1/track", VALID["track"], key="nope")).status_code == 401
    assert h.lookups == [KEY, "nope"]
    h.clock.now += 5.0
    assert (await h.post("/v1/track", VALID["track"])).status_code == 200
    assert h.lookups == [KEY, "nope", KEY]


# --- enrichment ------------------------------------------------------------------------------------


async def test_message_id_assigned_when_absent_and_kept_when_sent(make_harness: MakeHarness) -> None:
    ids = iter(["gen-1", "gen-2"])
    h = make_harness(new_message_id=lambda: next(ids))
    await h.log.subscribe(f"probe-{SOURCE}", [SOURCE])
    body = {
        "batch": [
            {"type": "track", "userId": "u", "event": "A"},
            {"type": "track", "userId": "u", "event": "B", "messageId": "mine"},
            {"type": "track", "userId": "u", "event": "C", "messageId": None},
        ]
    }
    assert (await h.post("/v1/batch", body)).status_code == 200
    assert [e["messageId"] for e in await h.stored()] == ["gen-1", "mine", "gen-2"]


async def test_received_at_and_timestamp(h: Harness) -> None:
    h.clock.now = 1_700_000_000.25  # 2023-11-14T22:13:20.250Z
    body = {
        "sentAt": "2023-11-14T22:13:30.000Z",  # batch-level, as analytics-python sends it
        "batch": [
            {"type": "track", "userId": "u", "event": "skew", "originalTimestamp": "2023-11-14T22:13:25.000Z"},
            {"type": "track", "userId": "u", "event": "kept", "timestamp": "2020-01-01T00:00:00Z"},
            {"type": "track", "userId": "u", "event": "none", "receivedAt": "1999-01-01T00:00:00Z"},
            {
                "type": "track",
                "userId": "u",
                "event": "own-sentAt",
                "originalTimestamp": "2023-11-14T22:13:25.000Z",
                "sentAt": "2023-11-14T22:13:26.000Z",
            },
        ],
    }
    assert (await h.post("/v1/batch", body)).status_code == 200
    skew, kept, none, own = await h.stored()
    for event in (skew, kept, none, own):
        assert event["receivedAt"] == "2023-11-14T22:13:20.250Z"
    assert skew["timestamp"] == "2023-11-14T22:13:15.250Z"  # receivedAt - (sentAt - originalTimestamp)
    assert skew["sentAt"] == "2023-11-14T22:13:30.000Z"
    assert kept["timestamp"] == "2020-01-01T00:00:00Z"
    assert none["timestamp"] == "2023-11-14T22:13:20.250Z"
    assert own["timestamp"] == "2023-11-14T22:13:19.250Z"


# --- validation -------------------------------------------------------------------------------------


async def test_invalid_events_are_counted_with_their_reason_and_not_appended(h: Harness) -> None:
    body = {
        "batch": [
            {"type": "track", "userId": "u", "event": "ok"},
            {"type": "track", "event": "anonymous"},
            {"type": "track", "userId": "u"},
            {"type": "group", "userId": "u"},
            {"userId": "u", "event": "no type"},
            "not an object",
            {"type": "track", "event": "again"},
        ]
    }
    r = await h.post("/v1/batch", body)
    assert r.status_code == 200 and r.json() == OK
    assert [e["event"] for e in await h.stored()] == ["ok"]
    snap = h.stats.snapshot()
    assert snap.accepted == {SOURCE: 1}
    assert snap.failed == {
        SOURCE: {
            "no_user_anon_id": 2,
            "event_not_defined": 1,
            "group_id_not_defined": 1,
            "type_not_string": 1,
            "not_an_object": 1,
        }
    }


async def test_all_invalid_still_200_and_nothing_appended(h: Harness) -> None:
    before = h.log.commits
    r = await h.post("/v1/track", {"event": "x"})
    assert r.status_code == 200 and r.json() == OK
    assert h.log.commits == before
    assert h.stats.snapshot().failed == {SOURCE: {"no_user_anon_id": 1}}
    assert h.stats.snapshot().to_dict()["failed"] == {SOURCE: {"no_user_anon_id": 1}}


# --- dedupe ------------------------------------------------------------------------------------------


async def test_duplicate_message_ids_dropped_within_24h_per_source(h: Harness) -> None:
    def ev(mid: str) -> dict[str, Any]:
        return {"type": "track", "userId": "u", "event": "E", "messageId": mid}

    assert (await h.post("/v1/batch", {"batch": [ev("m1"), ev("m2"), ev("m2")]})).status_code == 200
    assert [e["messageId"] for e in await h.stored()] == ["m1", "m2"]
    h.clock.now += 23 * 3600
    assert (await h.post("/v1/batch", {"batch": [ev("m1"), ev("m3")]})).status_code == 200
    assert [e["messageId"] for e in await h.stored()] == ["m3"]
    assert (await h.post("/v1/batch", {"batch": [ev("m1")]}, key="wk_2")).status_code == 200  # other source
    assert len(await h.stored("src_2")) == 1
    h.clock.now += 1 * 3600 + 1  # m1 was first seen more than 24 h ago
    assert (await h.post("/v1/track", ev("m1"))).status_code == 200
    assert [e["messageId"] for e in await h.stored()] == ["m1"]
    assert h.stats.snapshot().duplicates == {SOURCE: 2}


# --- backlog and failures ------------------------------------------------------------------------


async def test_429_with_retry_after_when_backlog_over_limit(make_harness: MakeHarness) -> None:
    h = make_harness(max_backlog=3, backlog_ttl_s=0.1, retry_after_s=2)
    await h.log.subscribe("slow-dest", [SOURCE])
    body = {"batch": [{"type": "track", "userId": "u", "event": "E"}] * 4}
    assert (await h.post("/v1/batch", body)).status_code == 200  # backlog read as 0 before this append
    assert (await h.post("/v1/batch", body)).status_code == 200  # cached value (0) still fresh
    h.clock.now += 0.2
    commits = h.log.commits
    r = await h.post("/v1/track", VALID["track"])
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"
    assert r.json()["success"] is False and "retry" in r.json()["error"]
    assert (await h.post("/v1/track", {**VALID["track"], "writeKey": KEY}, key=None)).status_code == 429
    assert h.log.commits == commits
    leased = await h.log.lease("slow-dest", 100, 60.0)
    await h.log.ack("slow-dest", [e.entry_id for e in leased])
    assert (await h.post("/v1/track", VALID["track"])).status_code == 429  # still cached
    h.clock.now += 0.2
    assert (await h.post("/v1/track", VALID["track"])).status_code == 200
    assert h.stats.snapshot().refused == {429: 3}


class FailingLog(MemoryEventLog):
    async def append(self, source_id: str, events: Any) -> int:
        raise OSError("disk full")


async def test_append_failure_is_503_and_nothing_acknowledged(make_harness: MakeHarness) -> None:
    dedupe = MemoryDeduplicator()
    h = make_harness(log=FailingLog(), dedupe=dedupe)
    r = await h.post("/v1/track", {**VALID["track"], "messageId": "m1"})
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.json() == {"success": False, "error": r.json()["error"]}
    assert "OSError" in r.json()["error"] and "retry" in r.json()["error"]
    assert len(dedupe) == 0  # the client's retry will not be taken for a duplicate
    assert h.stats.snapshot().accepted == {}
    assert h.stats.snapshot().refused == {503: 1}


async def test_app_is_built_from_injected_dependencies_only() -> None:
    stats = IngestStats()
    app = create_ingest_app(
        resolve_write_key=lambda key: None, log=MemoryEventLog(), dedupe=MemoryDeduplicator(), stats=stats
    )
    assert app.state.ingest_stats is stats
    other = create_ingest_app(resolve_write_key=lambda key: None, log=MemoryEventLog(), dedupe=MemoryDeduplicator())
    assert other.state.ingest_stats is not stats


async def test_get_is_not_allowed(h: Harness) -> None:
    assert (await h.client.get("/v1/track")).status_code == 405
    assert orjson.loads((await h.post("/v1/track", VALID["track"])).content) == OK


async def test_write_key_lookup_failure_is_503() -> None:
    def broken(key: str) -> tuple[str, bool] | None:
        raise RuntimeError("catalog down")

    app = create_ingest_app(resolve_write_key=broken, log=MemoryEventLog(), dedupe=MemoryDeduplicator())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.post("/v1/track", json=VALID["track"], auth=(KEY, ""))
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "RuntimeError" in r.json()["error"]


class BrokenDedupe(MemoryDeduplicator):
    def __init__(self, *, fail_check: bool) -> None:
        super().__init__()
        self.fail_check = fail_check

    async def duplicates(self, source_id: str, message_ids: Any, now: float) -> set[str]:
        if self.fail_check:
            raise OSError("dedupe store unavailable")
        return await super().duplicates(source_id, message_ids, now)

    async def remember(self, source_id: str, message_ids: Any, now: float) -> None:
        raise OSError("dedupe store unavailable")


async def test_a_failing_duplicate_check_is_503_and_stores_nothing(make_harness: MakeHarness) -> None:
    h = make_harness(dedupe=BrokenDedupe(fail_check=True))
    await h.log.subscribe(f"probe-{SOURCE}", [SOURCE])
    r = await h.post("/v1/track", {**VALID["track"], "messageId": "m1"})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "duplicate check failed" in r.json()["error"]
    assert await h.stored() == []


async def test_a_failing_remember_still_accepts_the_stored_events(make_harness: MakeHarness) -> None:
    h = make_harness(dedupe=BrokenDedupe(fail_check=False))
    await h.log.subscribe(f"probe-{SOURCE}", [SOURCE])
    r = await h.post("/v1/track", {**VALID["track"], "messageId": "m1"})
    assert r.status_code == 200
    assert [e["messageId"] for e in await h.stored()] == ["m1"]
