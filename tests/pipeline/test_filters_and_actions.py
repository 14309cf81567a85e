"""Destination filters and actions destinations in the pipeline: what runs before the insert
function (filters, triggers) and what after (mappings), end to end to a real HTTP server."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from sluice.catalog import tables
from sluice.catalog.access import SYSTEM
from tests.conftest import HttpServer
from tests.pipeline.conftest import Harness, counts, track, until
from tests.pipeline.test_delivery import received

# The function records what it saw, so tests can tell what reached it.
RECORDING = (
    "from sluice.fn import fetch\n"
    "async def on_track(event, settings):\n"
    "    await fetch(settings['seen'], method='POST', json=event)\n"
    "    event['properties']['enriched'] = True\n"
    "    event['event'] = 'Renamed By Function'\n"
    "    return event\n"
)
SCHEMA = [{"name": "seen", "label": "Seen", "type": "STRING", "required": True}]


def add_filter(harness: Harness, destination_id: str, **document: Any) -> None:
    harness.catalog.filters.create(SYSTEM, destination_id, document)


async def test_filters_run_before_the_function_in_segments_order(harness: Harness, http_server: HttpServer) -> None:
    http_server.route("/hook", 200, {})
    http_server.route("/seen", 200, {})
    dst = harness.destination(f"{http_server.url}/hook")
    harness.instance(harness.function(RECORDING, settings=SCHEMA), dst, seen=f"{http_server.url}/seen")
    add_filter(harness, dst, **{"if": "properties.test = true", "actions": [{"type": "DROP"}], "title": "No tests"})
    add_filter(
        harness,
        dst,
        **{
            "if": "all",
            "actions": [
                {"type": "DROP_PROPERTIES", "fields": {"properties": ["email"]}},
                {"type": "ALLOW_PROPERTIES", "fields": {"properties": ["plan", "email", "n"]}},
            ],
        },
    )
    await harness.apply()
    await harness.send(
        track(1, properties={"n": 1, "email": "a@b.c", "plan": "pro", "secret": "x"}),
        track(2, properties={"n": 2, "test": True}),
    )
    view = await until(lambda: harness.counted(dst, 2))
    assert counts(view) == {("delivered", ""): 1, ("filtered", "destination_filter"): 1}
    dropped = next(s for s in view["samples"] if s["outcome"] == "filtered")
    assert "No tests" in dropped["reason"] and dropped["event"]["messageId"] == "m-2"
    # the function saw the filtered event (email dropped, then only allowed keys), never the dropped one
    [seen] = http_server.bodies("/seen")
    assert seen["messageId"] == "m-1" and seen["properties"] == {"n": 1, "plan": "pro"}
    [delivered] = received(http_server)
    assert delivered["properties"] == {"n": 1, "plan": "pro", "enriched": True}


async def test_a_filter_reaches_delivery_without_a_restart(harness: Harness, http_server: HttpServer) -> None:
    http_server.route("/hook", 200, {})
    dst = harness.destination(f"{http_server.url}/hook")
    await harness.apply()
    add_filter(harness, dst, **{"if": "type = 'track'", "actions": [{"type": "DROP"}]})
    await until(lambda: harness.pipeline.runners[dst].plan.filters)  # polled from the catalog
    await harness.send(track(1), {"type": "identify", "userId": "u", "messageId": "i-1"})
    await until(lambda: received(http_server))
    assert [e["messageId"] for e in received(http_server)] == ["i-1"]


def actions_config(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "subscriptions": [
            {
                "name": "orders",
                "trigger": "type = 'track' and event = 'Order Completed'",
                "mapping": {
                    "order": {"@path": "$.properties.order_id"},
                    "revenue": {"@path": "$.properties.revenue"},
                    "tagged": {"@path": "$.properties.enriched"},
                    "user": {"id": {"@path": "$.userId"}},
                },
                "request": {"url": f"{url}/orders", "headers": {"Authorization": "Bearer sub-secret"}},
            },
            {
                "name": "all-tracks",
                "trigger": "type = 'track'",
                "mapping": {"name": {"@path": "$.event"}, "id": {"@path": "$.messageId"}},
                "request": {"url": f"{url}/tracks", "batch": True, "batchSize": 10},
            },
        ],
        **extra,
    }


async def test_triggers_see_the_incoming_event_and_mappings_the_returned_one(
    harness: Harness, http_server: HttpServer
) -> None:
    http_server.route("/orders", 200, {})
    http_server.route("/tracks", 200, {})
    http_server.route("/seen", 200, {})
    dst = harness.destination(type="actions-webhook", name="crm", **actions_config(http_server.url))
    harness.instance(harness.function(RECORDING, settings=SCHEMA), dst, seen=f"{http_server.url}/seen")
    await harness.apply()
    order = track(1, event="Order Completed", properties={"order_id": "o-1", "revenue": 9.5})
    other = track(2, event="Viewed")
    page = {"type": "page", "userId": "u", "name": "Home", "messageId": "p-1"}
    await harness.send(order, other, page)
    view = await until(lambda: harness.counted(dst, 4), what="two subscriptions + one more + one filtered")
    assert counts(view) == {
        ("delivered", "orders"): 1,
        ("delivered", "all-tracks"): 2,
        ("filtered", "trigger"): 1,
    }
    # the page matched no trigger: the function never saw it
    assert sorted(e["messageId"] for e in http_server.bodies("/seen")) == ["m-1", "m-2"]
    # mapped after the function: its additions are there; the rename did not stop the trigger
    assert http_server.bodies("/orders") == [{"order": "o-1", "revenue": 9.5, "tagged": True, "user": {"id": "u1"}}]
    [batch] = http_server.bodies("/tracks")
    assert sorted(batch, key=lambda b: b["id"]) == [
        {"name": "Renamed By Function", "id": "m-1"},
        {"name": "Renamed By Function", "id": "m-2"},
    ]
    orders_request = next(r for r in http_server.requests if r.path == "/orders")
    assert orders_request.headers["Authorization"] == "Bearer sub-secret"
    # the secret header is sealed in the catalog and masked in the API view
    shown = harness.catalog.destinations.get(SYSTEM, dst)["config"]["subscriptions"][0]["request"]["headers"]
    assert shown == {"Authorization": "••••cret"}
    with harness.catalog.core.tx() as conn:
        raw = conn.execute(select(tables.destinations.c.config).where(tables.destinations.c.id == dst)).scalar_one()
    assert "sub-secret" not in str(raw)


async def test_each_subscription_has_its_own_outcome_and_a_failure_retries_the_event(
    harness: Harness, http_server: HttpServer
) -> None:
    answers = iter([(503, {}, {})])
    http_server.route_fn("/orders", lambda _: next(answers, (200, {}, {})))
    http_server.route("/tracks", 400, {"error": "no"})
    dst = harness.destination(type="actions-webhook", name="crm", **actions_config(http_server.url))
    await harness.apply()
    await harness.send(track(1, event="Order Completed", properties={"order_id": "o-1"}))

    async def settled() -> dict[str, Any] | None:
        view = await harness.delivery(dst)
        return view if counts(view).get(("delivered", "orders")) else None

    view = await until(settled, what="the orders subscription delivered after its retry")
    got = counts(view)
    assert got[("retrying", "orders: HTTP 503")] == 1
    assert got[("rejected_by_destination", "all-tracks: HTTP 400")] >= 1
    # the event is kept for replay because one subscription was rejected
    [dead] = await harness.log.dead_letters(dst)
    assert dead.status == "rejected_by_destination" and "all-tracks" in dead.reason
