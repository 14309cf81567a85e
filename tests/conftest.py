"""Shared test fixtures: a real HTTP server on 127.0.0.1 that plays a destination or an API."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest_plugins = ["tests.pg"]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip on a developer's laptop; fail under CI=true (the brief's rule for real services)."""
    if IN_CI:
        pytest.fail(reason + " (required when CI=true)")
    pytest.skip(reason)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Answer = tuple[int, Any, dict[str, str]]


@dataclass
class HttpServer:
    """Routes: path → (status, body-object, headers), or a function of the request giving that
    (it runs on the server's request thread: it may block to play a hung destination).
    Unknown paths answer 404."""

    url: str
    routes: dict[str, Answer | Callable[[Recorded], Answer]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    barrier_size: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _barrier: threading.Barrier | None = None

    def route(self, path: str, status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.routes[path] = (status, body, headers or {})

    def route_fn(self, path: str, answer: Callable[[Recorded], Answer]) -> None:
        self.routes[path] = answer

    def bodies(self, path: str) -> list[Any]:
        """The decoded JSON bodies received on ``path`` so far."""
        with self._lock:
            return [r.json() for r in self.requests if r.path.split("?", 1)[0] == path]

    def set_barrier(self, parties: int) -> None:
        """Requests to /barrier each wait until ``parties`` of them are in flight at once."""
        self._barrier = threading.Barrier(parties, timeout=5)


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    state = HttpServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if len(body) < length:  # the client went away mid-request (e.g. it was killed): not a request
                self.close_connection = True
                return
            recorded = Recorded(self.command, self.path, dict(self.headers), body)
            with state._lock:
                state.requests.append(recorded)
            if self.path.startswith("/barrier"):
                barrier = state._barrier
                try:
                    assert barrier is not None
                    barrier.wait()
                    status, payload, headers = 200, {"released": True}, {}
                except (threading.BrokenBarrierError, AssertionError):
                    status, payload, headers = 504, {"released": False}, {}
            else:
                route = state.routes.get(self.path.split("?", 1)[0], (404, {"error": "no route"}, {}))
                status, payload, headers = route(recorded) if callable(route) else route
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", headers.get("Content-Type", "application/json"))
            for key, value in headers.items():
                if key != "Content-Type":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client killed mid-request
                self.end_headers()
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
