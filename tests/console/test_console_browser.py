"""The console in headless Chromium against a real ``sluice serve``: what a Segment user does in
the browser, with a screenshot of each main page (test-artifacts/console/) and no console errors."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import segment.analytics
from playwright.sync_api import expect

from tests.conftest import HttpServer
from tests.console.conftest import Page
from tests.e2e.conftest import Sluice

pytestmark = pytest.mark.timeout(240)

EDITED = """async def on_track(event, settings):
    print("enriching", event.get("event"))
    event["properties"]["enriched"] = True
    return event
"""


def poll_until(check: Any, seconds: float) -> Any:
    """``check()`` until it is truthy or ``seconds`` pass (returns its last value)."""
    deadline = time.monotonic() + seconds
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def sign_in(page: Page, token: str) -> None:
    page.goto("/login")
    page.page.fill("#login-token", token)
    page.page.click("#login-submit")
    page.page.wait_for_selector("#signed-in-as")


def set_code(page: Page, code: str) -> None:
    """Type into the CodeMirror editor as a user's paste would (through its API, not the DOM)."""
    page.page.wait_for_function("document.querySelector('#code') && document.querySelector('#code').sluiceEditor")
    page.page.evaluate("(code) => document.querySelector('#code').sluiceEditor.setValue(code)", code)


def editor_text(page: Page) -> str:
    """What the code editor shows (its rendered lines, not the hidden textarea)."""
    script = "t => t.sluiceEditor.view.dom.querySelector('.cm-content').innerText"
    return str(page.page.eval_on_selector("#code", script))


def api_instance(sluice: Sluice, function_id: str, name: str) -> dict[str, Any]:
    destination = sluice.create_webhook(f"http://127.0.0.1:9/{name}", name=name)
    body = {"functionId": function_id, "integrationId": destination["id"], "name": name}
    response = sluice.api.post("/insert-function-instances", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json()["data"]["instance"])


def test_build_test_save_deploy_and_restore_a_function(page: Page, sluice: Sluice) -> None:
    sign_in(page, sluice.token)
    page.shot("functions-empty")

    # New Function from the Python template
    page.page.fill("#new-function-name", "Enrich")
    page.page.select_option("#new-function-language", "python")
    page.page.click("#new-function-submit")
    page.page.wait_for_selector("#function-title")
    assert page.page.inner_text("#function-title") == "Enrich"
    assert "async def on_track(event, settings):" in editor_text(page)
    gutters = "t => t.sluiceEditor.view.dom.querySelectorAll('.cm-lineNumbers .cm-gutterElement').length"
    assert page.page.eval_on_selector("#code", gutters) > 5  # a real code editor: line numbers
    function_id = page.page.url.rstrip("/").split("/")[-1].split("?")[0]
    page.shot("function-editor")

    # a secret setting, saved with the code
    page.page.click("#tab-settings")
    page.page.click("#setting-add")
    row = page.page.locator("[data-test=setting-row]").last
    row.locator("[data-test=setting-label]").fill("API Key")
    row.locator("[data-test=setting-sensitive]").check()
    assert row.locator("[data-test=setting-name]").input_value() in ("apiKey", "api_key")
    set_code(page, EDITED)
    page.page.click("#save")
    page.page.wait_for_selector("#function-title")
    function = sluice.api.get(f"/functions/{function_id}").json()["data"]["function"]
    assert function["code"] == EDITED
    [setting] = function["settings"]
    assert setting["label"] == "API Key" and setting["sensitive"] is True

    # test an event: the returned event and the logs
    page.page.click("#tab-test")
    page.page.click("#sample-track")
    page.page.click("#test-run")
    page.page.wait_for_selector("#test-status:not(:empty)")
    assert page.page.inner_text("#test-status").strip().startswith("ok")
    assert '"enriched": true' in page.page.inner_text("#test-output").replace(" ", " ")
    assert "enriching" in page.page.inner_text("#test-logs")
    page.shot("function-test")

    # a syntax error: refused, and its line is marked in the editor
    set_code(page, "async def on_track(event, settings):\n    return event +\n")
    page.page.click("#save")
    page.page.wait_for_selector("#save-error")
    assert page.page.inner_text("[data-test=save-error-line]") == "2"
    page.forgive(422)  # the refused save answers 422 on purpose
    page.page.wait_for_selector("#code ~ .sluice-editor .cm-error-line")
    assert "return event +" in page.page.inner_text("#code ~ .sluice-editor .cm-error-line")
    page.shot("function-syntax-error")

    # Save & Deploy to one of two instances: only that one moves to the new version
    first = api_instance(sluice, function_id, "first")
    second = api_instance(sluice, function_id, "second")
    page.goto(f"/functions/{function_id}")
    set_code(page, EDITED.replace("True", "'v3'"))
    page.page.uncheck(f"#deploy-{second['id']}")
    page.page.click("#save-deploy")
    page.page.wait_for_selector("#function-title")
    first_now = sluice.api.get(f"/insert-function-instances/{first['id']}").json()["data"]["instance"]
    second_now = sluice.api.get(f"/insert-function-instances/{second['id']}").json()["data"]["instance"]
    assert first_now["isLatestVersion"] is True and first_now["version"] == 3
    assert second_now["version"] == 2

    # Versions: LATEST/DEPLOYED, a diff, restore version 2
    page.page.click("#tab-versions")
    versions = page.page.inner_text("#versions-table")
    assert "LATEST" in versions and "DEPLOYED" in versions
    page.page.check("#diff-from-2")
    page.page.check("#diff-to-3")
    page.page.click("#diff-compare")
    page.page.wait_for_selector("#version-diff")
    assert "'v3'" in page.page.inner_text("#version-diff .add")
    page.shot("function-versions")
    page.page.once("dialog", lambda dialog: dialog.accept())  # "Restore version 2?"
    with page.page.expect_navigation():
        page.page.click("#restore-2")
    restored = sluice.api.get(f"/functions/{function_id}").json()["data"]["function"]
    assert restored["code"] == EDITED and restored["version"] == 4
    page.goto("/audit")
    assert "function.update" in page.page.inner_text("#audit-table")
    page.shot("audit")
    page.assert_no_errors()


