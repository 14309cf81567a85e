"""The web console over HTTP: the ASGI app of `sluice serve` (built by `build_server`), driven
with httpx like a browser without JavaScript (forms, cookies), checked through the public API."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluice.catalog.service import Catalog
from sluice.config import Config
from sluice.console.session import MemorySessions
from sluice.server import build_server

CODE_V1 = "def on_track(event, settings):\n    event['properties']['via'] = 'v1'\n    return event\n"
CODE_V2 = "def on_track(event, settings):\n    event['properties']['via'] = 'v2'\n    return event\n"
BAD_CODE = "def on_track(event, settings):\n    return event\n\ndef broken(:\n    pass\n"
TRACK = {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m1", "properties": {"plan": "pro"}}

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Browser:
    """One signed-in (or not) browser: a cookie jar on the console, plus the API as the owner."""

    app: Any
    owner_token: str
    catalog: Catalog
    client: httpx.AsyncClient
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def new_client(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://sluice")
        self.clients.append(client)
        return client

    def api(self, token: str | None = None) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://sluice/api",
            headers={"Authorization": f"Bearer {token or self.owner_token}"},
        )
        self.clients.append(client)
        return client

    async def token(self, *roles: str) -> str:
        created = await self.api().post("/tokens", json={"name": "-".join(roles), "roles": list(roles)})
        assert created.status_code == 201, created.text
        return str(created.json()["data"]["token"]["token"])

    async def function(self, code: str = CODE_V1, **extra: Any) -> dict[str, Any]:
        created = await self.api().post("/functions", json={"displayName": "Enrich", "code": code, **extra})
        assert created.status_code == 201, created.text
        return dict(created.json()["data"]["function"])

    async def instance(self, function_id: str, name: str) -> dict[str, Any]:
        owner = self.api()
        dest = await owner.post(
            "/destinations", json={"name": name, "type": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}}
        )
        assert dest.status_code == 201, dest.text
        inst = await owner.post(
            "/insert-function-instances",
            json={"functionId": function_id, "integrationId": dest.json()["data"]["destination"]["id"], "settings": {}},
        )
        assert inst.status_code == 201, inst.text
        return dict(inst.json()["data"]["instance"])


async def login(client: httpx.AsyncClient, token: str, next_path: str = "/functions") -> httpx.Response:
    page = await client.get("/login", params={"next": next_path})
    assert page.status_code == 200
    match = CSRF_FIELD.search(page.text)
    assert match is not None
    return await client.post("/login", data={"csrf": match.group(1), "next": next_path, "token": token})


async def csrf_of(client: httpx.AsyncClient, path: str = "/functions") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    match = CSRF_META.search(page.text)
    assert match is not None
    return match.group(1)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    data_dir = tmp_path / "data"
    config = Config(data_dir=data_dir, database_url=f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog = Catalog.open(config)
    token = catalog.admin.bootstrap_owner(data_dir, None)
    assert token is not None
    server = build_server(catalog, config)  # the lifespan (delivery process) is not started
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app), base_url="http://sluice")
    state = Browser(server.app, token, catalog, client)
    try:
        yield state
    finally:
        for c in [client, *state.clients]:
            await c.aclose()
        await server.event_log.close()
        await server.dedupe.close()
        catalog.close()


async def signed_in(browser: Browser, token: str | None = None) -> httpx.AsyncClient:
    client = browser.new_client()
    response = await login(client, token or browser.owner_token)
    assert response.status_code == 303, response.text
    return client


# --- sign-in, sessions, CSRF ---------------------------------------------------------------------


async def test_login_refuses_a_bad_token_and_sets_a_strict_httponly_cookie(browser: Browser) -> None:
    client = browser.client
    bad = await login(client, "not-a-token")
    assert bad.status_code == 401
    assert "unknown or revoked" in bad.text
    assert "sluice_session" not in client.cookies

    good = await login(client, browser.owner_token, next_path="/functions?q=x")
    assert good.status_code == 303
    assert good.headers["location"] == "/functions?q=x"
    cookie = next(c for c in good.headers.get_list("set-cookie") if c.startswith("sluice_session="))
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/" in attributes
    assert "secure" not in attributes  # plain http here
    page = await client.get("/functions")
    assert page.status_code == 200
    assert 'data-test="signed-in-as"' in page.text


async def test_login_redirects_only_to_paths_on_this_site(browser: Browser) -> None:
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = await login(browser.new_client(), browser.owner_token, next_path=evil)
        assert response.status_code == 303
        assert response.headers["location"] == "/functions"


async def test_pages_need_a_session(browser: Browser) -> None:
    response = await browser.client.get("/functions/fn_x?tab=test")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/functions/fn_x%3Ftab%3Dtest"
    home = await browser.client.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/login"
    preview = await browser.client.post("/functions/fn_x/preview", json={"payload": TRACK})
    assert preview.status_code == 401


async def test_state_changes_without_the_csrf_token_are_refused(browser: Browser) -> None:
    client = await signed_in(browser)
    function = await browser.function()
    created = await client.post("/functions", data={"displayName": "Sneaky", "language": "python"})
    assert created.status_code == 403
    wrong = await client.post(f"/functions/{function['id']}", data={"csrf": "nope", "code": CODE_V2})
    assert wrong.status_code == 403
    logout = await client.post("/logout")
    assert logout.status_code == 403
    preview = await client.post(f"/functions/{function['id']}/preview", json={"payload": TRACK})
    assert preview.status_code == 403
    assert preview.json()["errors"][0]["type"] == "forbidden"
    # the login form is protected too (double-submit cookie)
    assert (await browser.new_client().post("/login", data={"token": browser.owner_token})).status_code == 403
    listed = await browser.api().get("/functions")
    assert [f["displayName"] for f in listed.json()["data"]["functions"]] == ["Enrich"]
    assert (await browser.api().get(f"/functions/{function['id']}")).json()["data"]["function"]["version"] == 1


async def test_logout_ends_the_session(browser: Browser) -> None:
    client = await signed_in(browser)
    csrf = await csrf_of(client)
    response = await client.post("/logout", data={"csrf": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert (await client.get("/functions")).status_code == 303


def test_sessions_expire_after_twelve_idle_hours() -> None:
    now = [0.0]
    sessions = MemorySessions(clock=lambda: now[0])
    session = sessions.create("tok", {"name": "owner", "roles": ["WORKSPACE_OWNER"]})
    now[0] = 11 * 3600
    assert sessions.get(session.sid) is session  # a request refreshes the idle timer
    now[0] += 12 * 3600 - 1
    assert sessions.get(session.sid) is session
    now[0] += 12 * 3600 + 1
    assert sessions.get(session.sid) is None
    other = sessions.create("tok", {})
    sessions.drop(other.sid)
    assert sessions.get(other.sid) is None


# --- the server around it --------------------------------------------------------------------------


async def test_console_leaves_the_tracking_api_and_the_api_alone(browser: Browser) -> None:
    assert (await browser.client.get("/healthz")).json()["status"] == "ok"
    assert (await browser.api().get("/me")).status_code == 200
    track = await browser.client.post("/v1/track", json=TRACK)  # no write key: the Tracking API answers
    assert track.status_code in (400, 401)
    css = await browser.client.get("/static/console.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert (await browser.client.get("/static/console.js")).status_code == 200
    assert (await browser.client.get("/static/sample-events.json")).json()["track"]["type"] == "track"


async def test_owner_sees_every_page(browser: Browser) -> None:
    client = await signed_in(browser)
    function = await browser.function(settings=[{"label": "API Key", "sensitive": True}])
    listing = await client.get("/functions")
    assert listing.status_code == 200
    assert f'href="/functions/{function["id"]}"' in listing.text
    assert 'id="new-function-form"' in listing.text
    assert 'id="nav-audit"' in listing.text
    editor = await client.get(f"/functions/{function['id']}")
    assert editor.status_code == 200
    text = editor.text
    for selector in ('id="code"', 'data-editor="python"', 'id="save"', 'id="save-deploy"', 'id="tab-settings"',
                     'id="tab-test"', 'id="tab-versions"', 'id="test-run"', 'id="sample-identify"',
                     'id="setting-add"', 'value="apiKey"', 'aria-label="Code"'):  # fmt: skip
        assert selector in text, selector
    assert 'role="tabpanel" id="panel-test"' in text
    audit = await client.get("/audit")
    assert audit.status_code == 200
    assert "function.create" in audit.text
    missing = await client.get("/functions/fn_missing")
    assert missing.status_code == 404


async def test_search_and_language_filter(browser: Browser) -> None:
    client = await signed_in(browser)
    await browser.function(displayName="Enrich orders")
    await browser.function(displayName="Mask PII")
    js = "async function onTrack(event, settings) {\n  return event\n}\n"
    await browser.function(displayName="JS enrich", code=js, language="javascript")
    found = await client.get("/functions", params={"q": "ENRICH"})
    assert "Enrich orders" in found.text and "JS enrich" in found.text and "Mask PII" not in found.text
    only_js = await client.get("/functions", params={"language": "javascript"})
    assert "JS enrich" in only_js.text and "Enrich orders" not in only_js.text


async def test_audit_pages_with_before_id(browser: Browser) -> None:
    client = await signed_in(browser)
    for i in range(55):
        await browser.function(displayName=f"F{i}")
    first = await client.get("/audit")
    match = re.search(r'id="audit-older" data-test="audit-older" href="/audit\?beforeId=(\d+)', first.text)
    assert match is not None
    second = await client.get(f"/audit?beforeId={match.group(1)}")
    assert second.status_code == 200
    assert second.text.count('data-test="audit-row"') >= 5


# --- roles ---------------------------------------------------------------------------------------


async def test_read_only_token_sees_no_save_and_the_api_refuses_a_save(browser: Browser) -> None:
    function = await browser.function()
    client = await signed_in(browser, await browser.token("FUNCTIONS_READ_ONLY"))
    listing = await client.get("/functions")
    assert 'id="new-function-form"' not in listing.text
    assert 'id="nav-audit"' not in listing.text
    editor = await client.get(f"/functions/{function['id']}")
    assert editor.status_code == 200
    assert 'id="save"' not in editor.text and 'id="save-deploy"' not in editor.text
    assert 'id="read-only-note"' in editor.text
    assert 'id="test-run"' not in editor.text
    csrf = CSRF_META.search(editor.text)
    assert csrf is not None
    refused = await client.post(
        f"/functions/{function['id']}", data={"csrf": csrf.group(1), "code": CODE_V2, "action": "save"}
    )
    assert refused.status_code == 403
    assert 'id="save-error"' in refused.text and "Functions Admin" in html.unescape(refused.text)
    assert (await browser.api().get(f"/functions/{function['id']}")).json()["data"]["function"]["code"] == CODE_V1
    assert (await client.get("/audit")).status_code == 403
    created = await client.post("/functions", data={"csrf": csrf.group(1), "displayName": "X", "language": "python"})
    assert created.status_code == 403
    assert "Functions Admin" in html.unescape(created.text)


async def test_functions_admin_without_source_admin_cannot_deploy(browser: Browser) -> None:
    function = await browser.function()
    client = await signed_in(browser, await browser.token("FUNCTIONS_ADMIN"))
    editor = await client.get(f"/functions/{function['id']}")
    assert 'id="save"' in editor.text and 'id="save-deploy"' not in editor.text


# --- functions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "marker"),
    [("python", "async def on_track(event, settings):"), ("javascript", "async function onTrack")],
)
async def test_new_function_from_the_template(browser: Browser, language: str, marker: str) -> None:
    client = await signed_in(browser)
    csrf = await csrf_of(client)
    response = await client.post(
        "/functions",
        data={
            "csrf": csrf,
            "displayName": 'Enrich "orders"',
            "language": language,
            "resourceType": "INSERT_DESTINATION",
        },
    )
    assert response.status_code == 303, response.text
    function_id = response.headers["location"].rsplit("/", 1)[1]
    saved = (await browser.api().get(f"/functions/{function_id}")).json()["data"]["function"]
    assert saved["displayName"] == 'Enrich "orders"'
    assert saved["language"] == language
    assert marker in saved["code"]
    editor = await client.get(response.headers["location"])
    assert f'data-editor="{language}"' in editor.text
    assert "Created Enrich" in html.unescape(editor.text)


async def test_new_function_refused_by_the_api_shows_why(browser: Browser) -> None:
    client = await signed_in(browser)
    csrf = await csrf_of(client)
    response = await client.post("/functions", data={"csrf": csrf, "displayName": "x" * 121, "language": "python"})
    assert response.status_code == 422
    assert 'id="new-function-error"' in response.text


async def test_save_with_a_syntax_error_marks_the_line_and_keeps_the_code(browser: Browser) -> None:
    client = await signed_in(browser)
    function = await browser.function()
    csrf = await csrf_of(client, f"/functions/{function['id']}")
    response = await client.post(
        f"/functions/{function['id']}", data={"csrf": csrf, "code": BAD_CODE, "action": "save"}
    )
    assert response.status_code == 422
    assert 'data-error-line="4"' in response.text
    assert '<span data-test="save-error-line">4</span>' in response.text
    assert html.escape("def broken(:") in response.text  # the refused code is still in the editor
    assert (await browser.api().get(f"/functions/{function['id']}")).json()["data"]["function"]["version"] == 1


async def test_save_keeps_settings_and_generates_names_from_labels(browser: Browser) -> None:
    client = await signed_in(browser)
    function = await browser.function()
    csrf = await csrf_of(client, f"/functions/{function['id']}")
    form = {
        "csrf": csrf,
        "code": CODE_V2,
        "action": "save",
        "settings-0-label": "API Key",
        "settings-0-name": "",
        "settings-0-type": "STRING",
        "settings-0-description": "the key",
        "settings-0-required": "on",
        "settings-0-sensitive": "on",
        "settings-3-label": "Tags",
        "settings-3-name": "tagList",
        "settings-3-type": "ARRAY",
        "settings-3-description": "",
        "settings-5-label": "",  # an empty row added and left blank
        "settings-5-name": "",
    }
    response = await client.post(f"/functions/{function['id']}", data=form)
    assert response.status_code == 303, response.text
    saved = (await browser.api().get(f"/functions/{function['id']}")).json()["data"]["function"]
    assert saved["code"] == CODE_V2 and saved["version"] == 2
    settings = {s["name"]: s for s in saved["settings"]}
    assert list(settings) == ["apiKey", "tagList"]
    assert settings["apiKey"]["required"] and settings["apiKey"]["sensitive"]
    assert settings["apiKey"]["description"] == "the key"
    assert settings["tagList"]["type"] == "ARRAY" and not settings["tagList"]["required"]
    page = await client.get(f"/functions/{function['id']}")
    assert "Saved. The latest version is 2." in page.text


async def test_save_and_deploy_updates_only_the_chosen_instance(browser: Browser) -> None:
    client = await signed_in(browser)
    function = await browser.function()
    first = await browser.instance(function["id"], "Webhook A")
    second = await browser.instance(function["id"], "Webhook B")
    editor = await client.get(f"/functions/{function['id']}")
    assert f'value="{first["id"]}"' in editor.text and f'value="{second["id"]}"' in editor.text
    csrf = CSRF_META.search(editor.text)
    assert csrf is not None
    response = await client.post(
        f"/functions/{function['id']}",
        data={"csrf": csrf.group(1), "code": CODE_V2, "action": "deploy", "instanceIds": [first["id"]]},
    )
    assert response.status_code == 303, response.text
    owner = browser.api()
    a = (await owner.get(f"/insert-function-instances/{first['id']}")).json()["data"]["instance"]
    b = (await owner.get(f"/insert-function-instances/{second['id']}")).json()["data"]["instance"]
    assert a["version"] == 2 and a["isLatestVersion"]
    assert b["version"] == 1 and not b["isLatestVersion"]
    page = await client.get(f"/functions/{function['id']}")
    assert "Deployed version 2 to 1 instance(s)." in page.text


async def test_versions_diff_and_restore(browser: Browser) -> None:
    client = await signed_in(browser)
    function = await browser.function()
    owner = browser.api()
    assert (await owner.patch(f"/functions/{function['id']}", json={"code": CODE_V2})).status_code == 200
    versions = (await owner.get(f"/functions/{function['id']}/versions")).json()["data"]["versions"]
    by_number = {v["version"]: v for v in versions}
    v1, v2 = by_number[1]["id"], by_number[2]["id"]

    page = await client.get(f"/functions/{function['id']}", params={"tab": "versions", "from": v1, "to": v2})
    assert page.status_code == 200
    assert 'id="version-diff"' in page.text
    assert '<span class="del">-    event[&#39;properties&#39;][&#39;via&#39;] = &#39;v1&#39;</span>' in page.text
    assert '<span class="add">+    event[&#39;properties&#39;][&#39;via&#39;] = &#39;v2&#39;</span>' in page.text
    assert '<span class="ctx">     return event</span>' in page.text
    assert (
        'role="tabpanel" id="panel-versions" aria-labelledby="tab-versions" data-test="panel-versions" >' in page.text
    )
    assert 'id="restore-1"' in page.text and 'id="restore-2"' not in page.text  # LATEST needs no restore

    csrf = CSRF_META.search(page.text)
    assert csrf is not None
    restored = await client.post(f"/functions/{function['id']}/restore", data={"csrf": csrf.group(1), "versionId": v1})
    assert restored.status_code == 303
    assert restored.headers["location"].endswith("?tab=versions")
    latest = (await owner.get(f"/functions/{function['id']}")).json()["data"]["function"]
    assert latest["version"] == 3 and latest["code"] == CODE_V1
    after = await client.get(restored.headers["location"])
    assert "Restored: version 3" in after.text


async def test_read_only_restore_is_disabled_and_refused(browser: Browser) -> None:
    function = await browser.function()
    await browser.api().patch(f"/functions/{function['id']}", json={"code": CODE_V2})
    client = await signed_in(browser, await browser.token("FUNCTIONS_READ_ONLY"))
    page = await client.get(f"/functions/{function['id']}?tab=versions")
    assert re.search(r'id="restore-1" data-test="restore" disabled', page.text)
    csrf = CSRF_META.search(page.text)
    assert csrf is not None
    versions = (await browser.api().get(f"/functions/{function['id']}/versions")).json()["data"]["versions"]
    v1 = next(v["id"] for v in versions if v["version"] == 1)
    response = await client.post(f"/functions/{function['id']}/restore", data={"csrf": csrf.group(1), "versionId": v1})
    after = await client.get(response.headers["location"])
    assert "Restore refused" in after.text
    assert (await browser.api().get(f"/functions/{function['id']}")).json()["data"]["function"]["version"] == 2


@pytest.mark.slow
async def test_preview_through_the_console_endpoint(browser: Browser) -> None:
    client = await signed_in(browser)
    function = await browser.function()
    csrf = await csrf_of(client, f"/functions/{function['id']}")
    headers = {"X-CSRF-Token": csrf}
    url = f"/functions/{function['id']}/preview"

    saved = await client.post(url, json={"payload": TRACK, "settings": {}}, headers=headers)
    assert saved.status_code == 200, saved.text
    preview = saved.json()["preview"]
    assert preview["status"] == "ok"
    assert preview["event"]["properties"]["via"] == "v1"

    unsaved = await client.post(
        url, json={"payload": [TRACK, {**TRACK, "messageId": "m2"}], "code": CODE_V2}, headers=headers
    )
    assert unsaved.status_code == 200, unsaved.text
    batch = unsaved.json()["preview"]
    assert [r["event"]["properties"]["via"] for r in batch["results"]] == ["v2", "v2"]

    broken = await client.post(url, json={"payload": TRACK, "code": BAD_CODE}, headers=headers)
    assert broken.status_code == 422
    assert broken.json()["errors"][0]["line"] == 4
    not_json = await client.post(url, content=b"{", headers={**headers, "Content-Type": "application/json"})
    assert not_json.status_code == 422
