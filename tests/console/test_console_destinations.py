"""Destinations, filters and Event Delivery in the console, over HTTP: the ASGI app of `sluice serve`
(``build_server``; its delivery process is not started) driven with httpx like a browser without
JavaScript (forms, cookies) plus the ``fetch`` calls of ``static/delivery.js``, checked through the
public API."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluice.catalog.service import Catalog
from sluice.catalog.topology import load_plans
from sluice.config import Config
from sluice.delivery.recorder import DeliveryRecorder, RecorderBatch, Sample
from sluice.queue.base import DeadLetter
from sluice.server import Server, build_server

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
SECRET = "sk_live_0123456789abcdef"
HEADER_SECRET = "Bearer hook-secret-0001"
CODE = "def on_track(event, settings):\n    return event\n"
SCHEMA = [
    {"name": "apiKey", "label": "API Key", "type": "STRING", "required": True, "sensitive": True},
    {"name": "region", "label": "Region", "type": "STRING"},
]


@dataclass
class Console:
    server: Server
    catalog: Catalog
    owner_token: str
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def app(self) -> Any:
        return self.server.app

    def client(self) -> httpx.AsyncClient:
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://sluice")
        self.clients.append(c)
        return c

    def api(self, token: str | None = None) -> httpx.AsyncClient:
        c = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://sluice/api",
            headers={"Authorization": f"Bearer {token or self.owner_token}"},
        )
        self.clients.append(c)
        return c

    async def signed_in(self, token: str | None = None) -> httpx.AsyncClient:
        c = self.client()
        page = await c.get("/login", params={"next": "/destinations"})
        match = CSRF_FIELD.search(page.text)
        assert match is not None
        answer = await c.post(
            "/login", data={"csrf": match.group(1), "next": "/destinations", "token": token or self.owner_token}
        )
        assert answer.status_code == 303, answer.text
        return c

    async def token(self, *roles: str) -> str:
        created = await self.api().post("/tokens", json={"name": "-".join(roles), "roles": list(roles)})
        assert created.status_code == 201, created.text
        return str(created.json()["data"]["token"]["token"])

    async def source(self, name: str = "Web") -> dict[str, Any]:
        created = await self.api().post("/sources", json={"name": name})
        assert created.status_code == 201, created.text
        return dict(created.json()["data"]["source"])

    async def destination(self, **overrides: Any) -> dict[str, Any]:
        body = {"name": "Hook", "type": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}, **overrides}
        created = await self.api().post("/destinations", json=body)
        assert created.status_code == 201, created.text
        return dict(created.json()["data"]["destination"])

    async def get(self, path: str) -> dict[str, Any]:
        answer = await self.api().get(path)
        assert answer.status_code == 200, answer.text
        return dict(answer.json()["data"])


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    data_dir = tmp_path / "data"
    config = Config(data_dir=data_dir, database_url=f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog = Catalog.open(config)
    token = catalog.admin.bootstrap_owner(data_dir, None)
    assert token is not None
    server = build_server(catalog, config)  # the lifespan (delivery process) is not started
    state = Console(server, catalog, token)
    try:
        yield state
    finally:
        for c in state.clients:
            await c.aclose()
        await server.event_log.close()
        await server.dedupe.close()
        catalog.close()


async def csrf_of(client: httpx.AsyncClient, path: str = "/destinations") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    match = CSRF_META.search(page.text)
    assert match is not None
    return match.group(1)


def text_of(page: httpx.Response) -> str:
    return html.unescape(page.text)


def by_test(page: httpx.Response, name: str) -> list[str]:
    """The text inside the elements with ``data-test="name"`` (their first text, tags stripped)."""
    pattern = re.compile(rf'<(\w+)[^>]*data-test="{re.escape(name)}"[^>]*>(.*?)</\1>', re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", m.group(2))).strip() for m in pattern.finditer(page.text)]


# --- list, create, the destination page ------------------------------------------------------------


async def test_list_create_and_destination_page_for_an_owner(console: Console) -> None:
    web = await console.source("Web")
    await console.source("Mobile")
    browser = await console.signed_in()
    csrf = await csrf_of(browser)

    empty = await browser.get("/destinations")
    assert empty.status_code == 200
    assert 'id="new-destination-form"' in empty.text and 'data-editor="json"' in empty.text
    assert by_test(empty, "destinations-empty") == ["No destinations yet."]
    for label in ("new-destination-name", "new-destination-type", "new-destination-config"):
        assert f'<label for="{label}">' in empty.text

    # a config that is not JSON: refused by the console, the form kept
    bad = await browser.post("/destinations", data={"csrf": csrf, "name": "CRM", "type": "webhook", "config": "{nope"})
    assert bad.status_code == 422
    assert "The config is not valid JSON" in text_of(bad) and 'value="CRM"' in bad.text
    # a config the API refuses: its field and message
    refused = await browser.post(
        "/destinations", data={"csrf": csrf, "name": "CRM", "type": "webhook", "config": '{"url": "ftp://x"}'}
    )
    assert refused.status_code == 422
    assert by_test(refused, "problem-field") == ["config.url"]

    config = {"url": "https://crm.example.com/hook", "headers": {"Authorization": HEADER_SECRET}}
    created = await browser.post(
        "/destinations",
        data={"csrf": csrf, "name": "CRM", "type": "webhook", "config": json.dumps(config), "sourceIds": web["id"]},
    )
    assert created.status_code == 303, created.text
    dest_id = created.headers["location"].rsplit("/", 1)[1]
    via_api = (await console.get(f"/destinations/{dest_id}"))["destination"]
    assert via_api["name"] == "CRM" and via_api["sourceIds"] == [web["id"]] and via_api["enabled"] is True

    listing = await browser.get("/destinations")
    assert by_test(listing, "destination-link") == ["CRM"]
    assert by_test(listing, "destination-sources") == ["Web"]
    assert by_test(listing, "destination-enabled") == ["Enabled"]
    assert by_test(listing, "destination-instance") == ["none"]

    page = await browser.get(f"/destinations/{dest_id}")
    assert page.status_code == 200
    assert by_test(page, "destination-title") == ["CRM"]
    assert by_test(page, "destination-source") == ["Web"]
    assert HEADER_SECRET not in page.text and "••••0001" in text_of(page)  # masked as the API shows it
    assert 'id="destination-toggle"' in page.text and "data-confirm=" in page.text
    assert 'id="connect-form"' in page.text and 'href="/destinations/' + dest_id + '/delivery"' in page.text

    # save the config with the masked secret sent back: the API keeps the stored secret
    shown = (await console.get(f"/destinations/{dest_id}"))["destination"]["config"]
    shown["timeoutMs"] = 5000
    saved = await browser.post(
        f"/destinations/{dest_id}",
        data={"csrf": csrf, "name": "CRM 2", "config": json.dumps(shown), "sourceIds": [web["id"]]},
    )
    assert saved.status_code == 303, saved.text
    after = (await console.get(f"/destinations/{dest_id}"))["destination"]
    assert after["name"] == "CRM 2" and after["config"]["timeoutMs"] == 5000
    assert after["config"]["headers"]["Authorization"] == shown["headers"]["Authorization"]
    [plan] = [p for p in load_plans(console.catalog.core) if p.id == dest_id]
    assert plan.config["headers"]["Authorization"] == HEADER_SECRET  # the stored secret, decrypted

    # disable, with the toggle (the confirmation is the browser's; the form carries it)
    toggled = await browser.post(f"/destinations/{dest_id}/enabled", data={"csrf": csrf, "enabled": "false"})
    assert toggled.status_code == 303
    assert (await console.get(f"/destinations/{dest_id}"))["destination"]["enabled"] is False
    again = await browser.get(f"/destinations/{dest_id}")
    assert "is disabled" in text_of(again) and by_test(again, "destination-toggle")[0] == "Enable destination"


async def test_read_only_token_sees_no_forms(console: Console) -> None:
    dest = await console.destination()
    reader = await console.signed_in(await console.token("FUNCTIONS_READ_ONLY"))
    listing = await reader.get("/destinations")
    assert listing.status_code == 200
    assert 'id="new-destination-form"' not in listing.text and by_test(listing, "destination-link") == ["Hook"]
    page = await reader.get(f"/destinations/{dest['id']}")
    assert page.status_code == 200
    assert 'id="destination-toggle"' not in page.text and 'id="connect-form"' not in page.text
    assert 'id="filter-preview"' in page.text and 'id="filter-add"' not in page.text
    delivery = await reader.get(f"/destinations/{dest['id']}/delivery")
    assert delivery.status_code == 200 and 'id="replay-button"' not in delivery.text
    csrf = await csrf_of(reader)
    refused = await reader.post(
        f"/destinations/{dest['id']}/replay",
        headers={"X-CSRF-Token": csrf, "Accept": "application/json"},
    )
    assert refused.status_code == 403 and "Source Admin" in refused.json()["errors"][0]["message"]
    missing = await reader.get("/destinations/dst_nope")
    assert missing.status_code == 404


# --- the insert function instance ---------------------------------------------------------------


async def test_connect_a_function_and_enable_it(console: Console) -> None:
    dest = await console.destination()
    created = await console.api().post("/functions", json={"displayName": "Enrich", "code": CODE, "settings": SCHEMA})
    assert created.status_code == 201, created.text
    function = created.json()["data"]["function"]
    browser = await console.signed_in()
    csrf = await csrf_of(browser)
    page = await browser.get(f"/destinations/{dest['id']}")
    assert f'<option value="{function["id"]}"' in page.text

    # a missing required setting: the API's 422 names it, the form is kept
    refused = await browser.post(
        f"/destinations/{dest['id']}/instance",
        data={"csrf": csrf, "functionId": function["id"], "settings": '{"region": "eu"}'},
    )
    assert refused.status_code == 422
    assert by_test(refused, "problem-field") == ["settings.apiKey"]
    assert 'id="connect-form"' in refused.text

    connected = await browser.post(
        f"/destinations/{dest['id']}/instance",
        data={"csrf": csrf, "functionId": function["id"], "settings": json.dumps({"apiKey": SECRET, "region": "eu"})},
    )
    assert connected.status_code == 303, connected.text
    [instance] = (await console.get(f"/insert-function-instances?integrationId={dest['id']}"))["instances"]
    assert instance["functionId"] == function["id"] and instance["enabled"] is False

    page = await browser.get(f"/destinations/{dest['id']}")
    assert SECRET not in page.text and "••••cdef" in text_of(page)
    assert f'href="/functions/{function["id"]}"' in page.text
    assert by_test(page, "instance-function-link") == ["Enrich"]
    assert by_test(page, "instance-state") == ["Disabled"]
    assert by_test(page, "instance-toggle") == ["Enable insert function"]
    assert 'id="instance-toggle-form"' in page.text and "data-confirm=" in page.text

    enabled = await browser.post(f"/destinations/{dest['id']}/instance/enabled", data={"csrf": csrf, "enabled": "true"})
    assert enabled.status_code == 303
    instance = (await console.get(f"/insert-function-instances/{instance['id']}"))["instance"]
    assert instance["enabled"] is True

    # settings edited with the masked secret kept
    settings = dict(instance["settings"])
    settings["region"] = "us"
    saved = await browser.post(
        f"/destinations/{dest['id']}/instance/settings", data={"csrf": csrf, "settings": json.dumps(settings)}
    )
    assert saved.status_code == 303, saved.text
    instance = (await console.get(f"/insert-function-instances/{instance['id']}"))["instance"]
    assert instance["settings"] == {"apiKey": settings["apiKey"], "region": "us"}
    assert console.catalog.instances.runtime_settings(instance["id"])["apiKey"] == SECRET

    listing = await browser.get("/destinations")
    assert "Enrich" in by_test(listing, "destination-instance")[0]
    assert by_test(listing, "destination-instance-enabled") == ["Enabled"]

    gone = await browser.post(f"/destinations/{dest['id']}/instance/delete", data={"csrf": csrf})
    assert gone.status_code == 303
    assert (await console.get(f"/insert-function-instances?integrationId={dest['id']}"))["instances"] == []


async def test_toggles_and_changes_require_csrf(console: Console) -> None:
    dest = await console.destination()
    browser = await console.signed_in()
    csrf = await csrf_of(browser)
    for path, data in [
        (f"/destinations/{dest['id']}/enabled", {"enabled": "false"}),
        (f"/destinations/{dest['id']}/instance/enabled", {"enabled": "true"}),
        (f"/destinations/{dest['id']}/delete", {}),
        (f"/destinations/{dest['id']}/filters", {"if": "all", "actions": '[{"type": "DROP"}]'}),
        (f"/destinations/{dest['id']}/replay", {}),
        ("/destinations", {"name": "x", "type": "webhook", "config": "{}"}),
    ]:
        missing = await browser.post(path, data=data)
        assert missing.status_code == 403, (path, missing.text)
        wrong = await browser.post(path, data={**data, "csrf": csrf + "x"})
        assert wrong.status_code == 403, path
    # fetch() calls: the header is required too
    refused = await browser.post(f"/destinations/{dest['id']}/replay", headers={"Accept": "application/json"})
    assert refused.status_code == 403 and refused.json()["errors"][0]["type"] == "forbidden"
    # nothing changed
    assert (await console.get(f"/destinations/{dest['id']}"))["destination"]["enabled"] is True
    assert (await console.get(f"/destination/{dest['id']}/filters"))["filters"] == []
    # without a session: to the login page, or a 401 for the JSON endpoints
    anonymous = console.client()
    assert (await anonymous.get("/destinations")).status_code == 303
    assert (await anonymous.get(f"/destinations/{dest['id']}/delivery.json")).status_code == 401


# --- filters --------------------------------------------------------------------------------------


async def test_filters_add_preview_bad_fql_and_delete(console: Console) -> None:
    dest = await console.destination()
    browser = await console.signed_in()
    csrf = await csrf_of(browser)
    path = f"/destinations/{dest['id']}/filters"

    bad = await browser.post(
        path, data={"csrf": csrf, "action": "create", "if": "type = = 'track'", "actions": '[{"type": "DROP"}]'}
    )
    assert bad.status_code == 422
    message = " ".join(by_test(bad, "problem-message"))
    assert "invalid FQL at position 7" in message, message
    assert 'data-position="7"' in bad.text
    [caret] = by_test(bad, "filter-error-position")
    assert caret.splitlines()[0] == "type = = 'track'" and caret.splitlines()[1].startswith(" " * 7 + "^")
    assert "type = = &#39;track&#39;" in bad.text  # the form keeps what was typed
    assert (await console.get(f"/destination/{dest['id']}/filters"))["filters"] == []

    # preview: dropped with the reason, or kept with the event after the filter
    event = {"type": "track", "event": "Test", "userId": "u1", "properties": {"email": "a@b.c", "plan": "pro"}}
    dropped = await browser.post(
        path,
        data={
            "csrf": csrf,
            "action": "preview",
            "if": "event = 'Test'",
            "actions": '[{"type": "DROP"}]',
            "payload": json.dumps(event),
        },
    )
    assert dropped.status_code == 200, dropped.text
    assert by_test(dropped, "filter-preview-outcome") == ["Dropped"]
    kept = await browser.post(
        path,
        data={
            "csrf": csrf,
            "action": "preview",
            "if": "all",
            "actions": '[{"type": "DROP_PROPERTIES", "fields": {"properties": ["email"]}}]',
            "payload": json.dumps(event),
        },
    )
    assert by_test(kept, "filter-preview-outcome") == ["Kept"]
    [after] = by_test(kept, "filter-preview-event")
    assert json.loads(after)["properties"] == {"plan": "pro"}
    assert (await console.get(f"/destination/{dest['id']}/filters"))["filters"] == []  # previews store nothing

    added = await browser.post(
        path,
        data={
            "csrf": csrf,
            "action": "create",
            "title": "No tests",
            "if": "event = 'Test'",
            "actions": '[{"type": "DROP"}]',
            "enabled": "true",
        },
    )
    assert added.status_code == 303, added.text
    [stored] = (await console.get(f"/destination/{dest['id']}/filters"))["filters"]
    assert stored["title"] == "No tests" and stored["if"] == "event = 'Test'" and stored["enabled"] is True
    page = await browser.get(f"/destinations/{dest['id']}")
    assert by_test(page, "filter-title") == ["No tests"]
    assert by_test(page, "filter-if") == ["event = 'Test'"]
    assert by_test(page, "filter-actions") == ['[{"type": "DROP"}]']

    off = await browser.post(f"{path}/{stored['id']}/enabled", data={"csrf": csrf, "enabled": "false"})
    assert off.status_code == 303
    assert (await console.get(f"/destination/{dest['id']}/filters"))["filters"][0]["enabled"] is False
    deleted = await browser.post(f"{path}/{stored['id']}/delete", data={"csrf": csrf})
    assert deleted.status_code == 303
    assert (await console.get(f"/destination/{dest['id']}/filters"))["filters"] == []


# --- Event Delivery ------------------------------------------------------------------------------------


def _sample(dest: str, at: float) -> Sample:
    return Sample(
        destination_id=dest,
        at=at,
        outcome="rejected_by_destination",
        reason_code="HTTP 400",
        reason="the destination answered 400",
        source_id="src_1",
        message_id="m-1",
        event={"type": "track", "event": "Signed Up <b>", "userId": "u1"},
        error={"type": "ValidationError", "message": "bad plan"},
        logs=["enriching m-1"],
        requests=[],
        request={"method": "POST", "url": "http://x/hook", "headers": {"Authorization": "[REDACTED]"}},
        response={"status": 400, "body": "no such plan"},
        attempts=2,
    )


def _seed(console: Console, dest: str) -> None:
    now = time.time()
    minute = int(now // 60) * 60
    batch = RecorderBatch()
    batch.counts = {
        (dest, minute, "delivered", "HTTP 200"): 40,
        (dest, minute - 60, "rejected_by_destination", "HTTP 400"): 3,
        (dest, minute - 60, "expired", "HTTP 503"): 2,
        (dest, minute, "retrying", "HTTP 503"): 5,
        (dest, minute, "filtered", "destination_filter"): 4,
        (dest, minute - 3 * 3600, "delivered", "HTTP 200"): 1000,  # outside 1h, inside 24h
    }
    recorder = DeliveryRecorder(clock=lambda: now)
    recorder.latency(dest, [120.0] * 40)
    batch.latency = recorder.take().latency
    batch.samples = [_sample(dest, now - 30)]
    console.catalog.delivery.write(batch)


async def test_delivery_page_and_json_show_the_api_numbers(console: Console) -> None:
    dest = (await console.destination())["id"]
    _seed(console, dest)
    browser = await console.signed_in()

    page = await browser.get(f"/destinations/{dest}/delivery")
    assert page.status_code == 200, page.text
    api_view = (await console.get(f"/destinations/{dest}/delivery?window=1h"))["delivery"]
    assert (api_view["delivered"], api_view["notDelivered"], api_view["filtered"], api_view["retrying"]) == (
        40,
        5,
        4,
        5,
    )
    assert by_test(page, "delivery-delivered") == ["40"]
    assert by_test(page, "delivery-not-delivered") == ["5"]
    assert by_test(page, "delivery-filtered") == ["4"]
    assert by_test(page, "delivery-retrying") == ["5"]
    assert by_test(page, "delivery-p95")[0].endswith(" ms")
    for canvas in ("chart-delivered", "chart-not-delivered", "chart-latency"):
        assert f'<canvas id="{canvas}"' in page.text
    assert '<script src="/static/delivery.js" defer></script>' in page.text
    assert 'aria-current="true">1h' in page.text
    # the error table: every outcome but delivered, by reason code, with the counts
    rows = re.findall(
        r'data-test="error-row" data-key="[^"]*" data-outcome="([^"]+)" data-reason-code="([^"]+)"', page.text
    )
    assert sorted(rows) == [
        ("expired", "HTTP 503"),
        ("filtered", "destination_filter"),
        ("rejected_by_destination", "HTTP 400"),
        ("retrying", "HTTP 503"),
    ]
    assert sorted(by_test(page, "error-count")) == ["2", "3", "4", "5"]
    # the samples: you sent, the function's logs, request and response, error, attempts
    assert json.loads(by_test(page, "sample-event")[0])["event"] == "Signed Up <b>"
    assert "Signed Up <b>" not in page.text  # escaped
    assert by_test(page, "sample-logs") == ["enriching m-1"]
    assert json.loads(by_test(page, "sample-request")[0])["headers"] == {"Authorization": "[REDACTED]"}
    assert json.loads(by_test(page, "sample-response")[0])["status"] == 400
    assert by_test(page, "sample-error") == ["ValidationError: bad plan"]
    assert by_test(page, "sample-attempts") == ["2"]
    for heading in ("You sent", "Function logs", "Request to destination", "Response from destination"):
        assert f"<h4>{heading}</h4>" in page.text
    # the initial state for delivery.js: the same data, safe inside <script>
    state_text = re.search(r'<script type="application/json" id="delivery-state">(.*?)</script>', page.text, re.S)
    assert state_text is not None and "<b>" not in state_text.group(1)
    assert json.loads(state_text.group(1))["delivery"]["delivered"] == 40
    # no pipeline in this process: the queue is "not available", but the page still works
    assert 'id="queue-unavailable"' in page.text

    live = await browser.get(f"/destinations/{dest}/delivery.json", params={"window": "1h"})
    assert live.status_code == 200 and live.headers["cache-control"] == "no-store"
    body = live.json()
    for key in ("delivered", "notDelivered", "filtered", "retrying", "outcomes", "latency", "samples"):
        assert body["delivery"][key] == api_view[key], key
    assert [p["delivered"] for p in body["delivery"]["series"]] == [p["delivered"] for p in api_view["series"]]
    assert {(r["outcome"], r["reasonCode"], r["count"]) for r in body["rows"]} == {
        ("expired", "HTTP 503", 2),
        ("rejected_by_destination", "HTTP 400", 3),
        ("retrying", "HTTP 503", 5),
        ("filtered", "destination_filter", 4),
    }
    [rejected] = [r for r in body["rows"] if r["outcome"] == "rejected_by_destination"]
    assert rejected["class"] == "notDelivered" and rejected["classLabel"] == "Not delivered"
    assert [(s["outcome"], s["messageId"]) for s in body["delivery"]["samples"]] == [("rejected_by_destination", "m-1")]
    assert "queue" in body and "expired" in body

    # another window: the API's numbers for it
    day = (await browser.get(f"/destinations/{dest}/delivery.json", params={"window": "24h"})).json()
    assert day["window"] == "24h" and day["delivery"]["delivered"] == 1040
    assert len(day["delivery"]["series"]) == 96
    page_7d = await browser.get(f"/destinations/{dest}/delivery", params={"window": "7d"})
    assert by_test(page_7d, "delivery-delivered") == ["1040"] and 'aria-current="true">7d' in page_7d.text
    # an unknown window falls back to 1h; an unknown destination is the API's 404
    assert (await browser.get(f"/destinations/{dest}/delivery.json", params={"window": "1y"})).json()["window"] == "1h"
    missing = await browser.get("/destinations/dst_nope/delivery.json")
    assert missing.status_code == 404 and missing.json()["errors"][0]["type"] == "not_found"


async def _dead_letter(console: Console, dest: str, source: str) -> None:
    log = console.server.event_log
    await log.subscribe(dest, [source])
    await log.append(source, [json.dumps({"type": "track", "event": "Paid", "messageId": "m-9"}).encode()])
    (leased,) = await log.lease(dest, 10, 30.0)
    await log.dead_letter(dest, [DeadLetter(leased.entry_id, "expired", "HTTP 503 for 4 h", time.time())])


async def test_replay_calls_the_api_and_reports_progress(console: Console) -> None:
    source = await console.source()
    dest = (await console.destination(sourceIds=[source["id"]]))["id"]
    await _dead_letter(console, dest, source["id"])
    browser = await console.signed_in()

    page = await browser.get(f"/destinations/{dest}/delivery")
    assert by_test(page, "replay-expired") == ["1"]
    assert by_test(page, "queue-dead-letters") == ["1"] and by_test(page, "queue-backlog") == ["0"]
    assert 'id="replay-form"' in page.text and "data-confirm=" in page.text
    assert by_test(page, "replay-button") == ["Replay expired events"]
    csrf = CSRF_META.search(page.text)
    assert csrf is not None
    live = (await browser.get(f"/destinations/{dest}/delivery.json")).json()
    assert live["expired"] == 1 and live["queue"]["deadLetters"] == 1

    # delivery.js's call: CSRF header, JSON answer with the backlog before (for the progress)
    replayed = await browser.post(
        f"/destinations/{dest}/replay", headers={"X-CSRF-Token": csrf.group(1), "Accept": "application/json"}
    )
    assert replayed.status_code == 200, replayed.text
    assert replayed.json() == {"replay": {"replayed": 1, "backlogBefore": 0}}
    queue = (await browser.get(f"/destinations/{dest}/queue.json")).json()["queue"]
    assert queue["backlog"] == 1 and queue["deadLetters"] == 0
    audit = (await console.get(f"/audit-events?resourceId={dest}"))["auditEvents"]
    replays = [a for a in audit if a["action"] == "destination.replay"]
    assert [a["after"]["status"] for a in replays] == ["expired"]
    assert [a["after"]["replayed"] for a in replays] == [1]

    # the plain form (no JavaScript): a redirect and a message; nothing left to replay
    again = await browser.post(f"/destinations/{dest}/replay", data={"csrf": csrf.group(1)})
    assert again.status_code == 303 and again.headers["location"] == f"/destinations/{dest}/delivery"
    after = await browser.get(f"/destinations/{dest}/delivery")
    assert "There were no expired events to replay." in text_of(after)
    assert by_test(after, "replay-expired") == ["0"]
    assert re.search(r'id="replay-button"[^>]*disabled', after.text)
