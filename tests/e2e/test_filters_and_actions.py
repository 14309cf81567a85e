"""Destination filters and an actions destination through a running ``sluice serve``, set up
only through the public API, to a real HTTP server on 127.0.0.1: filters and triggers act on
the incoming event before the insert function; mappings act on the event it returned."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.conftest import HttpServer
from tests.e2e.conftest import Sluice, poll

pytestmark = pytest.mark.timeout(180)

FUNCTION = """
from sluice.fn import fetch

async def on_track(event, settings):
    await fetch(settings['seen'], method='POST', json={'id': event['messageId']})
    event['properties']['enriched'] = True
    event['event'] = 'Renamed'
    return event
"""


@pytest.mark.parametrize("sluice", ["embedded", "postgresql+nats"], indirect=True)
def test_filters_triggers_function_and_mappings_in_order(sluice: Sluice, http_server: HttpServer) -> None:
    for path in ("/seen", "/orders", "/hook"):
        http_server.route(path, 200, {})
    api = sluice.api
    fn = api.post(
        "/functions",
        json={
            "displayName": "Recorder",
            "code": FUNCTION,
            "settings": [{"name": "seen", "label": "Seen", "type": "STRING", "required": True}],
        },
    ).json()["data"]["function"]
    actions = {
        "name": "CRM",
        "type": "actions-webhook",
        "sourceIds": [sluice.source_id],
        "config": {
            "subscriptions": [
                {
                    "name": "orders",
                    "trigger": "event = 'Order Completed'",
                    "mapping": {"order": {"@path": "$.properties.order_id"}, "event": {"@path": "$.event"}},
                    "request": {"url": f"{http_server.url}/orders"},
                }
            ]
        },
    }
    crm = api.post("/destinations", json=actions)
    assert crm.status_code == 201, crm.text
    crm_id = crm.json()["data"]["destination"]["id"]
    hook = sluice.create_webhook(f"{http_server.url}/hook", name="Hook")
    for destination_id in (crm_id, hook["id"]):
        body = {
            "functionId": fn["id"],
            "integrationId": destination_id,
            "enabled": True,
            "settings": {"seen": f"{http_server.url}/seen"},
        }
        assert api.post("/insert-function-instances", json=body).status_code == 201
    bad = api.post(f"/destination/{hook['id']}/filters", json={"if": "type = = 'track'", "actions": [{"type": "DROP"}]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "if"
    assert "position" in bad.json()["errors"][0]["message"]
    created = api.post(
        f"/destination/{hook['id']}/filters",
        json={
            "if": "properties.internal = true",
            "actions": [{"type": "DROP"}],
            "title": "No internal traffic",
        },
    )
    assert created.status_code == 201, created.text
    strip = {"if": "all", "actions": [{"type": "DROP_PROPERTIES", "fields": {"properties": ["email"]}}]}
    assert api.post(f"/destination/{hook['id']}/filters", json=strip).status_code == 201

    run = uuid.uuid4().hex[:8]
    events = [
        {"userId": "u", "event": "Order Completed", "properties": {"order_id": "o-1", "email": "a@b.c"}},
        {"userId": "u", "event": "Viewed", "properties": {"internal": True}},
    ]
    # the pipeline reads the catalog every ~2 s: send until the hook has seen the first event
    next_send = 0.0

    def delivered() -> bool:
        nonlocal next_send
        if any(b.get("properties", {}).get("order_id") == "o-1" for b in http_server.bodies("/hook")):
            return True
        if time.monotonic() >= next_send:
            batch = [
                {**e, "type": "track", "messageId": f"{run}-{n}-{time.monotonic_ns()}"} for n, e in enumerate(events)
            ]
            sluice.send("batch", {"batch": batch})
            next_send = time.monotonic() + 1.5
        return False

    poll(delivered, deadline_s=60, message="nothing delivered to the hook")
    hooked = [b for b in http_server.bodies("/hook") if b.get("properties", {}).get("order_id") == "o-1"]
    # the filter removed email before the function; the function's changes arrived
    assert all("email" not in b["properties"] and b["properties"]["enriched"] is True for b in hooked)
    # the internal event was dropped by the hook's filter: never delivered there
    assert not any(b.get("properties", {}).get("internal") for b in http_server.bodies("/hook"))
    # on CRM the trigger matched the incoming name; the mapping shows the returned (renamed) event
    poll(lambda: http_server.bodies("/orders"), deadline_s=30, message="nothing at /orders")
    assert {"order": "o-1", "event": "Renamed"} in http_server.bodies("/orders")

    def delivery(destination_id: str) -> dict[str, Any]:
        response = api.get(f"/destinations/{destination_id}/delivery", params={"window": "10m"})
        assert response.status_code == 200, response.text
        return dict(response.json()["data"]["delivery"])

    def outcome(destination_id: str, name: str, code: str) -> bool:
        return any(o["outcome"] == name and o["reasonCode"] == code for o in delivery(destination_id)["outcomes"])

    poll(lambda: outcome(hook["id"], "filtered", "destination_filter"), deadline_s=30, message="no filter count")
    poll(lambda: outcome(crm_id, "filtered", "trigger"), deadline_s=30, message="no trigger count")
    poll(lambda: outcome(crm_id, "delivered", "orders"), deadline_s=30, message="no delivered count")
    # the internal event was stopped before the function on both destinations (by the hook's
    # filter, by CRM's trigger): the function never saw it
    seen = {b["id"] for b in http_server.bodies("/seen")}
    assert seen and not any(i.startswith(f"{run}-1-") for i in seen)
