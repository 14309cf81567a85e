"""`sluice serve`, `sluice login` and `sluice fn push|deploy|versions|restore`, run as a user runs them.

The server is a real `sluice serve --port 0` subprocess on a temporary data dir; every CLI call is
a real `python -m sluice` subprocess with SLUICE_CONFIG_DIR in tmp_path (the home is never touched).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
URL_RE = re.compile(r"sluice API: (http://\S+)/api\b")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any SLUICE_* setting of the machine running the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env.update(extra)
    return env


def sluice(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@dataclass
class Serve:
    """A running `sluice serve` subprocess; stdout is read line by line, stderr goes to a file."""

    proc: subprocess.Popen[str]
    stderr_path: Path
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, cwd: Path, *args: str, env: dict[str, str] | None = None) -> Serve:
        stderr_path = cwd / f"serve-stderr-{time.monotonic_ns()}.log"
        with stderr_path.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sluice", "serve", *args],
                cwd=cwd,
                env=env if env is not None else clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        serve = cls(proc, stderr_path)
        threading.Thread(target=serve._pump, daemon=True).start()
        return serve

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout_s: float = START_TIMEOUT_S) -> re.Match[str]:
        """The first stdout line matching ``pattern``; fails at the deadline or if the server exits."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"sluice serve printed no {pattern.pattern!r} in {timeout_s}s: {self.output()}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
                pytest.fail(f"sluice serve exited ({self.proc.returncode}) before {pattern.pattern!r}: {self.output()}")
            self.seen.append(line)
            found = pattern.search(line)
            if found:
                return found

    def rest_of_stdout(self) -> list[str]:
        """Every stdout line until EOF (call after the process ended)."""
        while (line := self.lines.get(timeout=STOP_TIMEOUT_S)) is not None:
            self.seen.append(line)
        return self.seen

    def output(self) -> str:
        return "\nstdout:\n" + "\n".join(self.seen) + "\nstderr:\n" + self.stderr_path.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Running:
    serve: Serve
    url: str
    token: str
    data_dir: Path
    work: Path

    def cli_env(self, config_dir: Path) -> dict[str, str]:
        return clean_env(SLUICE_CONFIG_DIR=str(config_dir))

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/api", headers={"Authorization": f"Bearer {self.token}"}, timeout=30)


def start_server(work: Path, data_dir: Path) -> tuple[Serve, str, str | None]:
    """Start `sluice serve --port 0`; returns it, its base URL and the token it printed (if any)."""
    serve = Serve.start(work, "--port", "0", "--data-dir", str(data_dir))
    try:
        url = serve.wait_for(URL_RE).group(1)
    except BaseException:
        serve.kill()
        raise
    printed = None
    for index, line in enumerate(serve.seen):
        if line.startswith("Admin token"):
            printed = serve.seen[index + 1].strip()
    return serve, url, printed


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    work = tmp_path_factory.mktemp("serve")
    data_dir = work / "data"
    serve, url, printed = start_server(work, data_dir)
    try:
        token_file = data_dir / "admin-token"
        assert printed is not None, serve.output()
        assert token_file.read_text().strip() == printed
        assert str(token_file.resolve()) in "\n".join(serve.seen)
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        yield Running(serve, url, printed, data_dir, work)
    finally:
        code = serve.stop(signal.SIGTERM)
    assert code == 0, serve.output()
    assert "sluice stopped." in serve.rest_of_stdout()


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return tmp_path / "config"


def login(server: Running, cfg: Path, cwd: Path) -> None:
    result = sluice("login", server.url, "--token", server.token, cwd=cwd, env=server.cli_env(cfg))
    assert result.returncode == 0, result.stderr


