"""Functions: the catalog, New Function, the editor (Settings, Test, Versions; Save and Save &
Deploy), preview, restore — and the owners' audit trail."""

from __future__ import annotations

import difflib
import functools
import json
import re
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sluice.cli.templates import JAVASCRIPT_FUNCTION, PYTHON_FUNCTION
from sluice.console.api_client import ApiProblem, ConsoleApi
from sluice.console.render import (
    STATIC,
    Can,
    CsrfFailed,
    api,
    check_csrf,
    current_session,
    read_form,
    render,
    require_session,
)
from sluice.functions.settings import name_from_label

LANGUAGES = {"python": "Python", "javascript": "JavaScript"}
RESOURCE_TYPES = {"INSERT_DESTINATION": "Insert destination", "DESTINATION": "Destination"}
SETTING_TYPES = ["STRING", "BOOLEAN", "ARRAY", "TEXT_MAP"]
TABS = ("settings", "test", "versions")
AUDIT_PAGE = 50
MAX_PREVIEW_BODY = 1024 * 1024
_SETTING_KEY = re.compile(r"^settings-(\d+)-label$")


@functools.cache
def sample_events() -> dict[str, Any]:
    """Sample events per type for the Test tab (shipped as static/sample-events.json)."""
    loaded = json.loads((STATIC / "sample-events.json").read_text())
    return dict(loaded)


def template_code(language: str, name: str) -> str:
    safe = re.sub(r'[\\"\r\n\t]+|\*/', " ", name).strip() or "function"
    template = JAVASCRIPT_FUNCTION if language == "javascript" else PYTHON_FUNCTION
    return template.format(name=safe)


# --- catalog -------------------------------------------------------------------------------------


async def functions_list(request: Request) -> Response:
    session = require_session(request)
    return await _render_list(request, api(request, session))