def test_a_read_only_token_cannot_save(page: Page, sluice: Sluice) -> None:
    function = sluice.create_function("def on_track(event, settings):\n    return event\n", name="Locked")
    token = sluice.api.post("/tokens", json={"name": "viewer", "roles": ["FUNCTIONS_READ_ONLY"]})
    assert token.status_code == 201, token.text
    sign_in(page, token.json()["data"]["token"]["token"])
    page.goto(f"/functions/{function['id']}")
    page.page.wait_for_selector("#read-only-note")
    assert page.page.locator("#save").count() == 0 and page.page.locator("#save-deploy").count() == 0
    assert page.page.locator("#nav-audit").count() == 0
    # the server refuses regardless of the page: a forged POST with the session's own CSRF token
    csrf = page.page.get_attribute("meta[name=csrf-token]", "content")
    status = page.page.evaluate(
        """async ([url, csrf]) => {
            const body = new URLSearchParams({csrf, action: 'save', code: 'def on_track(e, s):\\n    return None\\n'});
            const r = await fetch(url, {method: 'POST', body});
            return [r.status, await r.text()];
        }""",
        [f"/functions/{function['id']}", csrf],
    )
    assert status[0] == 403 and re.search(r"not allowed|may not|forbidden", status[1], re.I)
    assert sluice.api.get(f"/functions/{function['id']}").json()["data"]["function"]["version"] == 1
    page.shot("function-read-only")


def test_keyboard_and_narrow_screens(browser: Any, sluice: Sluice) -> None:
    function = sluice.create_function("def on_track(event, settings):\n    return event\n", name="Keys")
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = Page(context.new_page(), sluice.url)
        sign_in(page, sluice.token)
        for path, name in (("/functions", "functions-narrow"), (f"/functions/{function['id']}", "editor-narrow")):
            page.goto(path)
            page.page.wait_for_selector("main")
            overflow = page.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{path} scrolls sideways by {overflow} px at 390 px wide"
            page.shot(name)
        # tabs work from the keyboard (ARIA tabs: arrow keys move the selection)
        page.page.focus("#tab-settings")
        page.page.keyboard.press("ArrowRight")
        assert page.page.get_attribute("#tab-test", "aria-selected") == "true"
        assert page.page.is_visible("#panel-test") and not page.page.is_visible("#panel-settings")
        # every visible form control has an accessible name
        unnamed = page.page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea, button')]
                .filter(el => el.offsetParent !== null && el.type !== 'hidden')
                .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                              && !el.getAttribute('aria-labelledby') && !(el.innerText || '').trim())
                .map(el => el.outerHTML.slice(0, 80))"""
        )
        assert unnamed == []
        page.assert_no_errors()
    finally:
        context.close()


DELIVERY_FUNCTION = """from sluice.fn import ValidationError

