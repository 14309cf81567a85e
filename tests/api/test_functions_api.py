"""/api/functions: CRUD, versions, restore, deploy — Segment's Public API shapes."""

from __future__ import annotations

import shutil

import pytest

from tests.api.conftest import CODE, SECRET, Api
from tests.conftest import skip_or_fail

NEW_CODE = "def on_track(event, settings):\n    return None\n"


async def test_create_get_list_update_delete(api: Api) -> None:
    created = await api.function(description="adds via", logoUrl="https://example.com/logo.png")
    assert created["displayName"] == "Enrich" and created["version"] == 1
    assert created["language"] == "python" and created["resourceType"] == "INSERT_DESTINATION"
    assert created["settings"][0] == {
        "name": "apiKey", "label": "API Key", "description": "", "type": "STRING", "required": True, "sensitive": True,
    }  # fmt: skip
    assert created["createdBy"] == "admin" and created["batchMaxCount"] == 20
    got = (await api.client.get(f"/functions/{created['id']}")).json()["data"]["function"]
    assert got == created
    listed = (await api.client.get("/functions")).json()["data"]["functions"]
    assert [f["id"] for f in listed] == [created["id"]]
    by_name = await api.client.get("/functions", params={"displayName": "Enrich"})
    assert [f["id"] for f in by_name.json()["data"]["functions"]] == [created["id"]]
    assert (await api.client.get("/functions", params={"displayName": "Nope"})).json()["data"]["functions"] == []
    renamed = await api.client.patch(f"/functions/{created['id']}", json={"displayName": "Renamed"})
    assert renamed.status_code == 200
    assert renamed.json()["data"]["function"]["version"] == 1  # no code or settings change: no new version
    assert (await api.client.delete(f"/functions/{created['id']}")).status_code == 204
    missing = await api.client.get(f"/functions/{created['id']}")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["type"] == "not_found"


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"displayName": "x" * 121}, "displayName", "over the limit of 120"),
        ({"displayName": ""}, "displayName", "required"),
        ({"code": "def on_track(e, s)\n    return e\n"}, "code", "line 1"),
        ({"code": "import subprocess\ndef on_track(e, s):\n    return e\n"}, "code", "'subprocess'"),
        ({"code": "x = 1\n"}, "code", "no handler"),
        ({"batchMaxCount": 401}, "batchMaxCount", "1 to 400"),
        ({"settings": [{"label": "A", "type": "NUMBER"}]}, "settings[0].type", "STRING"),
        ({"language": "javascript"}, "code", "SyntaxError"),  # the Python code is not JavaScript
        ({"language": "javascript", "code": "function onTrack(e) {\n  return e\n"}, "code", "line 3"),
        ({"language": "javascript", "code": "const x = 1\n"}, "code", "no handler"),
        ({"language": "ruby"}, "language", "'python' or 'javascript'"),
        ({"unknownField": 1}, "unknownField", "unknown field"),
        ({"settings": [{"label": "A"}, {"label": "A"}]}, "settings", "defined twice"),
    ],
)
async def test_invalid_functions_are_422_naming_the_field(
    api: Api, body: dict[str, object], field: str, fragment: str
) -> None:
    response = await api.client.post("/functions", json={"displayName": "F", "code": CODE, **body})
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["field"] == field
    assert fragment in error["message"]
    assert (await api.client.get("/functions")).json()["data"]["functions"] == []


async def test_saving_creates_versions_and_changes_no_running_instance(api: Api) -> None:
    fn = await api.function()
    dest = await api.destination()
    inst = await api.instance(fn["id"], dest["id"])
    assert inst["version"] == 1 and inst["isLatestVersion"]
    saved = (await api.client.patch(f"/functions/{fn['id']}", json={"code": NEW_CODE})).json()["data"]["function"]
    assert saved["version"] == 2 and saved["code"] == NEW_CODE
    assert saved["isLatestVersion"] is False  # an instance still runs version 1
    still = (await api.client.get(f"/insert-function-instances/{inst['id']}")).json()["data"]["instance"]
    assert still["version"] == 1 and still["versionId"] == inst["versionId"]
    versions = (await api.client.get(f"/functions/{fn['id']}/versions")).json()["data"]["versions"]
    assert [(v["version"], v["labels"]) for v in versions] == [(2, ["LATEST"]), (1, ["DEPLOYED"])]
    one = (await api.client.get(f"/functions/{fn['id']}/versions/{versions[1]['id']}")).json()["data"]["version"]
    assert one["code"] == CODE and one["author"] == "admin"
    deployed = await api.client.post(f"/functions/{fn['id']}/deploy", json={"instanceIds": [inst["id"]]})
    assert deployed.status_code == 200
    assert deployed.json()["data"]["deploy"]["deployedInstanceIds"] == [inst["id"]]
    now = (await api.client.get(f"/insert-function-instances/{inst['id']}")).json()["data"]["instance"]
    assert now["version"] == 2 and now["isLatestVersion"]
    versions = (await api.client.get(f"/functions/{fn['id']}/versions")).json()["data"]["versions"]
    assert [(v["version"], v["labels"]) for v in versions] == [(2, ["LATEST", "DEPLOYED"]), (1, [])]


