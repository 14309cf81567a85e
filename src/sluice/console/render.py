"""Rendering and the helpers every page uses: the session, CSRF, forms, permissions, the API.

Pattern: a page calls ``session = require_session(request)`` (raises :class:`LoginRequired`,
which the console app turns into a redirect to ``/login?next=…``), ``await check_csrf(...)`` on
every state-changing request (raises :class:`CsrfFailed` → a 403 page), and
``api(request, session)`` for data. An :class:`~sluice.console.api_client.ApiProblem` that a page
does not handle itself becomes an error page with the API's status and message (a 401 — the
token was revoked — signs the user out).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp

from sluice.console.api_client import ConsoleApi
from sluice.console.session import COOKIE, Session, Sessions

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
MAX_FORM_BYTES = 2 * 1024 * 1024

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
}

env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.policies["json.dumps_kwargs"] = {"sort_keys": False}  # sample events keep their natural order


class LoginRequired(Exception):
    """No (valid) session: the console app redirects to ``/login?next=<path>``."""

    def __init__(self, next_path: str = "/functions") -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfFailed(Exception):
    """A state-changing request without the session's CSRF token: a 403 page."""


@dataclass(frozen=True, slots=True)
class Can:
    """What the signed-in token's roles allow (mirrors sluice.catalog.access; the API decides)."""

    roles: frozenset[str]
    function_ids: frozenset[str] | None  # None = all functions

    @classmethod
    def from_me(cls, me: dict[str, Any] | None) -> Can:
        me = me or {}
        ids = me.get("functionIds")
        return cls(frozenset(me.get("roles") or ()), frozenset(ids) if ids is not None else None)

    @property
    def owner(self) -> bool:
        return "WORKSPACE_OWNER" in self.roles

    @property
    def edit_functions(self) -> bool:
        """Edit (some) functions; see :meth:`edit_function` for one."""
        return self.owner or "FUNCTIONS_ADMIN" in self.roles

    @property
    def create_functions(self) -> bool:
        return self.owner or ("FUNCTIONS_ADMIN" in self.roles and self.function_ids is None)

    @property
    def deploy(self) -> bool:
        return self.owner or {"FUNCTIONS_ADMIN", "SOURCE_ADMIN"} <= self.roles

    @property
    def preview(self) -> bool:
        return self.edit_functions

    @property
    def manage_connections(self) -> bool:
        return self.owner or "SOURCE_ADMIN" in self.roles

    @property
    def read_audit(self) -> bool:
        return self.owner

    def covers(self, function_id: str) -> bool:
        return self.function_ids is None or function_id in self.function_ids

    def edit_function(self, function_id: str) -> bool:
        return self.owner or ("FUNCTIONS_ADMIN" in self.roles and self.covers(function_id))

    def deploy_function(self, function_id: str) -> bool:
        return self.owner or (self.edit_function(function_id) and "SOURCE_ADMIN" in self.roles)


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def current_session(request: Request) -> Session | None:
    return sessions_of(request).get(request.cookies.get(COOKIE))


def require_session(request: Request) -> Session:
    session = current_session(request)
    if session is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(path if request.method == "GET" else "/functions")
    return session


def api(request: Request, session: Session) -> ConsoleApi:
    api_app: ASGIApp = request.app.state.api_app
    return ConsoleApi(api_app, session.token)


async def read_form(request: Request) -> FormData:
    """An ``application/x-www-form-urlencoded`` body (the console's forms post nothing else)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return FormData()
    pairs: list[tuple[str, str | UploadFile]] = list(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return FormData(pairs)


async def check_csrf(request: Request, session: Session, form: FormData | None = None) -> None:
    """Forms send the hidden ``csrf`` field, ``fetch()`` calls the ``X-CSRF-Token`` header."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and form is not None:
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise CsrfFailed()


def safe_next(value: str | None, default: str = "/functions") -> str:
    """Only a path on this site (no scheme, no host, no ``//`` or backslash tricks)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in value):
        return default
    return value


def login_url(next_path: str) -> str:
    return "/login?next=" + quote(safe_next(next_path), safe="/")


def render(request: Request, name: str, *, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    session: Session | None = ctx.pop("session", None) or current_session(request)
    me = session.me if session is not None else None
    context = {
        "request": request,
        "session": session,
        "me": me,
        "can": Can.from_me(me),
        "csrf": session.csrf if session is not None else "",
        "flash": session.pop_flashes() if session is not None else [],
        "path": request.url.path,
        **ctx,
    }
    html = env.get_template(name).render(context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
