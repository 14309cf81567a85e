"""The official Segment and RudderStack Python SDKs talk to a real ``sluice serve``: every call
type reaches a real webhook, transformed by a Python insert function."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import rudderstack.analytics
import segment.analytics

from tests.conftest import HttpServer
from tests.e2e.conftest import Sluice, delivered_events, poll, real_events

pytestmark = pytest.mark.timeout(180)

MARKING_FUNCTION = """
def _mark(event, handler):
    context = event.get("context")
    if not isinstance(context, dict):
        context = {}
        event["context"] = context
    context["sluiceSeen"] = True
    context["sluiceHandler"] = handler
    return event


def on_track(event, settings):
    return _mark(event, "track")


def on_identify(event, settings):
    return _mark(event, "identify")


def on_page(event, settings):
    return _mark(event, "page")


def on_screen(event, settings):
    return _mark(event, "screen")


def on_group(event, settings):
    return _mark(event, "group")


def on_alias(event, settings):
    return _mark(event, "alias")
"""

TYPES = ("track", "identify", "page", "screen", "group", "alias")


def _segment_client(server: Sluice, on_error: Any) -> Any:
    return segment.analytics.Client(
        write_key=server.write_key, host=server.url, on_error=on_error, max_retries=2, upload_interval=0.1
    )


def _rudder_client(server: Sluice, on_error: Any) -> Any:
    # The RudderStack SDK's "dataPlaneUrl" is its `host`; it gzips batches by default.
    return rudderstack.analytics.Client(
        write_key=server.write_key, host=server.url, on_error=on_error, max_retries=2, upload_interval=0.1
    )


CLIENTS = {"segment-analytics-python": _segment_client, "rudder-sdk-python": _rudder_client}


@pytest.mark.parametrize("sluice", ["embedded", "postgresql+nats"], indirect=True)
@pytest.mark.parametrize("sdk", list(CLIENTS))
def test_sdk_sends_every_call_type_through_an_insert_function(
    sdk: str, sluice: Sluice, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # requests reads the proxy variables
    caplog.set_level(logging.WARNING)
    http_server.route("/hook", 200, {"ok": True})
    sluice.connect_webhook(http_server, MARKING_FUNCTION, path="/hook")

    errors: list[tuple[Any, Any]] = []
    client = CLIENTS[sdk](sluice, lambda error, batch: errors.append((error, batch)))
    user = f"user-{sdk}-{uuid.uuid4().hex[:8]}"
    try:
        client.track(user, "Order Completed", {"revenue": 42.5, "currency": "EUR"})
        client.identify(user, {"email": "ada@example.com", "plan": "pro"})
        client.page(user, "Docs", "Quick start", {"path": "/docs/quick-start"})
        client.screen(user, "Settings", "Notifications", {"variant": "b"})
        client.group(user, "group-42", {"name": "Analytical Engines", "employees": 12})
        client.alias(f"{user}-anon", user)
        client.flush()
    finally:
        client.join()
    assert errors == [], f"the SDK reported errors: {errors}"
    sdk_errors = [r.getMessage() for r in caplog.records if r.name in ("segment", "rudderstack")]
    assert sdk_errors == [], sdk_errors

    def mine() -> list[dict[str, Any]]:
        return [e for e in real_events(delivered_events(http_server, "/hook")) if e.get("userId") == user]

    events = poll(
        lambda: (found := mine()) and len({e["type"] for e in found}) == len(TYPES) and found,
        deadline_s=60,
        message=lambda: f"delivered so far: {mine()}\n{sluice.describe()}",
    )
    by_type = {e["type"]: e for e in events}
    assert sorted(by_type) == sorted(TYPES)
    assert len(events) == len(TYPES), f"duplicates delivered: {events}"
    for kind, event in by_type.items():
        assert event["userId"] == user, event
        assert event["context"]["sluiceSeen"] is True, event
        assert event["context"]["sluiceHandler"] == kind, event
        assert event["context"]["library"]["name"] == "analytics-python", event
        for field in ("messageId", "receivedAt", "timestamp"):
            assert isinstance(event.get(field), str) and event[field], (field, event)
        assert "writeKey" not in event

    assert by_type["track"]["event"] == "Order Completed"
    assert by_type["track"]["properties"] == {"revenue": 42.5, "currency": "EUR"}
    identify = by_type["identify"]
    # The RudderStack SDK sends identify traits in context.traits (RudderStack's format).
    traits = identify["traits"] if sdk == "segment-analytics-python" else identify["context"]["traits"]
    assert traits == {"email": "ada@example.com", "plan": "pro"}
    assert by_type["page"]["name"] == "Quick start"
    assert by_type["page"]["category"] == "Docs"
    assert by_type["page"]["properties"]["path"] == "/docs/quick-start"
    assert by_type["screen"]["name"] == "Notifications"
    assert by_type["screen"]["properties"]["variant"] == "b"
    assert by_type["group"]["groupId"] == "group-42"
    assert by_type["group"]["traits"] == {"name": "Analytical Engines", "employees": 12}
    assert by_type["alias"]["previousId"] == f"{user}-anon"
    assert len({e["messageId"] for e in events}) == len(TYPES)


def test_serve_on_a_postgresql_catalog_delivers(tmp_path: Path, fresh_pg_url: str, http_server: HttpServer) -> None:
    """The same server with SLUICE_DATABASE_URL=postgresql://…: catalog, delivery counts and samples
    in PostgreSQL (the event log stays the embedded SQLite one)."""
    server = Sluice(tmp_path / "data", database_url=fresh_pg_url)
    try:
        server.start()
        server.connect_webhook(http_server, MARKING_FUNCTION, path="/hook")
        client = _segment_client(server, lambda error, items: pytest.fail(f"SDK error: {error}"))
        client.track("pg-user", "Postgres Works", {"n": 1})
        client.flush()
        client.join()
        poll(
            lambda: any(e.get("event") == "Postgres Works" for e in delivered_events(http_server, "/hook")),
            deadline_s=30,
            message="the event did not arrive",
        )
        with psycopg.connect(fresh_pg_url.replace("postgresql+psycopg:", "postgresql:")) as conn:
            assert conn.execute("SELECT count(*) FROM destinations").fetchone() == (1,)
    finally:
        server.close()
