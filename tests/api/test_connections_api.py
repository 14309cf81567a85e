"""Sources, destinations and insert-function instances; secrets masked, encrypted, never logged."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import select

from sluice.catalog import tables
from tests.api.conftest import SECRET, Api


async def test_sources_have_write_keys_and_crud(api: Api) -> None:
    created = await api.client.post("/sources", json={"name": "Website"})
    assert created.status_code == 201
    source = created.json()["data"]["source"]
    assert source["enabled"] is True and len(source["writeKeys"]) == 1 and len(source["writeKeys"][0]) >= 24
    patched = await api.client.patch(f"/sources/{source['id']}", json={"enabled": False})
    assert patched.json()["data"]["source"]["enabled"] is False
    assert [s["id"] for s in (await api.client.get("/sources")).json()["data"]["sources"]] == [source["id"]]
    assert api.catalog.sources.resolve_write_key(source["writeKeys"][0]) == (source["id"], False)
    assert api.catalog.sources.resolve_write_key("nope") is None
    rotated = (await api.client.post(f"/sources/{source['id']}/write-keys")).json()["data"]["source"]
    assert len(rotated["writeKeys"]) == 2 and rotated["writeKeys"][0] == source["writeKeys"][0]
    old = source["writeKeys"][0]
    kept = await api.client.delete(f"/sources/{source['id']}/write-keys/{old}")
    assert kept.status_code == 200 and kept.json()["data"]["source"]["writeKeys"] == [rotated["writeKeys"][1]]
    last = await api.client.delete(f"/sources/{source['id']}/write-keys/{rotated['writeKeys'][1]}")
    assert last.status_code == 409
    bad = await api.client.post("/sources", json={"name": ""})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "name"
    assert (await api.client.delete(f"/sources/{source['id']}")).status_code == 204
    assert (await api.client.get(f"/sources/{source['id']}")).status_code == 404


async def test_destinations_connect_sources_and_mask_secret_config(api: Api) -> None:
    source = (await api.client.post("/sources", json={"name": "Web"})).json()["data"]["source"]
    config = {"url": "http://127.0.0.1:9/x", "headers": {"Authorization": f"Bearer {SECRET}"}}
    dest = await api.destination(config=config, sourceIds=[source["id"]])
    assert dest["sourceIds"] == [source["id"]]
    assert dest["config"]["url"] == "http://127.0.0.1:9/x" and dest["config"]["method"] == "POST"
    assert dest["config"]["headers"] == {"Authorization": "••••cdef"}  # webhook header values are secrets
    # sending the masked value back keeps the secret; the URL changes
    patched = await api.client.patch(
        f"/destinations/{dest['id']}",
        json={"config": {"url": "http://127.0.0.1:9/y", "headers": {"Authorization": "••••cdef"}}},
    )
    assert patched.status_code == 200, patched.text
    stored = api.catalog.core.open_config("webhook", _row(api, tables.destinations, dest["id"])["config"])
    assert stored["url"] == "http://127.0.0.1:9/y" and stored["headers"] == {"Authorization": f"Bearer {SECRET}"}
    forwarder = await api.destination(type="segment", config={"url": "http://127.0.0.1:9", "writeKey": SECRET})
    assert forwarder["config"]["writeKey"] == "••••cdef"
    unknown = await api.client.post(
        "/destinations", json={"name": "D", "config": {"url": "http://127.0.0.1:9/d"}, "sourceIds": ["src_nope"]}
    )
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "sourceIds[0]"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"config": {}}, "config.url"),
        ({"config": {"url": "ftp://x"}}, "config.url"),
        ({"config": {"url": "http://127.0.0.1:9", "batchSize": 0}}, "config.batchSize"),
        ({"config": {"url": "http://127.0.0.1:9", "urll": "typo"}}, "config.urll"),
        ({"type": "carrier-pigeon", "config": {"url": "http://127.0.0.1:9"}}, "type"),
        ({"type": "segment", "config": {"url": "http://127.0.0.1:9"}}, "config.writeKey"),
        ({"config": {"url": "http://127.0.0.1:9", "retryMaxAgeS": 0}}, "config.retryMaxAgeS"),
        ({"type": "function", "config": {"url": "http://127.0.0.1:9"}}, "config.url"),
    ],
)
async def test_destination_configs_are_validated_by_type(api: Api, body: dict[str, object], field: str) -> None:
    response = await api.client.post("/destinations", json={"name": "D", **body})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


async def test_a_function_destination_takes_a_destination_function_and_only_that(api: Api) -> None:
    insert_fn = await api.function()
    destination_fn = await api.function(displayName="CRM", resourceType="DESTINATION")
    function_dest = await api.destination(name="CRM", type="function", config={})
    assert function_dest["config"] == {"retryMaxAgeS": 14400}
    webhook = await api.destination()
    for fn, dest in ((insert_fn, function_dest), (destination_fn, webhook)):
        wrong = await api.client.post(
            "/insert-function-instances",
            json={"functionId": fn["id"], "integrationId": dest["id"], "settings": {"apiKey": "k"}},
        )
        assert wrong.status_code == 422, wrong.text
        error = wrong.json()["errors"][0]
        assert error["field"] == "functionId" and "resourceType" in error["message"]
    await api.instance(destination_fn["id"], function_dest["id"])


async def test_instances_one_per_destination_settings_validated_and_masked(api: Api) -> None:
    fn = await api.function()
    dest = await api.destination()
    inst = await api.instance(fn["id"], dest["id"], settings={"apiKey": SECRET, "region": "eu"})
    assert inst["settings"] == {"apiKey": "••••cdef", "region": "eu"}
    assert inst["classId"] == fn["id"] and inst["integrationId"] == dest["id"] and inst["enabled"] is False
    second = await api.client.post(
        "/insert-function-instances",
        json={"functionId": fn["id"], "integrationId": dest["id"], "settings": {"apiKey": "k"}},
    )
    assert second.status_code == 409
    other = await api.destination(name="Other")
    for settings, field in (
        ({}, "settings.apiKey"),
        ({"apiKey": 5}, "settings.apiKey"),
        ({"apiKey": "k", "nope": 1}, "settings.nope"),
    ):
        bad = await api.client.post(
            "/insert-function-instances",
            json={"functionId": fn["id"], "integrationId": other["id"], "settings": settings},
        )
        assert bad.status_code == 422, settings
        assert bad.json()["errors"][0]["field"] == field
    enabled = await api.client.patch(
        f"/insert-function-instances/{inst['id']}",
        json={"enabled": True, "settings": {"apiKey": "••••cdef", "region": "us"}},
    )
    assert enabled.status_code == 200
    assert enabled.json()["data"]["instance"]["enabled"] is True
    assert api.catalog.instances.runtime_settings(inst["id"]) == {"apiKey": SECRET, "region": "us"}
    listed = (await api.client.get("/insert-function-instances", params={"integrationId": dest["id"]})).json()
    assert [i["id"] for i in listed["data"]["instances"]] == [inst["id"]]
    assert (await api.client.delete(f"/insert-function-instances/{inst['id']}")).status_code == 204


async def test_secrets_never_leave_in_clear(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fn = await api.function()
    dest = await api.destination(config={"url": "http://127.0.0.1:9/x", "headers": {"X-Api-Key": SECRET}})
    inst = await api.instance(fn["id"], dest["id"])
    await api.client.patch(f"/insert-function-instances/{inst['id']}", json={"settings": {"apiKey": SECRET + "2"}})
    bodies = [
        (await api.client.get(path)).text
        for path in (
            f"/insert-function-instances/{inst['id']}",
            "/insert-function-instances",
            f"/destinations/{dest['id']}",
            "/destinations",
            "/audit-events",
        )
    ]
    for text in bodies:
        assert SECRET not in text
    assert SECRET not in caplog.text
    with api.catalog.engine.connect() as conn:
        raw_instance = json.dumps(dict(conn.execute(select(tables.instances)).mappings().one())["settings"])
        raw_destination = json.dumps(dict(conn.execute(select(tables.destinations)).mappings().one())["config"])
        audit = json.dumps(
            [
                dict(r)
                for r in conn.execute(select(tables.audit_events.c.before, tables.audit_events.c.after)).mappings()
            ]
        )
    assert SECRET not in raw_instance and raw_instance.count("enc:v1:") == 1
    assert SECRET not in raw_destination and "enc:v1:" in raw_destination
    assert SECRET not in audit


def _row(api: Api, table: object, row_id: str) -> dict[str, object]:
    with api.catalog.engine.connect() as conn:
        return dict(conn.execute(select(table).where(table.c.id == row_id)).mappings().one())  # type: ignore[attr-defined]


async def test_values_the_database_cannot_store_are_422_not_500(api: Api) -> None:
    nul = await api.client.post("/sources", json={"name": "bad\u0000name"})
    assert nul.status_code == 422, nul.text
    assert "NUL" in nul.json()["errors"][0]["message"]
    nested = await api.client.post("/destinations", json={"name": "d", "config": {"k": ["a\u0000"]}})
    assert nested.status_code == 422
    search = await api.client.get("/functions", params={"displayName": "x\u0000"})
    assert search.status_code in (200, 422)
