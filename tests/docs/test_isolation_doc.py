"""The specific claims of docs/isolation.md, checked against the real worker.

Claims that depend on Landlock are checked only where the kernel applies it (the worker cannot
list ``/etc``); the others hold everywhere.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.testing import arun_function

PROBE = """
import os, socket

def on_track(event, settings):
    p = event["properties"]
    what = p["what"]
    try:
        if what == "env":
            p["out"] = dict(os.environ)
        elif what == "cwd":
            with open("scratch.txt", "w") as f:
                f.write("mine")
            p["out"] = [os.getcwd(), open("scratch.txt").read()]
        elif what == "open":
            p["out"] = open(p["path"]).read()
        elif what == "kill":
            os.kill(os.getpid(), 0)
        elif what == "fork":
            os.fork()
        elif what == "listdir":
            p["out"] = len(os.listdir("/etc"))
        elif what == "stat":
            p["out"] = os.stat(p["path"]).st_size
        elif what == "remove":
            os.remove(p["path"])
        elif what == "exec":
            ps = __import__("_posixsubprocess")
            rd, wr = os.pipe()
            pid = ps.fork_exec([b"/bin/true"], [b"/bin/true"], True, (), None, None, -1, -1, -1, -1, -1, -1,
                               rd, wr, False, False, -1, None, None, None, -1, None, True)
            p["out"] = os.waitpid(pid, 0)[1]
        elif what == "unix":
            s = socket.socket(socket.AF_UNIX)
            s.connect(p["path"])
            p["out"] = s.recv(100).decode()
    except OSError as err:
        p["err"] = f"{type(err).__name__}: {err}"
    return event
"""


def probe(what: str, **props: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Probe", "userId": "u", "properties": {"what": what, **props}}


async def run_probes(*events: dict[str, Any]) -> list[dict[str, Any]]:
    run = await arun_function(PROBE, batch=list(events))  # one worker for all of them
    assert run.results is not None
    assert all(r["status"] == "ok" for r in run.results), run.results
    return [r["event"]["properties"] for r in run.results]


@pytest.fixture
def outside_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.db"
    path.write_text("not for functions")
    return path


async def test_environment_and_private_working_directory() -> None:
    env, cwd = await run_probes(probe("env"), probe("cwd"))
    assert env["out"] == {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "MALLOC_ARENA_MAX": "2"}
    workdir, content = cwd["out"]
    assert Path(workdir).name.startswith("sluice-fn-")
    assert Path(workdir).parent == Path(tempfile.gettempdir()).resolve()
    assert content == "mine"
    assert not Path(workdir).exists()  # removed when the worker exited


async def test_the_audit_hook_messages(outside_file: Path) -> None:
    opened, killed, forked = await run_probes(probe("open", path=str(outside_file)), probe("kill"), probe("fork"))
    assert opened["err"] == (
        f"PermissionError: sluice functions may not open '{outside_file}': outside the function's sandbox"
    )
    assert killed["err"] == "PermissionError: sluice functions may not send signals (os.kill)"
    assert forked["err"] == "PermissionError: sluice functions may not fork (os.fork)"


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "service.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        conn.sendall(b"hello")
        conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.close()
        os.unlink(path)


async def test_landlock_claims(outside_file: Path, unix_socket: str) -> None:
    (listed,) = await run_probes(probe("listdir"))
    if "err" not in listed:
        pytest.skip("the kernel does not apply Landlock here: the worker can list /etc")
    assert listed["err"] == "PermissionError: [Errno 13] Permission denied: '/etc'"
    stat, removed, executed, unix = await run_probes(
        probe("stat", path=str(outside_file)),
        probe("remove", path=str(outside_file)),
        probe("exec"),
        probe("unix", path=unix_socket),
    )
    assert stat["out"] == len("not for functions")  # metadata is not restricted
    assert removed["err"].startswith("PermissionError: [Errno 13]")
    assert outside_file.exists()
    assert executed["out"] != 0  # fork_exec evades the audit hook, but Landlock refuses the exec
    assert "may not use UNIX sockets" in unix["err"]  # refused by the audit hook, not by Landlock
