"""Talking to a running sluice from the CLI: saved profiles and a small synchronous API client.

Profiles live in ``$SLUICE_CONFIG_DIR/profiles.json`` (default ``~/.config/sluice/``), mode 0600::

    {"default": "local", "profiles": {"local": {"url": "http://127.0.0.1:8000", "token": "slc_..."}}}

A remote command uses ``--profile NAME`` or the default profile; ``SLUICE_URL`` and
``SLUICE_TOKEN`` in the environment take precedence over the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sluice import __version__
from sluice.cli.fn_cmd import CliUsage

if TYPE_CHECKING:  # httpx is imported when a command talks to a server: the others start faster
    import httpx

EXIT_FAILED = 1
DEFAULT_PROFILE = "default"
PROFILES_FILE = "profiles.json"
TIMEOUT_S = 30.0


class RemoteError(click.ClickException):
    """The server refused a request, or could not be reached: messages on stderr, exit 1."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, errors: Iterable[Mapping[str, Any]] = (), status: int | None = None) -> None:
        super().__init__(message)
        self.errors = list(errors)
        self.status = status

    def format_message(self) -> str:
        lines = [self.message]
        for item in self.errors:
            field = item.get("field")
            text = str(item.get("message", "")) or str(item.get("type", "error"))
            lines.append(f"  {field}: {text}" if field else f"  {text}")
        return "\n".join(lines)


# --- profiles ------------------------------------------------------------------------------------


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    raw = env.get("SLUICE_CONFIG_DIR")
    return Path(raw).expanduser() if raw else Path.home() / ".config" / "sluice"


def normalize_url(url: str) -> str:
    """``http://host:8000``, ``http://host:8000/`` and ``http://host:8000/api`` are the same server."""
    url = url.strip().rstrip("/")
    if url.endswith("/api"):
        url = url[: -len("/api")]
    if not url.startswith(("http://", "https://")):
        raise CliUsage(f"URL must start with http:// or https://, got {url!r}")
    return url


@dataclass(frozen=True, slots=True)
class Remote:
    url: str  # the server's base URL; the API is under ``/api``
    token: str
    profile: str | None = None  # None when it came from SLUICE_URL/SLUICE_TOKEN


