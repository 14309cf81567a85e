"""Role × endpoint matrix: every token gets exactly the access its role gives, 403 naming what it lacks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.api.conftest import CODE, SECRET, Api

OWNER, RO, RO_OTHER, ADMIN, ADMIN_OTHER, SRC, ADMIN_SRC = (
    "owner",
    "ro",
    "ro_other",
    "admin",
    "admin_other",
    "src",
    "admin_src",
)
ROLES = [OWNER, RO, RO_OTHER, ADMIN, ADMIN_OTHER, SRC, ADMIN_SRC]


async def clients(api: Api, fn_id: str, other_id: str) -> dict[str, httpx.AsyncClient]:
    return {
        OWNER: api.client,
        RO: await api.with_roles("FUNCTIONS_READ_ONLY"),
        RO_OTHER: await api.with_roles("FUNCTIONS_READ_ONLY", function_ids=[other_id]),
        ADMIN: await api.with_roles("FUNCTIONS_ADMIN"),
        ADMIN_OTHER: await api.with_roles("FUNCTIONS_ADMIN", function_ids=[other_id]),
        SRC: await api.with_roles("SOURCE_ADMIN"),
        ADMIN_SRC: await api.with_roles("FUNCTIONS_ADMIN", "SOURCE_ADMIN"),
    }


Call = Callable[[httpx.AsyncClient, dict[str, Any]], Awaitable[httpx.Response]]

# (name, call, roles allowed). Everything else must be 403.
MATRIX: list[tuple[str, Call, set[str]]] = [
    ("list functions", lambda c, w: c.get("/functions"), set(ROLES)),
    ("get function", lambda c, w: c.get(f"/functions/{w['fn']}"), {OWNER, RO, ADMIN, SRC, ADMIN_SRC}),
    ("list versions", lambda c, w: c.get(f"/functions/{w['fn']}/versions"), {OWNER, RO, ADMIN, SRC, ADMIN_SRC}),
    (
        "create function",
        lambda c, w: c.post("/functions", json={"displayName": "N", "code": CODE}),
        {OWNER, ADMIN, ADMIN_SRC},
    ),
    (
        "update function",
        lambda c, w: c.patch(f"/functions/{w['fn']}", json={"description": "d"}),
        {OWNER, ADMIN, ADMIN_SRC},
    ),
    (
        "restore version",
        lambda c, w: c.post(f"/functions/{w['fn']}/versions", json={"versionId": w["ver"]}),
        {OWNER, ADMIN, ADMIN_SRC},
    ),
    ("deploy", lambda c, w: c.post(f"/functions/{w['fn']}/deploy", json={}), {OWNER, ADMIN_SRC}),
    (
        "preview",
        lambda c, w: c.post("/functions/preview", json={"code": CODE, "payload": {"type": "track", "properties": {}}}),
        {OWNER, ADMIN, ADMIN_OTHER, ADMIN_SRC},  # unsaved code: any functions admin may run it
    ),
    (
        "preview saved",
        lambda c, w: c.post("/functions/preview", json={"functionId": w["fn"], "payload": {"type": "track"}}),
        {OWNER, ADMIN, ADMIN_SRC},
    ),
    ("create source", lambda c, w: c.post("/sources", json={"name": "S"}), {OWNER, SRC, ADMIN_SRC}),
    ("list sources", lambda c, w: c.get("/sources"), set(ROLES)),
    (
        "create destination",
        lambda c, w: c.post("/destinations", json={"name": "D", "config": {"url": "http://127.0.0.1:9/d"}}),
        {OWNER, SRC, ADMIN_SRC},
    ),
    (
        "enable instance",
        lambda c, w: c.patch(f"/insert-function-instances/{w['inst']}", json={"enabled": True}),
        {OWNER, SRC, ADMIN_SRC},
    ),
    ("list tokens", lambda c, w: c.get("/tokens"), {OWNER}),
    ("create token", lambda c, w: c.post("/tokens", json={"name": "t", "role": "SOURCE_ADMIN"}), {OWNER}),
    ("audit trail", lambda c, w: c.get("/audit-events"), {OWNER}),
]


@pytest.fixture
async def world(api: Api) -> tuple[Api, dict[str, Any], dict[str, httpx.AsyncClient]]:
    fn = await api.function()
    other = await api.function(displayName="Other")
    inst = await api.instance(fn["id"], (await api.destination())["id"], settings={"apiKey": SECRET})
    return api, {"fn": fn["id"], "ver": fn["versionId"], "inst": inst["id"]}, await clients(api, fn["id"], other["id"])


@pytest.mark.parametrize(("name", "call", "allowed"), MATRIX, ids=[m[0] for m in MATRIX])
async def test_role_matrix(
    world: tuple[Api, dict[str, Any], dict[str, httpx.AsyncClient]], name: str, call: Call, allowed: set[str]
) -> None:
    _, ids, by_role = world
    for role in ROLES:
        response = await call(by_role[role], ids)
        if role in allowed:
            assert response.status_code < 400, (name, role, response.text)
        else:
            assert response.status_code == 403, (name, role, response.status_code)
            error = response.json()["errors"][0]
            assert error["type"] == "forbidden" and error["message"].startswith("this token lacks ")


async def test_scoped_tokens_see_only_their_functions(
    world: tuple[Api, dict[str, Any], dict[str, httpx.AsyncClient]],
) -> None:
    _, _, by_role = world
    listed = (await by_role[RO_OTHER].get("/functions")).json()["data"]["functions"]
    assert [f["displayName"] for f in listed] == ["Other"]
    assert len((await by_role[RO].get("/functions")).json()["data"]["functions"]) == 2


async def test_non_source_admins_see_write_keys_masked(
    world: tuple[Api, dict[str, Any], dict[str, httpx.AsyncClient]],
) -> None:
    api, _, by_role = world
    source = (await api.client.post("/sources", json={"name": "Web"})).json()["data"]["source"]
    key = source["writeKeys"][0]
    seen = (await by_role[RO].get(f"/sources/{source['id']}")).json()["data"]["source"]
    assert seen["writeKeys"] == ["••••" + key[-4:]]
    assert (await by_role[SRC].get(f"/sources/{source['id']}")).json()["data"]["source"]["writeKeys"] == [key]


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "missing Authorization header"),
        ({"Authorization": "Basic abc"}, "must be 'Bearer <token>'"),
        ({"Authorization": "Bearer slc_wrong"}, "unknown or revoked"),
    ],
)
async def test_missing_or_bad_tokens_are_401(api: Api, headers: dict[str, str], fragment: str) -> None:
    client = api.as_token(None)
    response = await client.get("/functions", headers=headers)
    assert response.status_code == 401
    assert fragment in response.json()["errors"][0]["message"]


async def test_tokens_are_shown_once_stored_hashed_and_revocable(api: Api) -> None:
    created = (await api.client.post("/tokens", json={"name": "ci", "role": "FUNCTIONS_ADMIN"})).json()["data"]["token"]
    secret = created["token"]
    assert secret.startswith("slc_") and created["roles"] == ["FUNCTIONS_ADMIN"]
    listed = (await api.client.get("/tokens")).json()["data"]["tokens"]
    assert all(t.get("token") is None for t in listed)
    with api.catalog.engine.connect() as conn:
        from sqlalchemy import select

        from sluice.catalog import tables

        hashes = [r.token_hash for r in conn.execute(select(tables.tokens.c.token_hash))]
    assert secret not in hashes and all(len(h) == 64 for h in hashes)
    client = api.as_token(secret)
    assert (await client.get("/functions")).status_code == 200
    assert (await api.client.delete(f"/tokens/{created['id']}")).status_code == 204
    assert (await client.get("/functions")).status_code == 401
    bad = await api.client.post("/tokens", json={"name": "x", "role": "ROOT"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "role"


async def test_every_change_is_in_the_audit_trail_with_who_and_what(api: Api) -> None:
    fn = await api.function()
    admin = await api.with_roles("FUNCTIONS_ADMIN", "SOURCE_ADMIN")
    await admin.patch(f"/functions/{fn['id']}", json={"code": "def on_track(e, s):\n    return None\n"})
    inst = await api.instance(fn["id"], (await api.destination())["id"])
    await admin.patch(f"/insert-function-instances/{inst['id']}", json={"enabled": True})
    await admin.post(f"/functions/{fn['id']}/deploy", json={})
    events = (await api.client.get("/audit-events")).json()["data"]["auditEvents"]
    actions = [(e["actor"], e["action"]) for e in events]
    assert ("FUNCTIONS_ADMIN-SOURCE_ADMIN", "function.deploy") in actions
    assert ("FUNCTIONS_ADMIN-SOURCE_ADMIN", "instance.enable") in actions
    assert ("FUNCTIONS_ADMIN-SOURCE_ADMIN", "function.update") in actions
    assert ("admin", "function.create") in actions
    update = next(e for e in events if e["action"] == "function.update")
    assert update["before"]["version"] == 1 and update["after"]["version"] == 2
    enable = next(e for e in events if e["action"] == "instance.enable")
    assert enable["before"]["enabled"] is False and enable["after"]["enabled"] is True
    assert enable["after"]["settings"]["apiKey"].startswith("••••")
    only_fn = (await api.client.get("/audit-events", params={"resourceId": fn["id"], "limit": 2})).json()
    assert len(only_fn["data"]["auditEvents"]) == 2
    older = only_fn["data"]["auditEvents"][-1]["id"]
    page = (await api.client.get("/audit-events", params={"resourceId": fn["id"], "beforeId": older})).json()
    assert all(e["id"] < older for e in page["data"]["auditEvents"]) and page["data"]["auditEvents"]
    huge = await api.client.get("/audit-events", params={"beforeId": 2**63})  # found by schemathesis: was a 500
    assert huge.status_code == 422 and huge.json()["errors"][0]["field"] == "beforeId"


async def test_me_tells_a_token_its_roles(api: Api) -> None:
    owner = (await api.client.get("/me")).json()["data"]["me"]
    assert owner["roles"] == ["WORKSPACE_OWNER"] and owner["functionIds"] is None
    fn = await api.function()
    reader = await api.with_roles("FUNCTIONS_READ_ONLY", function_ids=[fn["id"]])
    me = (await reader.get("/me")).json()["data"]["me"]
    assert me["roles"] == ["FUNCTIONS_READ_ONLY"] and me["functionIds"] == [fn["id"]]
    assert (await api.as_token("nope").get("/me")).status_code == 401
