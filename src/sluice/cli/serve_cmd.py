"""``sluice serve``: ingest, the control-plane API and the delivery pipeline in one process,
until SIGINT/SIGTERM (which drains delivery in flight before exiting)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Generator
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, NoReturn

import click

from sluice.errors import ConfigError

if TYPE_CHECKING:
    import uvicorn

    from sluice.catalog.service import Catalog
    from sluice.config import Config

EXIT_FAILED = 1


def fail(message: str) -> NoReturn:
    click.echo(f"sluice serve: {message}", err=True)
    sys.exit(EXIT_FAILED)


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), or a clear message and exit 1."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        fail(f"cannot listen on host {host!r} (--host / SLUICE_HOST): {exc.strerror}")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fail(
                f"port {port} on {host} is already in use (another sluice or program listens there); "
                "stop it or choose another port with --port / SLUICE_PORT (0 picks a free one)"
            )
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.set_inheritable(False)
    return sock


def _make_server(config: uvicorn.Config, on_started: Callable[[int], None]) -> uvicorn.Server:
    import uvicorn

    class Server(uvicorn.Server):
        """Reports the real port once listening; stops on SIGINT/SIGTERM without re-raising them."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                listening = self.servers[0].sockets
                on_started(int(listening[0].getsockname()[1]))

        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            # uvicorn re-raises the signal after shutting down, which would kill the process
            # before the catalog is closed: handle SIGINT/SIGTERM here and return normally.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return Server(config)


@click.command("serve")
@click.option("--host", help="Interface to listen on [env SLUICE_HOST; default 127.0.0.1].")
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port (0 picks a free one) [env SLUICE_PORT; default 8000]."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data folder: the SQLite database, the secret key, the admin token [env SLUICE_DATA_DIR; default ./.sluice].",
)
@click.option(
    "--role",
    type=click.Choice(["all", "ingest", "worker", "api"]),
    envvar="SLUICE_ROLE",
    default="all",
    show_default=True,
    help="What this process does [env SLUICE_ROLE]: all of it, or one part beside other processes "
    "(needs SLUICE_DATABASE_URL=postgresql://…, SLUICE_QUEUE_URL=nats://… and SLUICE_SECRET_KEY; "
    "see docs/scale-out.md).",
)
def serve(host: str | None, port: int | None, data_dir: Path | None, role: str) -> None:
    """Start sluice: the Tracking API (/v1/*), the control-plane API (/api) and delivery, on the
    embedded SQLite default.

    On the first start an owner token is generated, printed once and saved to <data dir>/admin-token
    (unless SLUICE_ADMIN_TOKEN is set), and a demo source is created (its write key is printed).
    Stops on Ctrl+C or SIGTERM after delivering or settling the events in flight.

    With --role ingest|worker|api, processes of each role share only PostgreSQL and NATS
    JetStream, on any number of machines.
    """
    # Imported here so the other commands start fast.
    import uvicorn

    from sluice.catalog.service import Catalog
    from sluice.config import Config
    from sluice.server import build_server, check_role, lock_data_dir

    env = dict(os.environ)
    if port is not None:  # the command line wins over a bad SLUICE_PORT
        env["SLUICE_PORT"] = str(port)
    try:
        config = Config.from_env(env)
        if data_dir is not None:
            config = config.with_data_dir(data_dir, env)
    except ConfigError as exc:
        fail(str(exc))
    if host is not None:
        config = replace(config, host=host)
    try:
        check_role(role, config)
    except ConfigError as exc:
        fail(str(exc))

    lock: IO[str] | None = None
    try:  # the data folder holds delivery's files (function scratch, the embedded logs)
        if role in ("all", "worker"):
            lock = lock_data_dir(config.data_dir)
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot use the data folder {config.data_dir}: {exc.strerror or exc}")
    sock = bind(config.host, config.port)
    try:
        catalog = Catalog.open(config)
    except ConfigError as exc:
        sock.close()
        fail(str(exc))
    except Exception as exc:  # the database could not be opened or migrated
        sock.close()
        fail(f"cannot open the catalog database: {type(exc).__name__}: {exc}")
    try:
        if role in ("all", "api"):
            _bootstrap(catalog, config)

        def started(real_port: int) -> None:
            url = base_url(config.host, real_port)
            if role in ("all", "api"):
                click.echo(f"sluice console: {url}/  (sign in with a token)")
            if role in ("all", "ingest"):
                click.echo(
                    f"sluice Tracking API: {url}/v1/track, /v1/batch, … (Segment and RudderStack SDKs: host {url})"
                )
            if role in ("all", "api"):
                click.echo(f"sluice API: {url}/api  (OpenAPI: {url}/api/openapi.json, docs: {url}/api/docs)")
                click.echo(f"Log in the CLI with: sluice login {url} --token <token>")
            if role != "all":
                click.echo(f"sluice {role} process: metrics at {url}/metrics")
            click.echo("Press Ctrl+C to stop.")

        server = build_server(catalog, config, role=role)
        bound_port = int(sock.getsockname()[1])
        uv_config = uvicorn.Config(
            server.app, host=config.host, port=bound_port, log_level="info", timeout_graceful_shutdown=30
        )
        uv_server = _make_server(uv_config, started)
        uv_server.run(sockets=[sock])
    finally:
        sock.close()
        catalog.close()
        if lock is not None:
            lock.close()
    click.echo("sluice stopped.")


def _bootstrap(catalog: Catalog, config: Config) -> None:
    """First start: an owner token (printed once) and the demo source. Several API processes may
    start together on one PostgreSQL catalog: the one that loses the race finds them made."""
    import sqlalchemy.exc

    from sluice.server import ensure_demo_source

    try:
        token = catalog.admin.bootstrap_owner(config.data_dir, config.admin_token)
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot save the admin token in {config.data_dir}: {exc.strerror or exc}")
    except sqlalchemy.exc.IntegrityError:
        token = None  # another process created the same SLUICE_ADMIN_TOKEN a moment ago
    if token is not None:
        saved = (config.data_dir / "admin-token").resolve()
        click.echo(f"Admin token (owner; shown only this once, saved to {saved}):")
        click.echo(f"  {token}")
    demo = ensure_demo_source(catalog)
    if demo is not None:
        click.echo(f"Created the source {demo['name']!r} ({demo['id']}); its write key:")
        click.echo(f"  {demo['writeKeys'][0]}")