async def _render_list(
    request: Request,
    client: ConsoleApi,
    *,
    form: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    q = request.query_params.get("q", "").strip()
    language = request.query_params.get("language", "")
    resource_type = request.query_params.get("resourceType", "")
    everything = (await client.get("/functions"))["functions"]
    shown = [
        f
        for f in everything
        if (not q or q.casefold() in str(f["displayName"]).casefold())
        and (not language or f["language"] == language)
        and (not resource_type or f["resourceType"] == resource_type)
    ]
    shown.sort(key=lambda f: (str(f["displayName"]).casefold(), f["id"]))
    return render(
        request,
        "functions.html",
        status_code=status_code,
        functions=shown,
        total=len(everything),
        q=q,
        language=language,
        resource_type=resource_type,
        languages=LANGUAGES,
        resource_types=RESOURCE_TYPES,
        form=form or {"displayName": "", "language": "python", "resourceType": "INSERT_DESTINATION"},
        error=error,
    )


async def function_create(request: Request) -> Response:
    session = require_session(request)
    form = await read_form(request)
    await check_csrf(request, session, form)
    name = str(form.get("displayName") or "").strip()
    language = str(form.get("language") or "python")
    resource_type = str(form.get("resourceType") or "INSERT_DESTINATION")
    values = {"displayName": name, "language": language, "resourceType": resource_type}
    client = api(request, session)
    if not name:
        return await _render_list(request, client, form=values, error="Enter a name for the function.", status_code=422)
    body = {**values, "code": template_code(language, name)}
    try:
        created = (await client.post("/functions", body))["function"]
    except ApiProblem as problem:
        if problem.status == 401:
            raise
        return await _render_list(request, client, form=values, error=problem.message, status_code=problem.status)
    session.flash(f"Created {created['displayName']} from the {LANGUAGES.get(language, language)} template.")
    return RedirectResponse(f"/functions/{created['id']}", status_code=303)


# --- editor --------------------------------------------------------------------------------------


def _diff(older: dict[str, Any], newer: dict[str, Any]) -> list[tuple[str, str]]:
    """A unified diff (code, then settings when they changed) as (css class, line) pairs."""
    out: list[tuple[str, str]] = []

    def add(a: str, b: str, what: str) -> None:
        lines = difflib.unified_diff(
            a.splitlines(),
            b.splitlines(),
            fromfile=f"version {older['version']} {what}",
            tofile=f"version {newer['version']} {what}",
            lineterm="",
        )
        for line in lines:
            if line.startswith(("---", "+++")):
                kind = "meta"
            elif line.startswith("@@"):
                kind = "hunk"
            elif line.startswith("+"):
                kind = "add"
            elif line.startswith("-"):
                kind = "del"
            else:
                kind = "ctx"
            out.append((kind, line))

    add(str(older.get("code", "")), str(newer.get("code", "")), "code")
    old_settings = json.dumps(older.get("settings", []), indent=2, sort_keys=True)
    new_settings = json.dumps(newer.get("settings", []), indent=2, sort_keys=True)
    if old_settings != new_settings:
        add(old_settings, new_settings, "settings")
    return out


async def _render_editor(
    request: Request,
    client: ConsoleApi,
    function_id: str,
    *,
    code: str | None = None,
    settings: list[dict[str, Any]] | None = None,
    problem: ApiProblem | None = None,
    status_code: int = 200,
) -> Response:
    function = (await client.get(f"/functions/{function_id}"))["function"]
    instances = (await client.get("/insert-function-instances", {"functionId": function_id}))["instances"]
    versions = (await client.get(f"/functions/{function_id}/versions"))["versions"]
    try:
        destinations = {d["id"]: d["name"] for d in (await client.get("/destinations"))["destinations"]}
    except ApiProblem:
        destinations = {}
    tab = request.query_params.get("tab", "settings")
    if tab not in TABS:
        tab = "settings"
    by_id = {v["id"]: v for v in versions}
    diff_from = request.query_params.get("from", "")
    diff_to = request.query_params.get("to", "")
    diff: list[tuple[str, str]] | None = None
    if diff_from in by_id and diff_to in by_id:
        older, newer = sorted((by_id[diff_from], by_id[diff_to]), key=lambda v: int(v["version"]))
        diff = _diff(older, newer)
    elif len(versions) >= 2:
        ordered = sorted(versions, key=lambda v: int(v["version"]))
        diff_from, diff_to = ordered[-2]["id"], ordered[-1]["id"]
        diff = _diff(ordered[-2], ordered[-1])  # by default: what the latest save changed
    session = current_session(request)
    can = Can.from_me(session.me if session else None)
    rows = settings if settings is not None else list(function.get("settings", []))
    test_settings = {s["name"]: "" for s in function.get("settings", []) if s.get("type", "STRING") == "STRING"}
    return render(
        request,
        "function_edit.html",
        status_code=status_code,
        function=function,
        code=code if code is not None else function["code"],
        setting_rows=rows,
        setting_types=SETTING_TYPES,
        instances=instances,
        destinations=destinations,
        versions=sorted(versions, key=lambda v: -int(v["version"])),
        diff=diff,
        diff_from=diff_from,
        diff_to=diff_to,
        tab=tab,
        problem=problem,
        error_line=problem.line if problem is not None else None,
        can_edit=can.edit_function(function_id),
        can_deploy=can.deploy_function(function_id),
        can_preview=can.preview and can.covers(function_id),
        samples=sample_events(),
        test_settings=json.dumps(test_settings, indent=2),
        languages=LANGUAGES,
        resource_types=RESOURCE_TYPES,
    )


async def function_edit(request: Request) -> Response:
    session = require_session(request)
    return await _render_editor(request, api(request, session), request.path_params["function_id"])


def settings_from_form(form: FormData) -> list[dict[str, Any]]:
    """The Settings tab's rows (``settings-<i>-label|name|type|description|required|sensitive``)."""
    indices = sorted({int(m.group(1)) for key in form for m in [_SETTING_KEY.match(key)] if m})
    out: list[dict[str, Any]] = []
    for i in indices:

        def value(field: str, i: int = i) -> str:
            return str(form.get(f"settings-{i}-{field}") or "").strip()

        label, name = value("label"), value("name")
        if not label and not name:
            continue  # an empty row
        out.append(
            {
                "label": label,
                "name": name or name_from_label(label),
                "type": value("type") or "STRING",
                "description": value("description"),
                "required": f"settings-{i}-required" in form,
                "sensitive": f"settings-{i}-sensitive" in form,
            }
        )
    return out


async def function_save(request: Request) -> Response:
    """Save (PATCH code + settings), and with ``action=deploy`` deploy to the chosen instances."""
    session = require_session(request)
    form = await read_form(request)
    await check_csrf(request, session, form)
    function_id = request.path_params["function_id"]
    client = api(request, session)
    code = str(form.get("code") or "").replace("\r\n", "\n")
    settings = settings_from_form(form)
    try:
        saved = (await client.patch(f"/functions/{function_id}", {"code": code, "settings": settings}))["function"]
    except ApiProblem as problem:
        if problem.status in (401, 404):
            raise
        return await _render_editor(
            request, client, function_id, code=code, settings=settings, problem=problem, status_code=problem.status
        )
    message = f"Saved. The latest version is {saved['version']}."
    if form.get("action") == "deploy":
        ids = [str(i) for i in form.getlist("instanceIds")]
        if not ids:
            session.flash(message + " No instance was chosen, so nothing was deployed.", "info")
        else:
            try:
                deployed = (await client.post(f"/functions/{function_id}/deploy", {"instanceIds": ids}))["deploy"]
            except ApiProblem as problem:
                if problem.status == 401:
                    raise
                session.flash(message + f" Deploy refused: {problem.message}", "error")
            else:
                count = len(deployed.get("deployedInstanceIds", ids))
                session.flash(f"{message} Deployed version {saved['version']} to {count} instance(s).")
    else:
        session.flash(message + " Running instances are unchanged until you deploy.")
    return RedirectResponse(f"/functions/{function_id}", status_code=303)


async def function_restore(request: Request) -> Response:
    session = require_session(request)
    form = await read_form(request)
    await check_csrf(request, session, form)
    function_id = request.path_params["function_id"]
    version_id = str(form.get("versionId") or "")
    try:
        restored = (await api(request, session).post(f"/functions/{function_id}/versions", {"versionId": version_id}))[
            "version"
        ]
    except ApiProblem as problem:
        if problem.status in (401, 404):
            raise
        session.flash(f"Restore refused: {problem.message}", "error")
    else:
        session.flash(
            f"Restored: version {restored['version']} is a copy of the chosen version and is now the latest "
            "(deploy it to update running instances)."
        )
    return RedirectResponse(f"/functions/{function_id}?tab=versions", status_code=303)


def _json_error(status: int, message: str, kind: str = "error") -> JSONResponse:
    return JSONResponse({"errors": [{"type": kind, "message": message}]}, status_code=status)


async def function_preview(request: Request) -> Response:
    """The Test tab's Run (``fetch`` with ``X-CSRF-Token``): forwards to ``POST /api/functions/preview``."""
    session = current_session(request)
    if session is None:
        return _json_error(401, "your session has ended: sign in again", "unauthorized")
    try:
        await check_csrf(request, session)
    except CsrfFailed:
        return _json_error(403, "missing or wrong CSRF token: reload the page", "forbidden")
    raw = await request.body()
    if len(raw) > MAX_PREVIEW_BODY:
        return _json_error(413, "the request is too large", "validation_error")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return _json_error(422, "the body is not valid JSON", "validation_error")
    if not isinstance(body, dict):
        return _json_error(422, "the body must be a JSON object", "validation_error")
    forward: dict[str, Any] = {"functionId": request.path_params["function_id"], "payload": body.get("payload")}
    if isinstance(body.get("settings"), dict):
        forward["settings"] = body["settings"]
    if isinstance(body.get("code"), str) and body["code"].strip():
        forward["code"] = body["code"].replace("\r\n", "\n")
    schema = body.get("settingsSchema")
    if isinstance(schema, list) and all(isinstance(s, dict) for s in schema):
        forward["settingsSchema"] = schema
    try:
        data = await api(request, session).post("/functions/preview", forward)
    except ApiProblem as problem:
        return JSONResponse({"errors": problem.errors}, status_code=problem.status)
    return JSONResponse({"preview": data["preview"]})


# --- audit ---------------------------------------------------------------------------------------


async def audit(request: Request) -> Response:
    session = require_session(request)
    if not Can.from_me(session.me).read_audit:
        message = "Only workspace owners may read the audit trail."
        return render(request, "error.html", status_code=403, title="Forbidden", messages=[message])
    before = request.query_params.get("beforeId", "")
    resource_id = request.query_params.get("resourceId", "").strip()
    params: dict[str, Any] = {"limit": AUDIT_PAGE}
    if before.isdigit():
        params["beforeId"] = int(before)
    if resource_id:
        params["resourceId"] = resource_id
    events = (await api(request, session).get("/audit-events", params))["auditEvents"]
    older = events[-1]["id"] if len(events) == AUDIT_PAGE else None
    for event in events:
        event["beforeJson"] = json.dumps(event.get("before"), indent=2) if event.get("before") is not None else ""
        event["afterJson"] = json.dumps(event.get("after"), indent=2) if event.get("after") is not None else ""
    return render(
        request,
        "audit.html",
        events=events,
        older=older,
        paged=bool(params.get("beforeId")),
        resource_id=resource_id,
    )


routes: list[BaseRoute] = [
    Route("/functions", functions_list, methods=["GET"]),
    Route("/functions", function_create, methods=["POST"]),
    Route("/functions/{function_id}", function_edit, methods=["GET"]),
    Route("/functions/{function_id}", function_save, methods=["POST"]),
    Route("/functions/{function_id}/preview", function_preview, methods=["POST"]),
    Route("/functions/{function_id}/restore", function_restore, methods=["POST"]),
    Route("/audit", audit, methods=["GET"]),
]