def on_track(event, settings):
    print("checking", event["messageId"])
    if not event.get("properties", {}).get("email"):
        raise ValidationError("email is required")
    return event
"""


def test_connect_enable_send_with_an_sdk_and_watch_event_delivery(
    page: Page, sluice: Sluice, http_server: HttpServer
) -> None:
    http_server.route("/hook", 200, {})
    function = sluice.create_function(DELIVERY_FUNCTION, name="Checker")
    destination = sluice.create_webhook(f"{http_server.url}/hook", name="Warehouse")
    sign_in(page, sluice.token)
    page.goto("/destinations")
    page.shot("destinations")
    page.page.click(f"[data-destination-id='{destination['id']}'] [data-test=destination-link]")
    page.page.wait_for_selector("#connect-form")
    page.page.select_option("#connect-function", function["id"])
    with page.page.expect_navigation():
        page.page.click("#connect-submit")
    page.page.wait_for_selector("#instance-toggle")
    page.page.once("dialog", lambda dialog: dialog.accept())  # "Enable the insert function?"
    with page.page.expect_navigation():
        page.page.click("#instance-toggle")
    [instance] = sluice.api.get("/insert-function-instances", params={"integrationId": destination["id"]}).json()[
        "data"
    ]["instances"]
    assert instance["enabled"] is True and instance["functionId"] == function["id"]
    page.shot("destination")

    # a real SDK: probes until the pipeline has picked the destination up (it reads the catalog
    # every ~2 s; events sent before that are not for it), then three good events and one the
    # function rejects
    client = segment.analytics.Client(write_key=sluice.write_key, host=sluice.url, max_retries=2, upload_interval=0.1)
    deadline = time.monotonic() + 60
    while not http_server.bodies("/hook"):
        assert time.monotonic() < deadline, "the destination never received a probe"
        client.track(user_id="probe", event="Probe", properties={"email": "probe@example.com"})
        client.flush()
        poll_until(lambda: http_server.bodies("/hook"), seconds=1.0)
    page.goto(f"/destinations/{destination['id']}/delivery?window=10m")  # open before the events arrive
    before = page.page.inner_text("[data-test=delivery-delivered]")
    for n in range(3):
        client.track(user_id=f"u{n}", event="Signed Up", properties={"email": f"u{n}@example.com"})
    client.track(user_id="u9", event="Signed Up", properties={"plan": "pro"})
    client.flush()
    client.join()
    poll_until(lambda: sum(b.get("event") == "Signed Up" for b in http_server.bodies("/hook")) == 3, seconds=60)
    delivered = len(http_server.bodies("/hook"))
    assert before != str(delivered)
    # the open page shows them without a reload (it polls every few seconds)
    expect(page.page.locator("[data-test=delivery-delivered]")).to_have_text(str(delivered), timeout=60_000)
    page.page.wait_for_selector("[data-test=error-row][data-outcome=message_rejected]", timeout=60_000)
    row = page.page.locator("[data-test=error-row][data-outcome=message_rejected]")
    assert row.locator("[data-test=error-reason-code]").inner_text().strip() == "ValidationError"
    page.page.locator("[data-test=error-samples] summary").first.click()
    sample = page.page.locator("[data-test=sample]").first
    assert '"plan": "pro"' in sample.locator("[data-test=sample-event]").inner_text()
    assert "checking" in sample.locator("[data-test=sample-logs]").inner_text()
    assert "email is required" in sample.locator("[data-test=sample-error]").inner_text()
    page.shot("event-delivery")
    page.assert_no_errors()