async def test_restore_makes_a_copy_the_latest_and_deploy_all(api: Api) -> None:
    fn = await api.function()
    first_id = (await api.client.get(f"/functions/{fn['id']}/versions")).json()["data"]["versions"][0]["id"]
    await api.client.patch(f"/functions/{fn['id']}", json={"code": NEW_CODE})
    dest_a, dest_b = await api.destination(name="A"), await api.destination(name="B")
    a = await api.instance(fn["id"], dest_a["id"])
    b = await api.instance(fn["id"], dest_b["id"])
    assert a["version"] == b["version"] == 2
    restored = await api.client.post(f"/functions/{fn['id']}/versions", json={"versionId": first_id})
    assert restored.status_code == 201
    version = restored.json()["data"]["version"]
    assert version["version"] == 3 and version["code"] == CODE and version["restoredFrom"] == first_id
    fn_now = (await api.client.get(f"/functions/{fn['id']}")).json()["data"]["function"]
    assert fn_now["code"] == CODE and fn_now["version"] == 3
    deploy_all = await api.client.post(f"/functions/{fn['id']}/deploy", json={})
    assert sorted(deploy_all.json()["data"]["deploy"]["deployedInstanceIds"]) == sorted([a["id"], b["id"]])
    for inst in (a, b):
        got = (await api.client.get(f"/insert-function-instances/{inst['id']}")).json()["data"]["instance"]
        assert got["version"] == 3


async def test_deploy_refuses_instances_of_other_functions(api: Api) -> None:
    fn, other = await api.function(), await api.function(displayName="Other")
    inst = await api.instance(other["id"], (await api.destination())["id"])
    response = await api.client.post(f"/functions/{fn['id']}/deploy", json={"instanceIds": [inst["id"]]})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "instanceIds[0]"


async def test_delete_of_a_connected_function_is_409(api: Api) -> None:
    fn = await api.function()
    await api.instance(fn["id"], (await api.destination())["id"])
    response = await api.client.delete(f"/functions/{fn['id']}")
    assert response.status_code == 409
    assert "remove its instances first" in response.json()["errors"][0]["message"]


async def test_unknown_version_is_404(api: Api) -> None:
    fn = await api.function()
    response = await api.client.get(f"/functions/{fn['id']}/versions/ver_nope")
    assert response.status_code == 404
    restore = await api.client.post(f"/functions/{fn['id']}/versions", json={"versionId": "ver_nope"})
    assert restore.status_code == 404


async def test_preview_single_and_batch_match_fn_test_json(api: Api) -> None:
    event = {"type": "track", "event": "E", "userId": "u", "properties": {}}
    single = await api.client.post("/functions/preview", json={"code": CODE, "payload": event})
    assert single.status_code == 200
    result = single.json()["data"]["preview"]
    assert set(result) == {"status", "event", "error", "logs", "requests", "durationMs"}
    assert result["status"] == "ok" and result["event"]["properties"] == {"via": "sluice"}
    batch_code = "def on_batch(events, settings):\n    print('key', settings['apiKey'])\n    return [None, *events[1:]]\ndef on_track(e, s):\n    return e\n"
    body = {
        "code": batch_code,
        "payload": [event, event],
        "settings": {"apiKey": SECRET},
        "settingsSchema": [{"name": "apiKey", "label": "API Key", "sensitive": True}],
    }
    batch = (await api.client.post("/functions/preview", json=body)).json()["data"]["preview"]
    assert set(batch) == {"status", "error", "results", "logs", "requests", "durationMs"}
    assert [r["status"] for r in batch["results"]] == ["filtered", "ok"]
    assert batch["logs"] == ["key [REDACTED]"]


