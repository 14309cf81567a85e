"""A destination's Event Delivery page: counts, charts, the error table with samples, the queue
and Replay, kept live by ``static/delivery.js`` polling ``/destinations/{id}/delivery.json``.

Every read goes through the public API; Replay checks the session's CSRF token.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sluice.console.api_client import ApiProblem, ConsoleApi
from sluice.console.pages_destinations import TYPES, _gather, _optional, _pretty, _reraise
from sluice.console.render import CsrfFailed, api, check_csrf, current_session, read_form, render, require_session

__all__ = ["routes"]

WINDOWS: dict[str, str] = {"10m": "Last 10 minutes", "1h": "Last hour", "24h": "Last 24 hours", "7d": "Last 7 days"}
DEFAULT_WINDOW = "1h"
OUTCOME_CLASSES: dict[str, str] = {
    "delivered": "delivered",
    "retrying": "retrying",
    "timeout": "retrying",
    "filtered": "filtered",
    "dropped": "filtered",
}
CLASS_LABELS: dict[str, str] = {"notDelivered": "Not delivered", "retrying": "Retrying", "filtered": "Filtered"}


# --- Event Delivery ----------------------------------------------------------------------------------


def _window(request: Request) -> str:
    window = request.query_params.get("window", DEFAULT_WINDOW)
    return window if window in WINDOWS else DEFAULT_WINDOW


def error_rows(delivery: dict[str, Any]) -> list[dict[str, Any]]:
    """The error table: every outcome but ``delivered`` by reason code, with its samples."""
    rows: list[dict[str, Any]] = []
    for item in delivery.get("outcomes", []):
        outcome = str(item["outcome"])
        if outcome == "delivered":
            continue
        cls = OUTCOME_CLASSES.get(outcome, "notDelivered")
        samples = [
            s for s in delivery.get("samples", []) if s["outcome"] == outcome and s["reasonCode"] == item["reasonCode"]
        ]
        rows.append(
            {
                "outcome": outcome,
                "reasonCode": item["reasonCode"],
                "count": int(item["count"]),
                "class": cls,
                "classLabel": CLASS_LABELS[cls],
                "key": f"{outcome}:{item['reasonCode']}",
                "samples": samples,
            }
        )
    return rows


async def _delivery_state(client: ConsoleApi, destination_id: str, window: str) -> dict[str, Any]:
    """What the page shows and ``delivery.json`` answers: the API's delivery view, the queue
    (``null`` where this process runs no pipeline) and the number of expired dead letters."""
    delivery, queue, expired = await _gather(
        client.get(f"/destinations/{destination_id}/delivery", {"window": window}),
        _optional(client.get(f"/destinations/{destination_id}/queue"), {"queue": None}),
        _optional(
            client.get(f"/destinations/{destination_id}/dead-letters", {"status": "expired", "limit": 1000}),
            {"deadLetters": None},
        ),
    )
    dead = expired["deadLetters"]
    return {
        "window": window,
        "delivery": delivery["delivery"],
        "queue": queue["queue"],
        "expired": len(dead) if dead is not None else None,
        "expiredMore": dead is not None and len(dead) >= 1000,
    }


def _pretty_sample(sample: dict[str, Any]) -> dict[str, str]:
    """A sample's parts as indented JSON ("—" for nothing), for the server-rendered table."""

    def text(value: Any) -> str:
        return "—" if value is None or value == [] or value == {} else _pretty(value)

    return {
        "event": _pretty(sample.get("event")),
        "request": text(sample.get("request")),
        "response": text(sample.get("response")),
        "requests": text(sample.get("requests")),
    }


