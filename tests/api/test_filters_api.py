"""/api/destination/{id}/filters and /api/destination/filters/preview (Segment's Public API shape)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from sluice.api.app import create_app
from sluice.catalog.access import SYSTEM
from sluice.catalog.service import Catalog
from sluice.config import Config
from sluice.fql import FqlError, compile_fql
from tests.api.conftest import Api

BAD_FQL = "type = = 'track'"
DROP_PII = {"type": "DROP_PROPERTIES", "fields": {"properties": ["email", "phone"], "": ["context"]}}


def filter_body(**overrides: Any) -> dict[str, Any]:
    return {"if": "all", "actions": [{"type": "DROP"}], "title": "No test users", **overrides}


async def test_crud(api: Api) -> None:
    dst = (await api.destination())["id"]
    src = (await api.client.post("/sources", json={"name": "Web"})).json()["data"]["source"]["id"]
    created = await api.client.post(
        f"/destination/{dst}/filters",
        json=filter_body(actions=[{"type": "SAMPLE", "percent": 0.1, "path": "userId"}, DROP_PII], sourceId=src),
    )
    assert created.status_code == 201, created.text
    flt = created.json()["data"]["filter"]
    assert set(flt) == {
        "id", "destinationId", "sourceId", "if", "actions", "title", "description", "enabled", "createdAt", "updatedAt"
    }  # fmt: skip
    assert (flt["destinationId"], flt["sourceId"], flt["if"], flt["title"], flt["enabled"]) == (
        dst,
        src,
        "all",
        "No test users",
        True,
    )
    assert flt["actions"] == [{"type": "SAMPLE", "percent": 0.1, "path": "userId"}, DROP_PII]

    listed = await api.client.get(f"/destination/{dst}/filters")
    assert listed.status_code == 200 and listed.json() == {"data": {"filters": [flt]}}
    got = await api.client.get(f"/destination/{dst}/filters/{flt['id']}")
    assert got.status_code == 200 and got.json() == {"data": {"filter": flt}}

    patched = await api.client.patch(
        f"/destination/{dst}/filters/{flt['id']}", json={"enabled": False, "sourceId": None, "description": "d"}
    )
    assert patched.status_code == 200, patched.text
    after = patched.json()["data"]["filter"]
    assert (after["enabled"], after["sourceId"], after["description"], after["actions"]) == (
        False,
        None,
        "d",
        flt["actions"],
    )

    deleted = await api.client.delete(f"/destination/{dst}/filters/{flt['id']}")
    assert deleted.status_code == 204
    assert (await api.client.get(f"/destination/{dst}/filters/{flt['id']}")).status_code == 404
    assert (await api.client.get(f"/destination/{dst}/filters")).json() == {"data": {"filters": []}}

    audit = (await api.client.get("/audit-events", params={"resourceId": flt["id"]})).json()["data"]["auditEvents"]
    assert [e["action"] for e in audit] == ["filter.delete", "filter.update", "filter.create"]


async def test_at_most_ten_per_destination(api: Api) -> None:
    dst = (await api.destination())["id"]
    for i in range(10):
        response = await api.client.post(f"/destination/{dst}/filters", json=filter_body(title=f"f{i}"))
        assert response.status_code == 201, response.text
    eleventh = await api.client.post(f"/destination/{dst}/filters", json=filter_body())
    assert eleventh.status_code == 409
    error = eleventh.json()["errors"][0]
    assert error["type"] == "conflict" and "10" in error["message"]


async def test_unknown_destination_and_filter_are_404(api: Api) -> None:
    assert (await api.client.post("/destination/dst_nope/filters", json=filter_body())).status_code == 404
    assert (await api.client.get("/destination/dst_nope/filters")).status_code == 404
    dst = (await api.destination())["id"]
    for method in ("GET", "DELETE"):
        assert (await api.client.request(method, f"/destination/{dst}/filters/df_nope")).status_code == 404
    assert (await api.client.patch(f"/destination/{dst}/filters/df_nope", json={"title": "x"})).status_code == 404


async def test_read_only_token_reads_but_cannot_write(api: Api) -> None:
    dst = (await api.destination())["id"]
    fid = (await api.client.post(f"/destination/{dst}/filters", json=filter_body())).json()["data"]["filter"]["id"]
    ro = await api.with_roles("FUNCTIONS_READ_ONLY")
    assert (await ro.get(f"/destination/{dst}/filters")).status_code == 200
    assert (await ro.get(f"/destination/{dst}/filters/{fid}")).status_code == 200
    for response in (
        await ro.post(f"/destination/{dst}/filters", json=filter_body()),
        await ro.patch(f"/destination/{dst}/filters/{fid}", json={"enabled": False}),
        await ro.delete(f"/destination/{dst}/filters/{fid}"),
    ):
        assert response.status_code == 403
        assert "Source Admin" in response.json()["errors"][0]["message"]
    src_admin = await api.with_roles("SOURCE_ADMIN")
    assert (await src_admin.post(f"/destination/{dst}/filters", json=filter_body())).status_code == 201
    assert (await api.as_token(None).get(f"/destination/{dst}/filters")).status_code == 401


async def test_bad_fql_is_422_on_if_with_the_position(api: Api) -> None:
    dst = (await api.destination())["id"]
    try:
        compile_fql(BAD_FQL)
        raise AssertionError("expected an FqlError")
    except FqlError as exc:
        position = exc.position
    response = await api.client.post(f"/destination/{dst}/filters", json=filter_body(**{"if": BAD_FQL}))
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["field"] == "if" and f"position {position}" in error["message"]
    preview = await api.client.post(
        "/destination/filters/preview", json={"filter": {"if": BAD_FQL, "actions": []}, "payload": {}}
    )
    assert preview.status_code == 422 and preview.json()["errors"][0]["field"] == "if"


async def test_bad_input_names_the_field(api: Api) -> None:
    dst = (await api.destination())["id"]
    cases: list[tuple[dict[str, Any], str]] = [
        (filter_body(actions=[{"type": "SAMPLE", "percent": 1.5}]), "actions[0].percent"),
        (filter_body(actions=[{"type": "SAMPLE", "percent": True}]), "actions[0].percent"),
        (filter_body(actions=[{"type": "SAMPLE"}]), "actions[0].percent"),
        (filter_body(actions=[{"type": "DROP_PROPERTIES", "fields": {}}]), "actions[0].fields"),
        (filter_body(actions=[{"type": "NOPE"}]), "actions[0].type"),
        (filter_body(actions=[]), "actions"),
        (filter_body(title="x" * 65), "title"),
        (filter_body(sourceId="src_nope"), "sourceId"),
        (filter_body(extra=1), "extra"),
        ({"actions": [{"type": "DROP"}]}, "if"),
    ]
    for body, field in cases:
        response = await api.client.post(f"/destination/{dst}/filters", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"][0]["field"] == field, (body, response.text)


async def test_preview(api: Api) -> None:
    payload = {
        "type": "track",
        "event": "Signed Up",
        "messageId": "m-1",
        "userId": "u-1",
        "properties": {"email": "a@example.com", "plan": "pro"},
        "context": {"ip": "1.2.3.4"},
    }
    response = await api.client.post(
        "/destination/filters/preview", json={"filter": {"if": "all", "actions": [DROP_PII]}, "payload": payload}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "data": {
            "inputPayload": payload,
            "result": {
                "type": "track",
                "event": "Signed Up",
                "messageId": "m-1",
                "userId": "u-1",
                "properties": {"plan": "pro"},
            },
            "reason": None,
        }
    }
    dropped = await api.client.post(
        "/destination/filters/preview",
        json={"filter": {"if": "all", "actions": [{"type": "DROP"}]}, "payload": payload},
    )
    assert dropped.status_code == 200
    assert dropped.json()["data"]["result"] is None
    assert dropped.json()["data"]["inputPayload"] == payload
    ro = await api.with_roles("FUNCTIONS_READ_ONLY")
    assert (
        await ro.post(
            "/destination/filters/preview", json={"filter": {"if": "all", "actions": [{"type": "DROP"}]}, "payload": {}}
        )
    ).status_code == 200


async def test_openapi_documents_the_routes(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    paths = document["paths"]
    assert set(paths["/destination/{destination_id}/filters"]) == {"get", "post"}
    assert set(paths["/destination/{destination_id}/filters/{filter_id}"]) == {"get", "patch", "delete"}
    assert set(paths["/destination/filters/preview"]) == {"post"}
    assert "if" in document["components"]["schemas"]["FilterCreate"]["properties"]


async def test_preview_with_a_condition(api: Api) -> None:
    body = {"filter": {"if": "event = 'Signed Up'", "actions": [{"type": "DROP"}]}}
    matching = {"type": "track", "event": "Signed Up", "userId": "u"}
    other = {"type": "track", "event": "Logged In", "userId": "u"}
    dropped = await api.client.post("/destination/filters/preview", json={**body, "payload": matching})
    assert dropped.json()["data"]["result"] is None
    kept = await api.client.post("/destination/filters/preview", json={**body, "payload": other})
    assert kept.json()["data"] == {"inputPayload": other, "result": other, "reason": None}


def test_fuzzed_input_on_a_real_destination_never_fails(tmp_path: Path) -> None:
    """Schemathesis on the filter routes with a destination and a filter that exist (the suite-wide
    fuzz only meets unknown ids): never a 5xx, responses match the document."""
    data_dir = tmp_path / "data"
    catalog = Catalog.open(Config(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'sluice.db'}"))
    try:
        token = catalog.admin.bootstrap_owner(data_dir, None)
        dest = catalog.destinations.create(SYSTEM, {"name": "Hook", "type": "webhook", "config": {"url": "http://x"}})
        app = create_app(catalog)
        schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
        ours = [
            op for op in (result.ok() for result in schema.get_all_operations()) if op.path.startswith("/destination/")
        ]
        assert len(ours) == 6
        statuses: dict[tuple[str, str], set[int]] = {}
        for operation, mode in itertools.product(ours, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
            )
            def check(case: Any) -> None:
                existing = catalog.filters.list_all(SYSTEM, dest["id"])
                if not existing:
                    existing = [
                        catalog.filters.create(SYSTEM, dest["id"], {"if": "all", "actions": [{"type": "DROP"}]})
                    ]
                if "destination_id" in (case.path_parameters or {}):
                    case.path_parameters = {"destination_id": dest["id"], "filter_id": existing[0]["id"]}
                    if "{filter_id}" not in case.operation.path:
                        case.path_parameters.pop("filter_id")
                response = case.call_and_validate(
                    headers={"Authorization": f"Bearer {token}"}, excluded_checks=[checks.positive_data_acceptance]
                )
                statuses.setdefault((case.operation.method, case.operation.path), set()).add(response.status_code)

            try:
                check()
            except Unsatisfiable:
                if mode is not GenerationMode.NEGATIVE:
                    raise
        # generated text is seldom valid FQL: the preview is only asked not to fail
        succeeded = {route for route, codes in statuses.items() if codes & {200, 201, 204}}
        assert len(statuses) == 6 and len(succeeded - {("post", "/destination/filters/preview")}) == 5, statuses
    finally:
        catalog.close()
