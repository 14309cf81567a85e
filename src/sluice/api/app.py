"""The HTTP application: the control-plane API under ``/api`` (OpenAPI at ``/api/openapi.json``).

Every error is ``{"errors": [{"type", "message", "field"?}]}``; bad input is never a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sluice import __version__
from sluice.api import routes_admin, routes_delivery, routes_filters, routes_functions
from sluice.catalog.service import Catalog
from sluice.delivery.recorder import DeliveryRecorder
from sluice.errors import ApiError, RateLimited
from sluice.ingest.stats import IngestStats
from sluice.queue.base import EventLog, QueueError

log = logging.getLogger("sluice.api")

HTTP_TYPES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


def _errors(status: int, items: list[dict[str, Any]], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": items}, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, RateLimited) else None
    return _errors(exc.status, [exc.to_dict()], headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    items = []
    for error in exc.errors():
        message = str(error.get("msg", "invalid value"))
        field = _field(error.get("loc", ()))
        if error.get("type") == "json_invalid":
            message = f"the body is not valid JSON: {error.get('ctx', {}).get('error', message)}"
            field = "body"
        elif error.get("type") == "extra_forbidden":
            message = "unknown field"
        items.append({"type": "validation_error", "message": message, "field": field})
    return _errors(422, items)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # a body that cannot be parsed at all (e.g. not UTF-8): bad input like any other
        return _errors(
            422, [{"type": "validation_error", "message": f"the body cannot be read: {exc.detail}", "field": "body"}]
        )
    kind = HTTP_TYPES.get(exc.status_code, "error")
    return _errors(exc.status_code, [{"type": kind, "message": str(exc.detail)}], dict(exc.headers or {}))


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    """A value the database cannot store (a NUL character, an integer beyond 64 bits): bad input."""
    log.info(
        "refused a value the database cannot store on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    message = "a value cannot be stored (text with NUL characters, or a number out of range)"
    return _errors(422, [{"type": "validation_error", "message": message, "field": "body"}])


async def _queue_error(request: Request, exc: Exception) -> JSONResponse:
    """The event log failed (NATS unreachable, a storage error): the request may be retried."""
    log.warning("the event log failed on %s %s: %s", request.method, request.url.path, exc)
    response = _errors(503, [{"type": "queue_unavailable", "message": f"the event log is unavailable: {exc}"}])
    response.headers["Retry-After"] = "1"
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _errors(500, [{"type": "internal_error", "message": "internal error; see the server log"}])


def create_api(
    catalog: Catalog,
    *,
    recorder: DeliveryRecorder | None = None,
    event_log: EventLog | None = None,
    ingest_stats: IngestStats | None = None,
) -> FastAPI:
    """The control plane. ``recorder``/``event_log``: the pipeline's, when this process runs one
    (the tail, dead-letter, replay and queue routes answer 503 without them); ``ingest_stats``:
    the counters of the Tracking API served by this process (``GET /sources/{id}/ingest``)."""
    api = FastAPI(
        title="sluice control plane",
        version=__version__,
        description="Functions, versions, deploy, insert-function instances, sources, destinations, tokens, audit.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    api.state.catalog = catalog
    api.state.recorder = recorder
    api.state.event_log = event_log
    api.state.ingest_stats = ingest_stats
    api.include_router(routes_functions.router)
    api.include_router(routes_admin.router)
    api.include_router(routes_delivery.router)
    api.include_router(routes_filters.router)
    api.add_exception_handler(ApiError, _api_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.add_exception_handler(DataError, _data_error)
    api.add_exception_handler(OverflowError, _data_error)
    api.add_exception_handler(QueueError, _queue_error)
    api.add_exception_handler(Exception, _unexpected)
    return api


def create_app(
    catalog: Catalog,
    *,
    recorder: DeliveryRecorder | None = None,
    event_log: EventLog | None = None,
    ingest_stats: IngestStats | None = None,
) -> FastAPI:
    """The whole server: ``/api`` now; ingest and the console mount here as they arrive."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.catalog = catalog
    app.mount("/api", create_api(catalog, recorder=recorder, event_log=event_log, ingest_stats=ingest_stats))

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.add_exception_handler(StarletteHTTPException, _http_error)
    return app
