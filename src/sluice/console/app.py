"""The console's Starlette app and the route that puts it in front of the Tracking API."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from sluice.console import pages_auth, pages_delivery, pages_destinations, pages_functions
from sluice.console.api_client import ApiProblem
from sluice.console.render import STATIC, CsrfFailed, LoginRequired, current_session, login_url, render
from sluice.console.session import COOKIE, MemorySessions, Sessions

__all__ = ["ConsoleRoute", "console_route", "create_console"]


async def _home(request: Request) -> Response:
    return RedirectResponse("/functions" if current_session(request) else "/login", status_code=303)


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(login_url(exc.next_path), status_code=303)


async def _csrf_failed(request: Request, exc: Exception) -> Response:
    message = "The form was sent without a valid CSRF token. Reload the page and try again."
    return render(request, "error.html", status_code=403, title="Forbidden", messages=[message])


async def _api_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiProblem)
    if exc.status == 401:  # the token was revoked: sign out
        request.app.state.sessions.drop(request.cookies.get(COOKIE))
        response = RedirectResponse(login_url(request.url.path), status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response
    titles = {403: "Forbidden", 404: "Not found", 409: "Conflict", 422: "Invalid request", 429: "Too many requests"}
    messages = [str(e.get("message", "")) for e in exc.errors]
    return render(
        request, "error.html", status_code=exc.status, title=titles.get(exc.status, "Error"), messages=messages
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    return render(request, "error.html", status_code=404, title="Not found", messages=["No such page."])


def create_console(api_app: ASGIApp, sessions: Sessions | None = None) -> Starlette:
    """The console; ``api_app`` serves the public API under ``/api`` (called in-process).

    ``sessions``: where sign-ins live; ``sluice serve`` passes the catalog's
    (:class:`sluice.catalog.sessions.ConsoleSessions`, shared by every API process). Without it,
    a :class:`~sluice.console.session.MemorySessions` of this process only.
    """
    routes: list[BaseRoute] = [
        Route("/", _home, methods=["GET"]),
        *pages_auth.routes,
        *pages_functions.routes,
        *pages_destinations.routes,
        *pages_delivery.routes,
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]
    console = Starlette(
        routes=routes,
        exception_handlers={
            LoginRequired: _login_required,
            CsrfFailed: _csrf_failed,
            ApiProblem: _api_problem,
            404: _not_found,
        },
    )
    console.state.api_app = api_app
    console.state.sessions = sessions if sessions is not None else MemorySessions()
    return console


class ConsoleRoute(BaseRoute):
    """Matches exactly the console's own routes (so ``/v1/*`` still reaches the Tracking API
    mounted at ``/`` after it) and hands them to the console app, with its error handlers."""

    def __init__(self, console: Starlette) -> None:
        self.console = console

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        for route in self.console.router.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:
                return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        return self.console.router.url_path_for(name, **path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.console(scope, receive, send)


def console_route(api_app: ASGIApp, sessions: Sessions | None = None) -> ConsoleRoute:
    """The route to insert in ``sluice serve``'s app before its final ``Mount("/", ingest)``."""
    return ConsoleRoute(create_console(api_app, sessions))
