"""Sign in with an API token, sign out.

The token is checked with ``GET /api/me``; on success the server keeps it in a session (in the
catalog database under ``sluice serve``, the token sealed: :mod:`sluice.catalog.sessions`) and
the browser gets only the session id (cookie ``sluice_session``: HttpOnly, SameSite=Strict,
Path=/, Secure over https). Signing out deletes the session for every API process. The login
form itself is protected against login CSRF by a double-submit cookie.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sluice.console.api_client import ApiProblem, ConsoleApi
from sluice.console.render import (
    CsrfFailed,
    check_csrf,
    current_session,
    read_form,
    render,
    require_session,
    safe_next,
    sessions_of,
)
from sluice.console.session import COOKIE

LOGIN_CSRF_COOKIE = "sluice_login_csrf"
MAX_AGE_S = 12 * 3600


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_page(request: Request, next_path: str, error: str | None = None, status_code: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        request, "login.html", status_code=status_code, next=next_path, error=error, login_csrf=token, session=None
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login", secure=_secure(request)
    )
    return response


async def login_form(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    if current_session(request) is not None:
        return RedirectResponse(next_path, status_code=303)
    return _login_page(request, next_path)


async def login(request: Request) -> Response:
    form = await read_form(request)
    next_path = safe_next(str(form.get("next") or ""))
    sent = str(form.get("csrf") or "")
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfFailed()
    token = str(form.get("token") or "").strip()
    if not token:
        return _login_page(request, next_path, "Enter an API token.", status_code=400)
    try:
        me = (await ConsoleApi(request.app.state.api_app, token).get("/me"))["me"]
    except ApiProblem as problem:
        if problem.status == 401:
            return _login_page(request, next_path, "This token is unknown or revoked.", status_code=401)
        return _login_page(request, next_path, problem.message, status_code=problem.status)
    sessions = sessions_of(request)
    sessions.drop(request.cookies.get(COOKIE))
    session = sessions.create(token, me)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        COOKIE, session.sid, max_age=MAX_AGE_S, httponly=True, samesite="strict", path="/", secure=_secure(request)
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


async def logout(request: Request) -> Response:
    session = require_session(request)
    await check_csrf(request, session, await read_form(request))
    sessions_of(request).drop(session.sid)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


routes: list[BaseRoute] = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
