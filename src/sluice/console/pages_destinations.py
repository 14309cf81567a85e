"""Destinations: the list and New destination; a destination's page (sources, config, the Enable
toggle, its insert function instance, its filters and their preview). Event Delivery is in
:mod:`sluice.console.pages_delivery`.

Every read and change goes through the public API (:class:`~sluice.console.api_client.ConsoleApi`);
every state-changing request checks the session's CSRF token.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sluice.console.api_client import ApiProblem, ConsoleApi
from sluice.console.render import api, check_csrf, read_form, render, require_session
from sluice.console.session import Session

__all__ = ["routes"]

TYPES: dict[str, str] = {
    "webhook": "Webhook",
    "segment": "Segment (Tracking API)",
    "function": "Function",
    "actions-webhook": "Actions webhook",
}
#: A starting config per type (the New destination form shows the webhook one).
CONFIG_EXAMPLES: dict[str, Any] = {
    "webhook": {"url": "https://example.com/hook", "method": "POST", "headers": {}},
    "segment": {"url": "https://api.segment.io", "writeKey": "YOUR_WRITE_KEY"},
    "function": {},
    "actions-webhook": {
        "subscriptions": [
            {
                "name": "Tracks",
                "trigger": "type = 'track'",
                "mapping": {"event": {"@path": "$.event"}, "userId": {"@path": "$.userId"}},
                "request": {"url": "https://example.com/hook"},
            }
        ]
    },
}
DEFAULT_ACTIONS = '[\n  {"type": "DROP"}\n]'
DEFAULT_PAYLOAD = json.dumps(
    {
        "type": "track",
        "event": "Signed Up",
        "userId": "user-1",
        "messageId": "preview-1",
        "properties": {"plan": "pro", "email": "user@example.com"},
    },
    indent=2,
)
MAX_JSON_BODY = 64 * 1024
_POSITION = re.compile(r"\bposition (\d+)\b")


class FormProblem(Exception):
    """A form value the console itself refuses (e.g. not JSON), shown like an API 422."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _json_field(form: FormData, name: str, label: str, *, default: Any, kind: type) -> Any:
    """A JSON form field (empty: ``default``); raises :class:`FormProblem` naming ``label``."""
    text = str(form.get(name) or "").strip()
    if not text:
        return default
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise FormProblem(f"{label} is not valid JSON: {exc}", name) from None
    if not isinstance(value, kind):
        what = "an object ({…})" if kind is dict else "a list ([…])"
        raise FormProblem(f"{label} must be {what}", name)
    return value


def _problem_dict(problem: ApiProblem | FormProblem) -> dict[str, Any]:
    """What a template shows of a refusal: the message(s), the fields, a position for FQL."""
    if isinstance(problem, FormProblem):
        errors = [{"type": "validation_error", "message": problem.message, "field": problem.field}]
        status = 422
    else:
        errors, status = problem.errors, problem.status
    position = None
    for error in errors:
        match = _POSITION.search(str(error.get("message", "")))
        if match and error.get("field") in (None, "if", "filter.if"):
            position = int(match.group(1))
            break
    return {"status": status, "errors": errors, "position": position}


def _caret(text: str, position: int) -> dict[str, Any]:
    """The line of ``text`` holding the 0-based ``position`` and the column there (for a ``^``)."""
    position = max(0, min(position, len(text)))
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    line = text[start : end if end != -1 else len(text)]
    column = position - start
    pad = "".join("\t" if c == "\t" else " " for c in line[:column])
    return {"line": line, "pad": pad, "lineNumber": text.count("\n", 0, start) + 1, "column": column}


def _reraise(problem: ApiProblem) -> None:
    """A revoked token (401) and a vanished destination (404) become the console's error pages."""
    if problem.status in (401, 404):
        raise problem