async def test_preview_of_a_saved_function_uses_its_schema(api: Api) -> None:
    fn = await api.function()
    body = {"functionId": fn["id"], "payload": {"type": "track", "properties": {}}}
    missing = (await api.client.post("/functions/preview", json=body)).json()["data"]["preview"]
    assert missing["status"] == "invalid_settings"
    assert "setting 'apiKey' (API Key) is required" in missing["error"]["message"]
    bad = await api.client.post("/functions/preview", json={"code": "def on_track(e, s) return e", "payload": {}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "code"
    wrong = await api.client.post("/functions/preview", json={"code": CODE, "payload": "text"})
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"].startswith("payload")


STORE_COUNTER = (
    "async def on_track(event, settings):\n"
    "    n = await store.get('n', 0) + 1\n"
    "    await store.set('n', n)\n"
    "    event['properties']['n'] = n\n"
    "    return event\n"
)


async def test_previews_get_a_fresh_in_memory_store_and_write_nothing(api: Api) -> None:
    body = {"code": STORE_COUNTER, "payload": {"type": "track", "properties": {}}}
    for _ in range(2):
        preview = (await api.client.post("/functions/preview", json=body)).json()["data"]["preview"]
        assert preview["status"] == "ok" and preview["event"]["properties"]["n"] == 1
    with api.catalog.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM function_store").scalar_one() == 0


async def test_bad_json_and_unknown_routes_use_the_error_envelope(api: Api) -> None:
    bad = await api.client.post("/functions", content=b"{oops", headers={"Content-Type": "application/json"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "body"
    unknown = await api.client.get("/no-such-thing")
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["type"] == "not_found"


async def test_concurrent_previews_beyond_the_limit_are_429_with_retry_after(api: Api) -> None:
    import asyncio

    api.catalog.functions.max_previews = 1
    slow = "import asyncio\nasync def on_track(e, s):\n    await asyncio.sleep(1)\n    return e\n"
    body = {"code": slow, "payload": {"type": "track", "properties": {}}}
    first = asyncio.create_task(api.client.post("/functions/preview", json=body))
    deadline = asyncio.get_running_loop().time() + 10
    while not api.catalog.functions._previews.get(api.catalog.admin.authenticate(f"Bearer {api.token}").token_id or ""):
        assert asyncio.get_running_loop().time() < deadline, "the first preview never started"
        await asyncio.sleep(0.01)
    second = await api.client.post("/functions/preview", json=body)
    assert second.status_code == 429
    assert second.headers["Retry-After"] == "1"
    assert second.json()["errors"][0]["type"] == "rate_limited"
    assert (await first).status_code == 200
    assert (await api.client.post("/functions/preview", json=body)).status_code == 200


JS_CODE = """
async function onTrack(event, settings) {
  event.properties.region = settings.region
  event.properties.hashed = crypto.createHash('sha256').update(event.userId).digest('hex').slice(0, 8)
  return event
}
"""


async def test_a_javascript_function_is_created_versioned_and_previewed(api: Api) -> None:
    if shutil.which("node") is None:
        skip_or_fail("Node.js is not installed")
    fn = await api.function(language="javascript", code=JS_CODE)
    assert fn["language"] == "javascript"
    body = {"functionId": fn["id"], "payload": {"type": "track", "userId": "u1", "event": "E", "properties": {}},
            "settings": {"apiKey": "k", "region": "eu"}}  # fmt: skip
    response = await api.client.post("/functions/preview", json=body)
    assert response.status_code == 200, response.text
    run = response.json()["data"]["preview"]
    assert run["status"] == "ok" and run["event"]["properties"]["region"] == "eu"
    assert len(run["event"]["properties"]["hashed"]) == 8
    # saving Python code into a JavaScript function is refused, naming the line
    bad = await api.client.patch(
        f"/functions/{fn['id']}", json={"code": "def on_track(event, settings):\n    return event\n"}
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "code"
    # switching the language checks the stored code in the new language
    switched = await api.client.patch(f"/functions/{fn['id']}", json={"language": "python"})
    assert switched.status_code == 422 and switched.json()["errors"][0]["field"] == "code"
