"""End-to-end fixtures: a real ``sluice serve`` subprocess on 127.0.0.1 that can be stopped
(SIGTERM), killed (SIGKILL) and restarted on the same data folder, plus helpers that wire a
Python insert function and a webhook destination (the ``http_server`` fixture) through the API."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import HttpServer
from tests.nats_util import require_nats, unique_prefix

ADMIN_TOKEN = "e2e-owner-token-" + "0123456789abcdef" * 2
START_DEADLINE_S = 60.0
API_LINE = "sluice API: "
ROLE_LINE = " process: metrics at "  # sluice serve --role ingest|worker
PROBE_EVENT = "sluice e2e probe"


def poll(
    check: Callable[[], Any], *, deadline_s: float, interval_s: float = 0.1, message: str | Callable[[], str] = ""
) -> Any:
    """Calls ``check`` until it returns something truthy (returned) or ``deadline_s`` passes (fail)."""
    end = time.monotonic() + deadline_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= end:
            pytest.fail(f"timed out after {deadline_s} s: {message() if callable(message) else message}")
        time.sleep(interval_s)


def delivered_events(sink: HttpServer, path: str) -> list[dict[str, Any]]:
    """Every event received on ``path``: bodies are one event (batchSize 1) or an array."""
    events: list[dict[str, Any]] = []
    for body in sink.bodies(path):
        events.extend(body if isinstance(body, list) else [body])
    return events


def real_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``events`` without the probes that :meth:`Sluice.connect_webhook` sent."""
    return [e for e in events if e.get("event") != PROBE_EVENT]


