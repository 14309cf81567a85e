"""Realistic Segment-style JavaScript insert functions (tests/functions/js/*.js) end to end.

Each runs in the real Node.js worker; outbound calls go to a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import shutil
import socket
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jwt
import pytest

from sluice.functions.pool import FunctionSource, WorkerPool
from sluice.functions.settings import parse_schema
from sluice.testing import arun_function
from tests.conftest import HttpServer, Recorded, skip_or_fail

JS_DIR = Path(__file__).resolve().parent / "js"


@pytest.fixture(autouse=True)
def _node() -> None:
    if shutil.which("node") is None:
        skip_or_fail("JavaScript functions need Node.js on PATH")


def source(name: str) -> str:
    return (JS_DIR / name).read_text(encoding="utf-8")


def pool_for(name: str, settings: dict[str, Any], schema: list[dict[str, Any]] | None = None) -> WorkerPool:
    specs = parse_schema(schema) if schema is not None else None
    return WorkerPool(FunctionSource(source(name), name, "javascript", specs), settings)


def track(mid: str = "m1", **fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Song Played", "userId": "u1", "messageId": mid, "properties": {}, **fields}


def identify(user_id: str | None = "u1", **traits: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "identify", "messageId": "i1", "traits": traits}
    if user_id is not None:
        event["userId"] = user_id
    return event


# --- enrichment via fetch (with cache.load) ---------------------------------------------------

ENRICH_SCHEMA = [
    {"name": "apiBase", "label": "API base URL", "type": "STRING", "required": True},
    {"name": "apiKey", "label": "API key", "type": "STRING", "required": True, "sensitive": True},
]
API_KEY = "sk_live_51HfakeKey"
PROFILE = {"plan": "gold", "company": {"name": "Initech"}, "ltv": 1234.5}


async def test_enrichment_adds_the_profile_and_looks_each_user_up_once(http_server: HttpServer) -> None:
    http_server.route("/v1/users/u1", 200, PROFILE)
    http_server.route("/v1/users/u%202", 200, {"plan": "free", "company": None, "ltv": 0})
    settings = {"apiBase": http_server.url, "apiKey": API_KEY}
    async with pool_for("enrich_profile.js", settings, ENRICH_SCHEMA) as pool:
        (first,) = await pool.run_events([identify(email="a@example.com")])
        results = await pool.run_events([track("t1"), track("t2", userId="u 2"), track("t3")])
        (anonymous,) = await pool.run_events([{**track("t4"), "userId": None, "anonymousId": "a1"}])
    assert first["status"] == "ok", first["error"]
    assert first["event"]["traits"] == {
        "email": "a@example.com",
        "plan": "gold",
        "company": "Initech",
        "lifetimeValue": 1234.5,
    }
    assert [r["event"]["properties"]["plan"] for r in results] == ["gold", "free", "gold"]
    assert anonymous["status"] == "ok" and "plan" not in anonymous["event"]["properties"]
    # One request per user in the pool's lifetime: the cache served the rest.
    assert sorted(r.path for r in http_server.requests) == ["/v1/users/u%202", "/v1/users/u1"]
    for received in http_server.requests:
        assert received.headers["Authorization"] == f"Bearer {API_KEY}"
        assert received.headers["Accept"] == "application/json"
    # The secret never shows in what the runtime reports back.
    assert API_KEY not in json.dumps([first, *results])


async def test_enrichment_traces_requests_with_the_secret_redacted(http_server: HttpServer) -> None:
    http_server.route("/v1/users/u1", 200, PROFILE)
    settings = {"apiBase": http_server.url, "apiKey": API_KEY}
    run = await arun_function(
        source("enrich_profile.js"), identify(), settings=settings, schema=ENRICH_SCHEMA, language="javascript"
    )
    assert run.status == "ok", run.error
    (trace,) = run.requests
    assert trace["url"] == http_server.url + "/v1/users/u1" and trace["status"] == 200
    assert API_KEY not in json.dumps(run.to_dict())


@pytest.mark.parametrize(
    ("answer", "status", "error_type", "fragment"),
    [
        (404, "ok", None, None),  # unknown user: the event passes unenriched
        (503, "retry", "RetryError", "profile API answered 503"),
        (429, "retry", "RetryError", "profile API answered 429"),
        (401, "bad_request", "Error", "profile API answered 401"),
    ],
)
async def test_enrichment_maps_api_answers_to_outcomes(
    http_server: HttpServer, answer: int, status: str, error_type: str | None, fragment: str | None
) -> None:
    http_server.route("/v1/users/u1", answer, {"error": "nope"})
    settings = {"apiBase": http_server.url, "apiKey": API_KEY}
    run = await arun_function(
        source("enrich_profile.js"), identify(), settings=settings, schema=ENRICH_SCHEMA, language="javascript"
    )
    assert run.status == status
    if error_type is None:
        assert run.event == identify()
    else:
        assert run.error is not None and run.error["type"] == error_type
        assert fragment is not None and fragment in run.error["message"]


async def test_enrichment_retries_when_the_api_is_down_and_does_not_cache_the_failure(
    http_server: HttpServer,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    run = await arun_function(
        source("enrich_profile.js"),
        identify(),
        settings={"apiBase": closed, "apiKey": API_KEY},
        schema=ENRICH_SCHEMA,
        language="javascript",
    )
    assert run.status == "retry"
    assert run.error is not None and "profile API unreachable" in run.error["message"]

    answers = iter([(503, {}, {}), (200, PROFILE, {})])
    http_server.route_fn("/v1/users/u1", lambda _: next(answers))
    async with pool_for("enrich_profile.js", {"apiBase": http_server.url, "apiKey": API_KEY}) as pool:
        (failed,) = await pool.run_events([identify()])
        (retried,) = await pool.run_events([identify()])
    assert failed["status"] == "retry"
    assert retried["status"] == "ok" and retried["event"]["traits"]["plan"] == "gold"
    assert len(http_server.requests) == 2


async def test_enrichment_rejects_an_identify_without_user_id_and_checks_settings() -> None:
    run = await arun_function(
        source("enrich_profile.js"),
        identify(user_id=None),
        settings={"apiBase": "http://127.0.0.1:9", "apiKey": API_KEY},
        schema=ENRICH_SCHEMA,
        language="javascript",
    )
    assert (run.status, run.error) == (
        "message_rejected",
        {"type": "ValidationError", "message": "userId is required"},
    )
    missing = await arun_function(
        source("enrich_profile.js"), identify(), settings={}, schema=ENRICH_SCHEMA, language="javascript"
    )
    assert missing.status == "invalid_settings"


# --- PII hashing with crypto ------------------------------------------------------------------

SALT = "pepper-and-salt"


def hmac_hex(value: str) -> str:
    return hmac.new(SALT.encode(), value.encode(), hashlib.sha256).hexdigest()


async def test_pii_is_replaced_by_salted_digests() -> None:
    event = identify(
        email="  Jane.Doe@Example.COM ",
        phone="+1 (415) 555-0100",
        name="Jane",
    )
    event["context"] = {"ip": "203.0.113.77", "traits": {"email": "jane.doe@example.com"}}
    run = await arun_function(source("hash_pii.js"), event, settings={"salt": SALT}, language="javascript")
    assert run.status == "ok", run.error
    traits = run.event["traits"]
    assert traits == {
        "name": "Jane",
        "emailHash": hmac_hex("jane.doe@example.com"),
        "phoneHash": hmac_hex("+14155550100"),
    }
    # The same address in context hashes the same after normalizing.
    assert run.event["context"] == {"ip": "203.0.113.0", "traits": {"emailHash": traits["emailHash"]}}
    assert "Jane.Doe" not in json.dumps(run.to_dict())


async def test_pii_hashing_pseudonymizes_user_ids_on_tracks() -> None:
    event = track(userId="user-42", properties={"email": "x@y.z", "plan": "pro", "phone": ""})
    run = await arun_function(source("hash_pii.js"), event, settings={"salt": SALT}, language="javascript")
    assert run.status == "ok", run.error
    assert run.event["userId"] == hmac_hex("user-42")[:32]
    assert run.event["properties"] == {"emailHash": hmac_hex("x@y.z"), "plan": "pro", "phone": ""}


# --- lodash transforms (single events and onBatch) --------------------------------------------

ORDER = {
    "type": "track",
    "event": "Order Completed",
    "userId": "u1",
    "messageId": "o1",
    "properties": {
        "orderId": "ord_1",
        "couponCode": None,
        "shippingMethod": "Express",
        "internalNote": "do not send",
        "products": [
            {"sku": "B-2", "price": 9.99, "quantity": 3, "category": "books"},
            {"sku": "A-1", "price": 19.5, "category": "games"},
            {"sku": "B-2", "price": 9.99, "quantity": 1, "category": "books"},
        ],
    },
}


async def test_lodash_transform_reshapes_an_order() -> None:
    settings = {"allowedProperties": ["orderId", "couponCode", "shippingMethod"]}
    run = await arun_function(source("order_transform.js"), ORDER, settings=settings, language="javascript")
    assert run.status == "ok", run.error
    assert run.event["event"] == "order_completed"
    assert run.event["properties"] == {
        "order_id": "ord_1",
        "shipping_method": "Express",
        "revenue": round(9.99 * 3 + 19.5 + 9.99, 2),
        "item_count": 5,
        "skus": ["A-1", "B-2"],
        "by_category": {"books": 2, "games": 1},
    }


async def test_lodash_transform_on_batch_rejects_only_the_bad_order() -> None:
    empty = {**ORDER, "messageId": "o2", "properties": {"orderId": "ord_2", "products": []}}
    other = track("t1", properties={"someKey": 1})
    page = {"type": "page", "messageId": "p1", "userId": "u1", "properties": {}}
    run = await arun_function(
        source("order_transform.js"), batch=[ORDER, empty, other, page], settings={}, language="javascript"
    )
    assert run.status == "ok", run.error
    assert run.results is not None
    assert [r["status"] for r in run.results] == ["ok", "message_rejected", "ok", "ok"]
    assert run.results[0]["event"]["properties"]["order_id"] == "ord_1"
    assert "internal_note" in run.results[0]["event"]["properties"]  # no allow-list: every key kept
    assert run.results[1]["error"] == {
        "type": "InvalidEventPayload",
        "message": "Order Completed needs at least one product",
    }
    assert run.results[2]["event"] == other and run.results[3]["event"] == page


# --- moment-timezone --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timestamp", "zone"),
    [
        ("2026-03-08T10:30:00.000Z", "America/New_York"),  # the morning DST starts
        ("2026-03-07T10:30:00.000Z", "America/New_York"),  # the day before (EST)
        ("2026-10-25T00:30:00.000Z", "Europe/Berlin"),  # during the change back
        ("2026-06-15T12:00:00.000Z", "Asia/Kolkata"),  # half-hour offset
        ("2026-01-04T22:00:00.000Z", "Australia/Sydney"),  # southern summer, next day locally
    ],
)
async def test_local_time_matches_the_tz_database(timestamp: str, zone: str) -> None:
    event = track(timestamp=timestamp, context={"timezone": zone})
    run = await arun_function(source("local_time.js"), event, settings={}, language="javascript")
    assert run.status == "ok", run.error
    local = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(ZoneInfo(zone))
    props = run.event["properties"]
    assert props["localTime"] == local.isoformat(timespec="seconds")
    assert props["localHour"] == local.hour
    assert props["localWeekday"] == local.strftime("%A")
    assert props["businessHours"] == (local.isoweekday() <= 5 and 9 <= local.hour < 17)
    assert props["timezone"] == zone


async def test_local_time_uses_the_default_zone_and_rejects_bad_input() -> None:
    settings = {"defaultTimezone": "Europe/Paris"}
    run = await arun_function(
        source("local_time.js"), track(timestamp="2026-07-01T08:00:00Z"), settings=settings, language="javascript"
    )
    assert run.status == "ok", run.error
    assert run.event["properties"]["localTime"] == "2026-07-01T10:00:00+02:00"
    assert run.event["properties"]["businessHours"] is True

    bad_zone = track(timestamp="2026-07-01T08:00:00Z", context={"timezone": "Mars/Olympus_Mons"})
    run = await arun_function(source("local_time.js"), bad_zone, settings=settings, language="javascript")
    assert (run.status, run.error) == (
        "message_rejected",
        {"type": "ValidationError", "message": "unknown time zone Mars/Olympus_Mons"},
    )
    bad_time = track(timestamp="yesterday at noon")
    run = await arun_function(source("local_time.js"), bad_time, settings=settings, language="javascript")
    assert run.status == "message_rejected"
    assert run.error is not None and run.error["type"] == "InvalidEventPayload"


# --- JWT signing ------------------------------------------------------------------------------

SIGNING_KEY = "a-signing-key-of-at-least-32-bytes!!"


def consent_api(consenting: set[str]) -> Any:
    def answer(recorded: Recorded) -> tuple[int, Any, dict[str, str]]:
        scheme, _, token = recorded.headers.get("Authorization", "").partition(" ")
        try:
            claims = jwt.decode(token, SIGNING_KEY, algorithms=["HS256"], issuer="sluice-insert-fn")
        except jwt.InvalidTokenError as exc:
            return 401, {"error": str(exc)}, {}
        body = recorded.json()
        if scheme != "Bearer" or claims["sub"] != body["userId"] or claims["scope"] != "consent:read":
            return 401, {"error": "wrong claims"}, {}
        return 200, {"consent": body["userId"] in consenting, "checkedBy": claims["jti"]}, {}

    return answer


async def test_jwt_signed_request_is_verified_by_the_partner(http_server: HttpServer) -> None:
    http_server.route_fn("/consent", consent_api({"u1"}))
    settings = {"partnerUrl": http_server.url, "signingKey": SIGNING_KEY}
    async with pool_for("signed_forward.js", settings) as pool:
        consented, refused = await pool.run_events([track("m1"), track("m2", userId="u2")])
    assert consented["status"] == "ok", consented["error"]
    assert consented["event"]["context"] == {"consent": {"checkedBy": "m1"}}
    assert (refused["status"], refused["error"]) == (
        "dropped",
        {"type": "DropEvent", "message": "user u2 has not consented"},
    )
    token = http_server.requests[0].headers["Authorization"].split(" ", 1)[1]
    claims = jwt.decode(token, SIGNING_KEY, algorithms=["HS256"], issuer="sluice-insert-fn")
    assert claims["exp"] - claims["iat"] == 300
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}


async def test_jwt_signed_with_the_wrong_key_is_refused(http_server: HttpServer) -> None:
    http_server.route_fn("/consent", consent_api({"u1"}))
    settings = {"partnerUrl": http_server.url, "signingKey": "not-the-partners-key-but-long-enough"}
    run = await arun_function(source("signed_forward.js"), track(), settings=settings, language="javascript")
    assert run.status == "bad_request"
    # A plain Error is bad_request, its message pointing at the line of signed_forward.js that threw.
    assert run.error == {"type": "Error", "message": "partner API refused our token (line 18)"}