def new_function(name: str, cwd: Path, env: dict[str, str]) -> Path:
    result = sluice("fn", "new", name, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return cwd / name


def version_rows(stdout: str) -> dict[int, list[str]]:
    """``fn versions`` table → {version: [id, labels...]} (labels column may be empty)."""
    lines = stdout.strip().splitlines()
    assert lines[0].split() == ["VERSION", "ID", "LABELS", "AUTHOR", "CREATED"]
    rows = {}
    for line in lines[1:]:
        number, vid, *rest = line.split()
        rows[int(number)] = [vid, *rest]
    return rows


def labels(row: list[str]) -> set[str]:
    return {label for cell in row[1:] for label in cell.split(",") if label in ("LATEST", "DEPLOYED")}


# --- the whole flow ------------------------------------------------------------------------------


def test_push_deploy_versions_restore(server: Running, tmp_path: Path, cfg: Path) -> None:
    env = server.cli_env(cfg)
    login(server, cfg, tmp_path)
    profiles = cfg / "profiles.json"
    assert stat.S_IMODE(profiles.stat().st_mode) == 0o600

    folder = new_function("enrich", tmp_path, env)
    first = sluice("fn", "push", str(folder), cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    found = re.search(r"Created function 'enrich': id (fn_\w+), version 1", first.stdout)
    assert found, first.stdout
    fid = found.group(1)

    with server.api() as api:
        function = api.get(f"/functions/{fid}").json()["data"]["function"]
        assert function["code"] == (folder / "function.py").read_text()
        assert function["settings"][0]["name"] == "apiKey" and function["settings"][0]["sensitive"] is True
        assert (function["language"], function["resourceType"], function["batchMaxCount"]) == (
            "python",
            "INSERT_DESTINATION",
            20,
        )
        instance_ids = []
        for name in ("alpha", "beta"):
            destination = api.post(
                "/destinations",
                json={"name": f"webhook {name}", "type": "webhook", "config": {"url": f"http://127.0.0.1:9/{name}"}},
            )
            assert destination.status_code == 201, destination.text
            instance = api.post(
                "/insert-function-instances",
                json={
                    "functionId": fid,
                    "integrationId": destination.json()["data"]["destination"]["id"],
                    "name": name,
                },
            )
            assert instance.status_code == 201, instance.text
            assert instance.json()["data"]["instance"]["version"] == 1
            instance_ids.append(instance.json()["data"]["instance"]["id"])

    # Same folder again, unchanged: no new version.
    same = sluice("fn", "push", str(folder), cwd=tmp_path, env=env)
    assert same.returncode == 0, same.stderr
    assert f"unchanged: id {fid}, version 1" in same.stdout

    source = folder / "function.py"
    original = source.read_text()
    source.write_text(original.replace('# event["properties"]', 'event["properties"]'))
    second = sluice("fn", "push", str(folder), cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert f"id {fid}, new version 2" in second.stdout
    assert "sluice fn deploy" in second.stdout  # instances still run version 1

    rows = version_rows(sluice("fn", "versions", "enrich", cwd=tmp_path, env=env).stdout)
    assert sorted(rows) == [1, 2]
    assert labels(rows[2]) == {"LATEST"} and labels(rows[1]) == {"DEPLOYED"}

    # One instance first (by function id), then all of them (by display name).
    one = sluice("fn", "deploy", fid, "--instance", instance_ids[0], cwd=tmp_path, env=env)
    assert one.returncode == 0, one.stderr
    assert "version 2 to 1 instance(s)" in one.stdout
    by_id = {line.split()[0]: line.split() for line in one.stdout.splitlines() if line.startswith("ifi_")}
    assert by_id[instance_ids[0]][2:] == ["2", "deployed", "now"]
    assert by_id[instance_ids[1]][2:] == ["1"]
    rows = version_rows(sluice("fn", "versions", "enrich", cwd=tmp_path, env=env).stdout)
    assert labels(rows[2]) == {"LATEST", "DEPLOYED"} and labels(rows[1]) == {"DEPLOYED"}

    every = sluice("fn", "deploy", "enrich", cwd=tmp_path, env=env)
    assert every.returncode == 0, every.stderr
    assert "version 2 to 2 instance(s)" in every.stdout
    rows = version_rows(sluice("fn", "versions", "enrich", cwd=tmp_path, env=env).stdout)
    assert labels(rows[2]) == {"LATEST", "DEPLOYED"} and labels(rows[1]) == set()
    assert rows[2][-2] == "admin"  # author

    restored = sluice("fn", "restore", "enrich", "1", cwd=tmp_path, env=env)
    assert restored.returncode == 0, restored.stderr
    assert "as new version 3" in restored.stdout
    rows = version_rows(sluice("fn", "versions", "enrich", cwd=tmp_path, env=env).stdout)
    assert sorted(rows) == [1, 2, 3]
    assert labels(rows[3]) == {"LATEST"} and labels(rows[2]) == {"DEPLOYED"}
    assert "restored from 1" in " ".join(rows[3])
    with server.api() as api:
        function = api.get(f"/functions/{fid}").json()["data"]["function"]
    assert function["version"] == 3 and function["code"] == original

    # VERSION may also be a version id.
    by_version_id = sluice("fn", "restore", fid, rows[2][0], cwd=tmp_path, env=env)
    assert by_version_id.returncode == 0, by_version_id.stderr
    assert "Restored version 2" in by_version_id.stdout and "new version 4" in by_version_id.stdout


# --- errors --------------------------------------------------------------------------------------


def test_login_with_a_bad_token_fails_and_saves_nothing(server: Running, tmp_path: Path, cfg: Path) -> None:
    result = sluice("login", server.url, "--token", "slc_not-a-token", cwd=tmp_path, env=server.cli_env(cfg))
    assert result.returncode == 1
    assert "refused the token" in result.stderr and "unknown or revoked API token" in result.stderr
    assert not (cfg / "profiles.json").exists()


def test_login_to_an_unreachable_server_fails(tmp_path: Path, cfg: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = clean_env(SLUICE_CONFIG_DIR=str(cfg))
    result = sluice("login", f"http://127.0.0.1:{port}", "--token", "slc_x", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert f"cannot reach sluice at http://127.0.0.1:{port}" in result.stderr
    assert not (cfg / "profiles.json").exists()


def test_profiles_and_environment_override(server: Running, tmp_path: Path, cfg: Path) -> None:
    env = server.cli_env(cfg)
    named = sluice("login", server.url + "/api/", "--token", server.token, "--profile", "local", cwd=tmp_path, env=env)
    assert named.returncode == 0, named.stderr
    data = json.loads((cfg / "profiles.json").read_text())
    assert data == {"default": "local", "profiles": {"local": {"url": server.url, "token": server.token}}}

    assert sluice("fn", "versions", "nothing-here", "--profile", "local", cwd=tmp_path, env=env).returncode == 1
    missing = sluice("fn", "versions", "x", "--profile", "prod", cwd=tmp_path, env=env)
    assert missing.returncode == 2 and "no profile named 'prod'" in missing.stderr

    # SLUICE_URL + SLUICE_TOKEN win over the file: a bad token there is refused.
    bad = sluice("fn", "versions", "x", cwd=tmp_path, env={**env, "SLUICE_URL": server.url, "SLUICE_TOKEN": "slc_bad"})
    assert bad.returncode == 1 and "refused the token (SLUICE_TOKEN)" in bad.stderr

    # With no profile file at all, the environment alone is enough.
    empty = clean_env(SLUICE_CONFIG_DIR=str(tmp_path / "empty"), SLUICE_URL=server.url, SLUICE_TOKEN=server.token)
    folder = new_function("env-only", tmp_path, empty)
    pushed = sluice("fn", "push", str(folder), cwd=tmp_path, env=empty)
    assert pushed.returncode == 0, pushed.stderr

    nobody = sluice("fn", "versions", "env-only", cwd=tmp_path, env=clean_env(SLUICE_CONFIG_DIR=str(tmp_path / "no")))
    assert nobody.returncode == 2 and "sluice login" in nobody.stderr


def test_push_of_code_with_a_syntax_error_names_the_line(server: Running, tmp_path: Path, cfg: Path) -> None:
    env = server.cli_env(cfg)
    login(server, cfg, tmp_path)
    folder = new_function("broken", tmp_path, env)
    (folder / "function.py").write_text("async def on_track(event, settings):\n    return (event\n\nx = 1\n")
    result = sluice("fn", "push", str(folder), cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "line 2" in result.stderr, result.stderr
    assert f"code ({folder / 'function.py'})" in result.stderr
    with server.api() as api:
        names = [f["displayName"] for f in api.get("/functions").json()["data"]["functions"]]
    assert "broken" not in names


def test_push_needs_a_function_folder(server: Running, tmp_path: Path, cfg: Path) -> None:
    login(server, cfg, tmp_path)
    env = server.cli_env(cfg)
    missing = sluice("fn", "push", str(tmp_path / "nope"), cwd=tmp_path, env=env)
    assert missing.returncode == 2 and "sluice fn new" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = sluice("fn", "push", str(tmp_path / "empty"), cwd=tmp_path, env=env)
    assert empty.returncode == 2 and "no function.toml" in empty.stderr


def test_deploy_versions_and_restore_of_unknown_things(server: Running, tmp_path: Path, cfg: Path) -> None:
    env = server.cli_env(cfg)
    login(server, cfg, tmp_path)
    for args in (("deploy", "no-such-function"), ("versions", "no-such-function"), ("restore", "no-such", "1")):
        result = sluice("fn", *args, cwd=tmp_path, env=env)
        assert result.returncode == 1, args
        assert "no function named" in result.stderr, result.stderr

    folder = new_function("lonely", tmp_path, env)
    assert sluice("fn", "push", str(folder), cwd=tmp_path, env=env).returncode == 0
    nothing = sluice("fn", "deploy", "lonely", cwd=tmp_path, env=env)
    assert nothing.returncode == 0 and "no instances" in nothing.stdout
    wrong = sluice("fn", "deploy", "lonely", "--instance", "ifi_nope", cwd=tmp_path, env=env)
    assert wrong.returncode == 1 and "instanceIds[0]" in wrong.stderr
    restore = sluice("fn", "restore", "lonely", "7", cwd=tmp_path, env=env)
    assert restore.returncode == 1 and "no version '7'" in restore.stderr
    usage = sluice("fn", "restore", "lonely", cwd=tmp_path, env=env)
    assert usage.returncode == 2


# --- serve ---------------------------------------------------------------------------------------


def test_restart_keeps_the_token_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first, url, printed = start_server(tmp_path, data_dir)
    try:
        assert printed is not None
        assert httpx.get(url + "/api/openapi.json", timeout=10).json()["info"]["title"] == "sluice control plane"
    finally:
        code = first.stop(signal.SIGINT)
    assert code == 0, first.output()

    second, url, again = start_server(tmp_path, data_dir)
    try:
        assert again is None, second.output()  # printed once only
        response = httpx.get(url + "/api/tokens", headers={"Authorization": f"Bearer {printed}"}, timeout=10)
        assert response.status_code == 200
    finally:
        code = second.stop(signal.SIGTERM)
    assert code == 0, second.output()


def test_first_start_creates_a_demo_source_whose_write_key_ingests(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first, url, _ = start_server(tmp_path, data_dir)
    try:
        joined = "\n".join(first.seen)
        assert "Created the source 'Demo source'" in joined, first.output()
        key = first.seen[next(i for i, line in enumerate(first.seen) if "Demo source" in line) + 1].strip()
        assert any(line.startswith(f"sluice Tracking API: {url}/v1/track") for line in first.seen)
        assert any(line.startswith(f"sluice console: {url}/ ") for line in first.seen)
        assert httpx.get(url + "/", timeout=10, follow_redirects=True).url.path == "/login"
        sent = httpx.post(url + "/v1/track", json={"userId": "u", "event": "Hi"}, auth=(key, ""), timeout=10)
        assert sent.json() == {"success": True}
        assert httpx.post(url + "/v1/track", json={"userId": "u"}, auth=("nope", ""), timeout=10).status_code == 401
        # a second server on the same data folder is refused (the embedded event log has one owner)
        other = sluice("serve", "--port", "0", "--data-dir", str(data_dir), cwd=tmp_path, env=clean_env())
        assert other.returncode == 1
        assert "another sluice server is running on the data folder" in other.stderr
    finally:
        assert first.stop(signal.SIGTERM) == 0, first.output()
    second, _, _ = start_server(tmp_path, data_dir)
    try:
        assert "Demo source" not in "\n".join(second.seen)  # created once
    finally:
        assert second.stop(signal.SIGTERM) == 0, second.output()


def test_serve_on_a_port_in_use_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = sluice("serve", "--port", str(port), "--data-dir", str(tmp_path / "d"), cwd=tmp_path, env=clean_env())
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_a_bad_setting_names_the_variable(tmp_path: Path) -> None:
    result = sluice("serve", "--data-dir", str(tmp_path / "d"), cwd=tmp_path, env=clean_env(SLUICE_PORT="eighty"))
    assert result.returncode == 1
    assert "SLUICE_PORT" in result.stderr and "Traceback" not in result.stderr
    bad_key = clean_env(SLUICE_SECRET_KEY="short")
    result = sluice("serve", "--port", "0", "--data-dir", str(tmp_path / "d"), cwd=tmp_path, env=bad_key)
    assert result.returncode == 1
    assert "SLUICE_SECRET_KEY" in result.stderr and "Traceback" not in result.stderr


def test_ingest_counts_name_segments_reason_codes(tmp_path: Path) -> None:
    serve, url, token = start_server(tmp_path, tmp_path / "data")
    try:
        key = serve.seen[next(i for i, line in enumerate(serve.seen) if "Demo source" in line) + 1].strip()
        batch = {
            "batch": [
                {"type": "track", "userId": "u", "event": "Ok", "messageId": "m-1"},
                {"type": "track", "userId": "u", "messageId": "m-2"},  # no event name
                {"type": "identify", "messageId": "m-3"},  # no user
                {"type": "track", "userId": "u", "event": "Ok", "messageId": "m-1"},  # a duplicate
            ]
        }
        assert httpx.post(url + "/v1/batch", json=batch, auth=(key, ""), timeout=10).json() == {"success": True}
        headers = {"Authorization": f"Bearer {token}"}
        sources = httpx.get(url + "/api/sources", headers=headers, timeout=10).json()["data"]["sources"]
        counts = httpx.get(url + f"/api/sources/{sources[0]['id']}/ingest", headers=headers, timeout=10).json()
        ingest = counts["data"]["ingest"]
        assert ingest["accepted"] == 1 and ingest["duplicates"] == 1
        assert ingest["failed"] == {"event_not_defined": 1, "no_user_anon_id": 1}
        missing = httpx.get(url + "/api/sources/src_nope/ingest", headers=headers, timeout=10)
        assert missing.status_code == 404
    finally:
        assert serve.stop(signal.SIGTERM) == 0, serve.output()