class Sluice:
    """One ``sluice serve`` process at a time on one data folder."""

    def __init__(
        self,
        data_dir: Path,
        database_url: str | None = None,
        *,
        queue_url: str | None = None,
        role: str = "all",
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.database_url = database_url  # None: the embedded SQLite catalog in the data folder
        self.queue_url = queue_url  # None: the embedded SQLite event log in the data folder
        self.role = role
        self.extra_env = env or {}
        self.token = ADMIN_TOKEN
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.starts = 0
        self.demo_write_key: str | None = None
        self.stdout: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._api: httpx.Client | None = None
        self._write_key: str | None = None
        self._reader: threading.Thread | None = None

    # -- process control ---------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the server is not running"
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "SLUICE_ADMIN_TOKEN": self.token,
            "NO_PROXY": "127.0.0.1,localhost",
        }
        for name in [n for n in env if n.startswith("SLUICE_") and n != "SLUICE_ADMIN_TOKEN"]:
            env.pop(name, None)
        if self.database_url is not None:
            env["SLUICE_DATABASE_URL"] = self.database_url
        if self.queue_url is not None:
            env["SLUICE_QUEUE_URL"] = self.queue_url
        env.update(self.extra_env)
        stderr = open(self.data_dir.parent / f"serve-{self.data_dir.name}-{self.starts}.stderr", "w")  # noqa: SIM115
        self._lines = queue.Queue()
        # `python -m sluice` (sluice/__main__.py): `-m sluice.cli.main` has no __main__ guard.
        command = [sys.executable, "-m", "sluice", "serve", "--port", "0", "--data-dir", str(self.data_dir)]
        self.proc = subprocess.Popen(
            [*command, "--role", self.role],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            start_new_session=True,
        )
        stderr.close()
        self._reader = threading.Thread(target=self._read_stdout, args=(self.proc, self._lines), daemon=True)
        self._reader.start()
        end = time.monotonic() + START_DEADLINE_S
        previous = ""
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                self.kill()
                pytest.fail(f"sluice serve did not start within {START_DEADLINE_S} s: {self.describe()}")
            try:
                line = self._lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait()
                pytest.fail(f"sluice serve exited with {code} before listening: {self.describe()}")
            if previous.startswith("Created the source 'Demo source'"):
                self.demo_write_key = line.strip()
            previous = line
            if line.startswith(API_LINE) or ROLE_LINE in line:
                address = line.split("http://127.0.0.1:", 1)[1].split()[0]
                self.port = int(address.split("/", 1)[0])
                break
        if self._api is not None:
            self._api.close()
        self._api = httpx.Client(
            base_url=f"{self.url}/api", headers={"Authorization": f"Bearer {self.token}"}, timeout=30, trust_env=False
        )

    def _read_stdout(self, proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.stdout.append(line.rstrip("\n"))
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def stop(self, deadline_s: float = 60.0) -> int:
        """SIGTERM, then wait for the exit code (fails past ``deadline_s``)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"sluice serve did not exit within {deadline_s} s of SIGTERM: {self.describe()}")
        if self._reader is not None:
            self._reader.join(timeout=10)  # the last lines of stdout
        return code

    def kill(self) -> None:
        """SIGKILL the server (not its function workers: they notice their parent is gone)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def kill_group(self) -> None:
        """SIGKILL the server's whole process group (cleanup: leaves no orphan worker behind)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)

    def restart(self) -> None:
        self.start()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def describe(self) -> str:
        stderr = self.data_dir.parent / f"serve-{self.data_dir.name}-{self.starts}.stderr"
        err = stderr.read_text(errors="replace")[-4000:] if stderr.exists() else ""
        return "stdout:\n" + "\n".join(self.stdout[-30:]) + "\nstderr (tail):\n" + err

    def worker_pids(self, module: bytes = b"sluice.functions.child_py") -> list[int]:
        """The server's processes running ``-m <module>``: by default the function workers
        (children of its delivery process); ``b"sluice.worker"``: the delivery process."""
        found = []
        for child in _descendants(self.pid):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if module in cmdline:
                found.append(child)
        return found

    def close(self) -> None:
        self.kill_group()
        if self._api is not None:
            self._api.close()
            self._api = None

    # -- the control-plane API ---------------------------------------------------------------

    @property
    def api(self) -> httpx.Client:
        assert self._api is not None, "the server has not started"
        return self._api

    @property
    def write_key(self) -> str:
        if self._write_key is None:
            response = self.api.get("/sources")
            assert response.status_code == 200, response.text
            sources = response.json()["data"]["sources"]
            demo = next(s for s in sources if s["name"] == "Demo source")
            self._write_key = str(demo["writeKeys"][0])
            if self.demo_write_key is not None:
                assert self._write_key == self.demo_write_key
        return self._write_key

    @property
    def source_id(self) -> str:
        response = self.api.get("/sources")
        assert response.status_code == 200, response.text
        return str(next(s for s in response.json()["data"]["sources"] if s["name"] == "Demo source")["id"])

    def create_function(self, code: str, name: str = "E2E function") -> dict[str, Any]:
        response = self.api.post("/functions", json={"displayName": name, "code": code})
        assert response.status_code == 201, response.text
        return dict(response.json()["data"]["function"])

    def create_webhook(self, url: str, *, batch_size: int | None = None, name: str = "E2E webhook") -> dict[str, Any]:
        config: dict[str, Any] = {"url": url}
        if batch_size is not None:
            config["batchSize"] = batch_size
        body = {"name": name, "type": "webhook", "config": config, "sourceIds": [self.source_id]}
        response = self.api.post("/destinations", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json()["data"]["destination"])

    def create_instance(self, function_id: str, destination_id: str) -> dict[str, Any]:
        body = {"functionId": function_id, "integrationId": destination_id, "enabled": True}
        response = self.api.post("/insert-function-instances", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json()["data"]["instance"])

    def connect_webhook(
        self, sink: HttpServer, code: str, *, path: str = "/hook", batch_size: int | None = None
    ) -> dict[str, Any]:
        """Function + webhook destination on the demo source + enabled instance; returns once the
        pipeline delivers events to it (it reads the catalog every ~2 s): probe events, named
        :data:`PROBE_EVENT`, are sent until one reaches ``sink`` at ``path``."""
        function = self.create_function(code)
        destination = self.create_webhook(f"{sink.url}{path}", batch_size=batch_size)
        self.create_instance(function["id"], destination["id"])
        next_probe = 0.0

        def probe_delivered() -> bool:
            nonlocal next_probe
            if any(e.get("event") == PROBE_EVENT for e in delivered_events(sink, path)):
                return True
            if time.monotonic() >= next_probe:
                self.send("track", {"userId": "probe", "event": PROBE_EVENT, "messageId": f"probe-{uuid.uuid4()}"})
                next_probe = time.monotonic() + 1.0
            return False

        poll(probe_delivered, deadline_s=60, message=lambda: f"no probe event delivered to {path}: {self.describe()}")
        return destination

    # -- the Tracking API --------------------------------------------------------------------

    def send(self, kind: str, body: dict[str, Any], client: httpx.Client | None = None) -> httpx.Response:
        """POST /v1/<kind> with the demo source's write key; asserts 200."""
        own = client is None
        client = client or httpx.Client(trust_env=False, timeout=30)
        try:
            response = client.post(f"{self.url}/v1/{kind}", json=body, auth=(self.write_key, ""))
        finally:
            if own:
                client.close()
        assert response.status_code == 200, response.text
        return response


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = _children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(_children(child))
    return found


@pytest.fixture
def sluice(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sluice]:
    """A started ``sluice serve`` on ``tmp_path/data``; killed (with its workers) at teardown.

    Parametrize it indirectly with ``"postgresql+nats"`` for the scale-out backends (a fresh
    PostgreSQL database, a fresh NATS prefix, deleted afterwards); the default is the embedded one."""
    backend = getattr(request, "param", "embedded")
    if backend == "embedded":
        server = Sluice(tmp_path / "data")
    else:
        assert backend == "postgresql+nats", backend
        queue_url = f"{require_nats()}?prefix={unique_prefix()}"
        server = Sluice(tmp_path / "data", request.getfixturevalue("fresh_pg_url"), queue_url=queue_url)
    try:
        server.start()
        yield server
    finally:
        server.close()
        if server.queue_url is not None:
            delete_nats_prefix(server.queue_url)


def delete_nats_prefix(queue_url: str) -> None:
    """Remove every stream a test's ``SLUICE_QUEUE_URL`` (``nats://…?prefix=…``) made."""
    from urllib.parse import parse_qs, urlsplit

    from sluice.queue.nats import NatsEventLog

    parts = urlsplit(queue_url)

    async def clean() -> None:
        log = NatsEventLog(f"nats://{parts.netloc}", prefix=parse_qs(parts.query)["prefix"][0])
        await log.delete_everything()
        await log.close()

    asyncio.run(clean())