def _script_json(value: Any) -> str:
    """JSON to put inside ``<script type="application/json">`` (no ``<``, ``>`` or ``&`` in it)."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


async def delivery_page(request: Request) -> Response:
    session = require_session(request)
    client = api(request, session)
    did = request.path_params["destination_id"]
    window = _window(request)
    destination = (await client.get(f"/destinations/{did}"))["destination"]
    state = await _delivery_state(client, did, window)
    rows = error_rows(state["delivery"])
    for row in rows:
        row["samples"] = [{**sample, "pretty": _pretty_sample(sample)} for sample in row["samples"]]
    return render(
        request,
        "delivery.html",
        destination=destination,
        type_label=TYPES.get(destination["type"], destination["type"]),
        window=window,
        windows=WINDOWS,
        delivery=state["delivery"],
        queue=state["queue"],
        expired=state["expired"],
        expired_more=state["expiredMore"],
        rows=rows,
        state_json=_script_json(state),
    )


def _json_error(status: int, message: str, kind: str = "error") -> JSONResponse:
    return JSONResponse({"errors": [{"type": kind, "message": message}]}, status_code=status)


async def delivery_json(request: Request) -> Response:
    """The live data of the Event Delivery page (``static/delivery.js`` polls it every 5 s)."""
    session = current_session(request)
    if session is None:
        return _json_error(401, "your session has ended: sign in again", "unauthorized")
    client = api(request, session)
    try:
        state = await _delivery_state(client, request.path_params["destination_id"], _window(request))
    except ApiProblem as problem:
        return JSONResponse({"errors": problem.errors}, status_code=problem.status)
    # the rows without their samples (delivery.js takes them from ``delivery.samples``)
    state["rows"] = [{k: v for k, v in row.items() if k != "samples"} for row in error_rows(state["delivery"])]
    return JSONResponse(state, headers={"Cache-Control": "no-store"})


async def queue_json(request: Request) -> Response:
    """The destination's queue (Replay's progress polls it)."""
    session = current_session(request)
    if session is None:
        return _json_error(401, "your session has ended: sign in again", "unauthorized")
    try:
        queue = await api(request, session).get(f"/destinations/{request.path_params['destination_id']}/queue")
    except ApiProblem as problem:
        return JSONResponse({"errors": problem.errors}, status_code=problem.status)
    return JSONResponse({"queue": queue["queue"]}, headers={"Cache-Control": "no-store"})


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


async def replay(request: Request) -> Response:
    """Replay the expired dead letters: ``fetch`` (``X-CSRF-Token``) gets JSON with the backlog
    before the replay (for the progress), a plain form post a redirect with a message."""
    did = request.path_params["destination_id"]
    as_json = _wants_json(request)
    session = current_session(request)
    if session is None:
        if as_json:
            return _json_error(401, "your session has ended: sign in again", "unauthorized")
        session = require_session(request)
    if as_json:
        try:
            await check_csrf(request, session)
        except CsrfFailed:
            return _json_error(403, "missing or wrong CSRF token: reload the page", "forbidden")
    else:
        await check_csrf(request, session, await read_form(request))
    client = api(request, session)
    before = await _optional(client.get(f"/destinations/{did}/queue"), {"queue": None})
    backlog = int(before["queue"]["backlog"]) if before["queue"] is not None else 0
    try:
        replayed = int((await client.post(f"/destinations/{did}/replay", {"status": "expired"}))["replay"]["replayed"])
    except ApiProblem as problem:
        if as_json:
            return JSONResponse({"errors": problem.errors}, status_code=problem.status)
        _reraise(problem)
        session.flash(f"Replay refused: {problem.message}", "error")
        return RedirectResponse(f"/destinations/{did}/delivery", status_code=303)
    if as_json:
        return JSONResponse({"replay": {"replayed": replayed, "backlogBefore": backlog}})
    if replayed:
        session.flash(
            f"Re-queued {replayed} expired event{'s' if replayed != 1 else ''}: they are delivered again now."
        )
    else:
        session.flash("There were no expired events to replay.", "info")
    return RedirectResponse(f"/destinations/{did}/delivery", status_code=303)


routes: list[BaseRoute] = [
    Route("/destinations/{destination_id}/delivery", delivery_page, methods=["GET"]),
    Route("/destinations/{destination_id}/delivery.json", delivery_json, methods=["GET"]),
    Route("/destinations/{destination_id}/queue.json", queue_json, methods=["GET"]),
    Route("/destinations/{destination_id}/replay", replay, methods=["POST"]),
]