async def _optional(call: Any, default: Any) -> Any:
    """An API read the page can do without (another role may be needed, or no pipeline here)."""
    try:
        return await call
    except ApiProblem as problem:
        if problem.status == 401:
            raise
        return default


async def _gather(*calls: Any) -> list[Any]:
    """Several API calls at once; the first failure is raised once all have settled."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return list(results)


def _bool(form: FormData, name: str) -> bool:
    return str(form.get(name) or "").lower() in ("true", "on", "1", "yes")


# --- list ------------------------------------------------------------------------------------------


async def destinations_list(request: Request) -> Response:
    session = require_session(request)
    return await _render_list(request, api(request, session))


async def _render_list(
    request: Request,
    client: ConsoleApi,
    *,
    form: dict[str, Any] | None = None,
    problem: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    destinations, sources, instances, functions = await _gather(
        client.get("/destinations"),
        client.get("/sources"),
        _optional(client.get("/insert-function-instances"), {"instances": []}),
        _optional(client.get("/functions"), {"functions": []}),
    )
    source_names = {s["id"]: s["name"] for s in sources["sources"]}
    function_names = {f["id"]: f["displayName"] for f in functions["functions"]}
    by_destination = {i["integrationId"]: i for i in instances["instances"]}
    rows = sorted(destinations["destinations"], key=lambda d: (str(d["name"]).casefold(), d["id"]))
    return render(
        request,
        "destinations.html",
        status_code=status_code,
        destinations=rows,
        source_names=source_names,
        function_names=function_names,
        instances=by_destination,
        sources=sources["sources"],
        types=TYPES,
        examples={k: _pretty(v) for k, v in CONFIG_EXAMPLES.items()},
        form=form or {"name": "", "type": "webhook", "config": _pretty(CONFIG_EXAMPLES["webhook"]), "sourceIds": []},
        problem=problem,
    )


async def destination_create(request: Request) -> Response:
    session = require_session(request)
    form = await read_form(request)
    await check_csrf(request, session, form)
    client = api(request, session)
    values = {
        "name": str(form.get("name") or "").strip(),
        "type": str(form.get("type") or "webhook"),
        "config": str(form.get("config") or ""),
        "sourceIds": [str(s) for s in form.getlist("sourceIds")],
    }
    try:
        if not values["name"]:
            raise FormProblem("Enter a name for the destination.", "name")
        config = _json_field(form, "config", "The config", default={}, kind=dict)
        body = {"name": values["name"], "type": values["type"], "config": config, "sourceIds": values["sourceIds"]}
        created = (await client.post("/destinations", body))["destination"]
    except (ApiProblem, FormProblem) as problem:
        if isinstance(problem, ApiProblem) and problem.status == 401:
            raise
        status = problem.status if isinstance(problem, ApiProblem) else 422
        return await _render_list(request, client, form=values, problem=_problem_dict(problem), status_code=status)
    session.flash(f"Created the destination {created['name']}.")
    return RedirectResponse(f"/destinations/{created['id']}", status_code=303)


# --- one destination -------------------------------------------------------------------------------


async def _instance_of(client: ConsoleApi, destination_id: str) -> dict[str, Any] | None:
    instances = (await client.get("/insert-function-instances", {"integrationId": destination_id}))["instances"]
    return dict(instances[0]) if instances else None


async def _render_detail(
    request: Request,
    client: ConsoleApi,
    destination_id: str,
    *,
    problems: dict[str, dict[str, Any]] | None = None,
    forms: dict[str, Any] | None = None,
    preview: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    destination = (await client.get(f"/destinations/{destination_id}"))["destination"]
    sources, instance, filters, functions = await _gather(
        client.get("/sources"),
        _optional(_instance_of(client, destination_id), None),
        _optional(client.get(f"/destination/{destination_id}/filters"), {"filters": []}),
        _optional(client.get("/functions"), {"functions": []}),
    )
    wanted = "DESTINATION" if destination["type"] == "function" else "INSERT_DESTINATION"
    all_functions = sorted(functions["functions"], key=lambda f: str(f["displayName"]).casefold())
    function = None
    if instance is not None:
        function = next((f for f in all_functions if f["id"] == instance["functionId"]), None)
        if function is None:
            function = (await _optional(client.get(f"/functions/{instance['functionId']}"), {"function": None}))[
                "function"
            ]
    forms = forms or {}
    source_names = {s["id"]: s["name"] for s in sources["sources"]}
    for f in filters["filters"]:
        f["actionsJson"] = json.dumps(f.get("actions", []), ensure_ascii=False)
    return render(
        request,
        "destinations_detail.html",
        status_code=status_code,
        destination=destination,
        type_label=TYPES.get(destination["type"], destination["type"]),
        sources=sources["sources"],
        source_names=source_names,
        config_json=forms.get("config", _pretty(destination["config"])),
        edit_name=forms.get("name", destination["name"]),
        edit_source_ids=forms.get("sourceIds", destination["sourceIds"]),
        instance=instance,
        function=function,
        settings_json=forms.get("settings", _pretty(instance["settings"]) if instance else "{}"),
        connect_functions=[f for f in all_functions if f.get("resourceType", "INSERT_DESTINATION") == wanted],
        connect=forms.get("connect", {"functionId": "", "settings": "{}", "enabled": False}),
        wanted_resource_type=wanted,
        filters=filters["filters"],
        filter_form=forms.get(
            "filter", {"title": "", "if": "", "actions": DEFAULT_ACTIONS, "payload": DEFAULT_PAYLOAD, "enabled": True}
        ),
        preview=preview,
        problems=problems or {},
    )


async def destination_page(request: Request) -> Response:
    session = require_session(request)
    return await _render_detail(request, api(request, session), request.path_params["destination_id"])


async def _form(request: Request) -> tuple[Session, FormData, ConsoleApi, str]:
    session = require_session(request)
    form = await read_form(request)
    await check_csrf(request, session, form)
    return session, form, api(request, session), request.path_params["destination_id"]


def _back(destination_id: str, anchor: str = "") -> Response:
    return RedirectResponse(f"/destinations/{destination_id}{anchor}", status_code=303)


async def destination_save(request: Request) -> Response:
    """Name, sources and config (masked secrets sent back keep the stored ones)."""
    session, form, client, did = await _form(request)
    values = {
        "name": str(form.get("name") or "").strip(),
        "config": str(form.get("config") or ""),
        "sourceIds": [str(s) for s in form.getlist("sourceIds")],
    }
    try:
        config = _json_field(form, "config", "The config", default={}, kind=dict)
        body: dict[str, Any] = {"config": config, "sourceIds": values["sourceIds"]}
        if values["name"]:
            body["name"] = values["name"]
        await client.patch(f"/destinations/{did}", body)
    except (ApiProblem, FormProblem) as problem:
        if isinstance(problem, ApiProblem):
            _reraise(problem)
        status = problem.status if isinstance(problem, ApiProblem) else 422
        problems = {"config": _problem_dict(problem)}
        return await _render_detail(request, client, did, problems=problems, forms=values, status_code=status)
    session.flash("Saved the destination.")
    return _back(did)


async def destination_enabled(request: Request) -> Response:
    """The Enable / Disable toggle: ``enabled=true|false`` is the state asked for."""
    session, form, client, did = await _form(request)
    enabled = _bool(form, "enabled")
    try:
        saved = (await client.patch(f"/destinations/{did}", {"enabled": enabled}))["destination"]
    except ApiProblem as problem:
        _reraise(problem)
        session.flash(f"Not changed: {problem.message}", "error")
    else:
        session.flash(f"{saved['name']} is {'enabled' if saved['enabled'] else 'disabled'}.")
    return _back(did)


async def destination_delete(request: Request) -> Response:
    session, _form_data, client, did = await _form(request)
    try:
        await client.delete(f"/destinations/{did}")
    except ApiProblem as problem:
        _reraise(problem)
        session.flash(f"Not deleted: {problem.message}", "error")
        return _back(did)
    session.flash("Deleted the destination, its insert function instance and its filters.")
    return RedirectResponse("/destinations", status_code=303)


# --- its insert function instance --------------------------------------------------------------------


async def instance_connect(request: Request) -> Response:
    session, form, client, did = await _form(request)
    connect = {
        "functionId": str(form.get("functionId") or ""),
        "settings": str(form.get("settings") or "{}"),
        "enabled": _bool(form, "enabled"),
    }
    try:
        if not connect["functionId"]:
            raise FormProblem("Choose a function to connect.", "functionId")
        settings = _json_field(form, "settings", "The settings", default={}, kind=dict)
        body = {"functionId": connect["functionId"], "integrationId": did, "settings": settings}
        body["enabled"] = connect["enabled"]
        created = (await client.post("/insert-function-instances", body))["instance"]
    except (ApiProblem, FormProblem) as problem:
        if isinstance(problem, ApiProblem):
            _reraise(problem)
        status = problem.status if isinstance(problem, ApiProblem) else 422
        problems = {"connect": _problem_dict(problem)}
        forms = {"connect": connect}
        return await _render_detail(request, client, did, problems=problems, forms=forms, status_code=status)
    state = "enabled" if created["enabled"] else "connected (disabled: enable it to run it)"
    session.flash(f"Connected {created['name']}: {state}.")
    return _back(did, "#instance")


async def _require_instance(client: ConsoleApi, did: str) -> dict[str, Any]:
    instance = await _instance_of(client, did)
    if instance is None:
        raise ApiProblem(404, [{"type": "not_found", "message": "this destination has no insert function instance"}])
    return instance


async def instance_settings(request: Request) -> Response:
    session, form, client, did = await _form(request)
    text = str(form.get("settings") or "{}")
    try:
        instance = await _require_instance(client, did)
        settings = _json_field(form, "settings", "The settings", default={}, kind=dict)
        await client.patch(f"/insert-function-instances/{instance['id']}", {"settings": settings})
    except (ApiProblem, FormProblem) as problem:
        if isinstance(problem, ApiProblem):
            _reraise(problem)
        status = problem.status if isinstance(problem, ApiProblem) else 422
        problems = {"instance": _problem_dict(problem)}
        return await _render_detail(
            request, client, did, problems=problems, forms={"settings": text}, status_code=status
        )
    session.flash("Saved the instance's settings.")
    return _back(did, "#instance")


async def instance_enabled(request: Request) -> Response:
    session, form, client, did = await _form(request)
    enabled = _bool(form, "enabled")
    try:
        instance = await _require_instance(client, did)
        saved = (await client.patch(f"/insert-function-instances/{instance['id']}", {"enabled": enabled}))["instance"]
    except ApiProblem as problem:
        _reraise(problem)
        session.flash(f"Not changed: {problem.message}", "error")
    else:
        session.flash(f"The insert function {saved['name']} is {'enabled' if saved['enabled'] else 'disabled'}.")
    return _back(did, "#instance")


async def instance_delete(request: Request) -> Response:
    session, _form_data, client, did = await _form(request)
    try:
        instance = await _require_instance(client, did)
        await client.delete(f"/insert-function-instances/{instance['id']}")
    except ApiProblem as problem:
        _reraise(problem)
        session.flash(f"Not disconnected: {problem.message}", "error")
    else:
        session.flash("Disconnected the insert function.")
    return _back(did, "#instance")


# --- filters -----------------------------------------------------------------------------------------


async def filter_create(request: Request) -> Response:
    """Add a filter (``action=create``) or preview it on the payload (``action=preview``)."""
    session, form, client, did = await _form(request)
    values = {
        "title": str(form.get("title") or "").strip(),
        "if": str(form.get("if") or "").strip(),
        "actions": str(form.get("actions") or ""),
        "payload": str(form.get("payload") or ""),
        "enabled": "enabled" in form,
    }
    previewing = form.get("action") == "preview"
    preview: dict[str, Any] | None = None
    try:
        actions = _json_field(form, "actions", "The actions", default=[], kind=list)
        if previewing:
            payload = _json_field(form, "payload", "The payload", default={}, kind=dict)
            body = {"filter": {"if": values["if"], "actions": actions}, "payload": payload}
            result = await client.post("/destination/filters/preview", body)
            preview = {
                "result": _pretty(result.get("result")) if result.get("result") is not None else None,
                "reason": result.get("reason"),
                "dropped": result.get("result") is None,
            }
        else:
            body = {"if": values["if"], "actions": actions, "title": values["title"], "enabled": values["enabled"]}
            created = (await client.post(f"/destination/{did}/filters", body))["filter"]
    except (ApiProblem, FormProblem) as problem:
        if isinstance(problem, ApiProblem):
            _reraise(problem)
        status = problem.status if isinstance(problem, ApiProblem) else 422
        problems = {"filter": _problem_dict(problem)}
        if problems["filter"]["position"] is not None and values["if"]:
            problems["filter"]["caret"] = _caret(str(values["if"]), problems["filter"]["position"])
        return await _render_detail(
            request, client, did, problems=problems, forms={"filter": values}, status_code=status
        )
    if previewing:
        return await _render_detail(request, client, did, forms={"filter": values}, preview=preview)
    session.flash(f"Added the filter {created['title'] or created['id']}.")
    return _back(did, "#filters")


async def filter_enabled(request: Request) -> Response:
    session, form, client, did = await _form(request)
    filter_id = request.path_params["filter_id"]
    enabled = _bool(form, "enabled")
    try:
        saved = (await client.patch(f"/destination/{did}/filters/{filter_id}", {"enabled": enabled}))["filter"]
    except ApiProblem as problem:
        _reraise(problem)
        session.flash(f"Not changed: {problem.message}", "error")
    else:
        session.flash(f"The filter {saved['title'] or saved['id']} is {'enabled' if saved['enabled'] else 'disabled'}.")
    return _back(did, "#filters")


async def filter_delete(request: Request) -> Response:
    session, _form_data, client, did = await _form(request)
    filter_id = request.path_params["filter_id"]
    try:
        await client.delete(f"/destination/{did}/filters/{filter_id}")
    except ApiProblem as problem:
        _reraise(problem)
        session.flash(f"Not deleted: {problem.message}", "error")
    else:
        session.flash("Deleted the filter.")
    return _back(did, "#filters")


routes: list[BaseRoute] = [
    Route("/destinations", destinations_list, methods=["GET"]),
    Route("/destinations", destination_create, methods=["POST"]),
    Route("/destinations/{destination_id}", destination_page, methods=["GET"]),
    Route("/destinations/{destination_id}", destination_save, methods=["POST"]),
    Route("/destinations/{destination_id}/enabled", destination_enabled, methods=["POST"]),
    Route("/destinations/{destination_id}/delete", destination_delete, methods=["POST"]),
    Route("/destinations/{destination_id}/instance", instance_connect, methods=["POST"]),
    Route("/destinations/{destination_id}/instance/settings", instance_settings, methods=["POST"]),
    Route("/destinations/{destination_id}/instance/enabled", instance_enabled, methods=["POST"]),
    Route("/destinations/{destination_id}/instance/delete", instance_delete, methods=["POST"]),
    Route("/destinations/{destination_id}/filters", filter_create, methods=["POST"]),
    Route("/destinations/{destination_id}/filters/{filter_id}/enabled", filter_enabled, methods=["POST"]),
    Route("/destinations/{destination_id}/filters/{filter_id}/delete", filter_delete, methods=["POST"]),
]