class ProfileStore:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory if directory is not None else config_dir()
        self.path = self.directory / PROFILES_FILE

    def load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"default": None, "profiles": {}}
        except OSError as exc:
            raise click.ClickException(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise click.ClickException(f"{self.path} is not valid JSON (line {exc.lineno}): {exc.msg}") from None
        profiles = data.get("profiles") if isinstance(data, dict) else None
        if not isinstance(profiles, dict):
            raise click.ClickException(
                f'{self.path}: expected {{"default": NAME, "profiles": {{NAME: {{url, token}}}}}}'
            )
        return {"default": data.get("default"), "profiles": profiles}

    def save(self, data: Mapping[str, Any]) -> None:
        """Write atomically, readable by the owner only (it holds tokens)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_name(f".{PROFILES_FILE}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=2)
                out.write("\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except OSError as exc:
            raise click.ClickException(f"cannot write {self.path}: {exc.strerror}") from None

    def put(self, name: str, url: str, token: str, *, make_default: bool) -> bool:
        """Store a profile; returns whether it is now the default."""
        data = self.load()
        data["profiles"][name] = {"url": url, "token": token}
        if make_default or not data.get("default") or data["default"] not in data["profiles"]:
            data["default"] = name
        self.save(data)
        return bool(data["default"] == name)

    def get(self, name: str | None) -> Remote | None:
        data = self.load()
        chosen = name or data.get("default")
        if not chosen:
            return None
        entry = data["profiles"].get(chosen)
        if entry is None:
            if name is None:
                return None
            known = ", ".join(sorted(data["profiles"])) or "none"
            raise CliUsage(f"no profile named {name!r} in {self.path} (profiles: {known}); run 'sluice login'")
        url = entry.get("url") if isinstance(entry, dict) else None
        token = entry.get("token") if isinstance(entry, dict) else None
        if not isinstance(url, str) or not isinstance(token, str):
            raise click.ClickException(
                f"{self.path}: profile {chosen!r} needs a url and a token; run 'sluice login' again"
            )
        return Remote(url, token, chosen)


def resolve_remote(profile: str | None, env: Mapping[str, str] | None = None) -> Remote:
    """The server to talk to: ``SLUICE_URL``/``SLUICE_TOKEN`` over ``--profile`` over the default."""
    env = os.environ if env is None else env
    env_url, env_token = env.get("SLUICE_URL") or None, env.get("SLUICE_TOKEN") or None
    saved = None
    if not (env_url and env_token):
        saved = ProfileStore(config_dir(env)).get(profile)
    url = env_url or (saved.url if saved else None)
    token = env_token or (saved.token if saved else None)
    if not url or not token:
        missing = "SLUICE_URL" if not url else "SLUICE_TOKEN"
        raise CliUsage(
            f"not logged in ({missing} is not set and no saved profile has it): "
            "run 'sluice login URL --token TOKEN', or set SLUICE_URL and SLUICE_TOKEN"
        )
    # ``profile`` names where the token came from (error messages); None: SLUICE_TOKEN.
    return Remote(normalize_url(url), token, saved.profile if saved and not env_token else None)


# --- the API client ------------------------------------------------------------------------------


class ApiClient:
    """Synchronous JSON calls to ``<url>/api``; returns the ``data`` object or raises RemoteError."""

    def __init__(self, remote: Remote, *, timeout_s: float = TIMEOUT_S, transport: httpx.BaseTransport | None = None):
        import httpx

        self.remote = remote
        self._http = httpx.Client(
            base_url=remote.url + "/api",
            headers={"Authorization": f"Bearer {remote.token}", "User-Agent": f"sluice-cli/{__version__}"},
            timeout=timeout_s,
            transport=transport,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, json_body: Any = None, params: Mapping[str, str] | None = None) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, json=json_body, params=dict(params) if params else None)
        except httpx.TimeoutException:
            raise RemoteError(f"sluice at {self.remote.url} did not answer {method} /api{path} in time") from None
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach sluice at {self.remote.url}: {exc}") from None
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success:
            if not isinstance(body, dict) or "data" not in body:
                raise RemoteError(
                    f"unexpected answer from {self.remote.url} to {method} /api{path} "
                    f"(HTTP {response.status_code}); is this a sluice server?"
                )
            return body["data"]
        errors = body.get("errors") if isinstance(body, dict) else None
        if not isinstance(errors, list) or not all(isinstance(e, dict) for e in errors):
            errors = [{"type": "error", "message": response.text[:300] or response.reason_phrase}]
        raise RemoteError(_headline(response.status_code, method, path, self.remote), errors, response.status_code)

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json_body=body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json_body=body)


def _headline(status: int, method: str, path: str, remote: Remote) -> str:
    where = f"{method} /api{path}"
    if status == 401:
        source = f"profile {remote.profile!r}" if remote.profile else "SLUICE_TOKEN"
        return f"{remote.url} refused the token ({source}); log in again with 'sluice login' ({where}: HTTP 401)"
    if status == 403:
        return f"the token is not allowed to do this ({where}: HTTP 403)"
    if status == 404:
        return f"not found ({where}: HTTP 404)"
    if status == 422:
        return f"the server rejected the request ({where}: HTTP 422)"
    if status == 429:
        return f"too many requests; try again shortly ({where}: HTTP 429)"
    return f"{where} failed: HTTP {status}"


def find_one(items: list[dict[str, Any]], name: str, *, kind: str, name_field: str, where: str) -> dict[str, Any]:
    """The item whose id is ``name``, else the one whose ``name_field`` is ``name`` (exactly one)."""
    for item in items:
        if item["id"] == name:
            return item
    matches = [item for item in items if item[name_field] == name]
    if not matches:
        names = [repr(item[name_field]) for item in items]
        known = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "") or "none"
        raise RemoteError(f"no {kind} named {name!r} (or with that id) at {where} ({kind}s: {known})")
    if len(matches) > 1:
        ids = ", ".join(item["id"] for item in matches)
        raise RemoteError(f"{len(matches)} {kind}s are named {name!r} ({ids}); give the id instead")
    return matches[0]


def find_function(client: ApiClient, name: str) -> dict[str, Any]:
    """A function by id or by displayName (exactly one must match)."""
    functions: list[dict[str, Any]] = client.get("/functions")["functions"]
    return find_one(functions, name, kind="function", name_field="displayName", where=client.remote.url)


# --- sluice login ---------------------------------------------------------------------------------

profile_option = click.option(
    "--profile",
    "profile",
    metavar="NAME",
    help="A profile saved by 'sluice login' (default: the default profile). SLUICE_URL/SLUICE_TOKEN override it.",
)


@click.command("login")
@click.argument("url")
@click.option(
    "--token", required=True, help="An API token (the admin token printed by 'sluice serve', or one from /api/tokens)."
)
@click.option("--profile", "profile", metavar="NAME", help=f"Save under this name (default: {DEFAULT_PROFILE!r}).")
def login(url: str, token: str, profile: str | None) -> None:
    """Check TOKEN against the sluice at URL and save it as a profile for the other commands."""
    name = profile or DEFAULT_PROFILE
    if not name.strip():
        raise CliUsage("--profile must not be empty")
    token = token.strip()
    if not token:
        raise CliUsage("--token must not be empty")
    remote = Remote(normalize_url(url), token, name)
    with ApiClient(remote) as client:
        try:
            client.get("/functions")
        except RemoteError as exc:
            if exc.status == 401:
                raise RemoteError(f"{remote.url} refused the token: not saved", exc.errors, 401) from None
            if exc.status != 403:  # 403: a valid token whose role cannot list functions
                raise
    store = ProfileStore()
    is_default = store.put(name, remote.url, token, make_default=profile is None)
    click.echo(f"Logged in to {remote.url}; saved profile {name!r} in {store.path}")
    if not is_default:
        click.echo(f"Use it with --profile {name} (the default profile is unchanged).")
