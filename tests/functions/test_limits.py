"""Limits, crash recovery and isolation of the worker processes (DESIGN §3.6)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from sluice.functions.pool import FunctionSource, Limits, WorkerPool

MISBEHAVE = """
import asyncio, os, sys

async def on_track(event, settings):
    what = event["properties"]["what"]
    if what == "async_sleep":
        await asyncio.sleep(60)
    elif what == "spin":
        while True:
            pass
    elif what == "c_loop":          # C code that never checks for signals: the worker must be killed
        sum(range(10**12))
    elif what == "memory":
        blob = bytearray(2 * 1024**3)
    elif what == "exit":
        os._exit(1)
    elif what == "segfault":
        sys.setrecursionlimit(10**7)
        class Deep:
            def __repr__(self):
                return repr(self)
        repr(Deep())
    elif what == "ignore_cancel":
        while True:
            try:
                await asyncio.sleep(60)
            except BaseException:
                pass
    return event
"""

LIMIT_S = 1.0


def track(what: str, mid: str = "m") -> dict[str, Any]:
    return {"type": "track", "event": "E", "userId": "u", "messageId": mid, "properties": {"what": what}}


@pytest.fixture
async def pool() -> Any:
    p = WorkerPool(FunctionSource(MISBEHAVE), limits=Limits(timeout_s=LIMIT_S, grace_s=1.0))
    await p.start()
    yield p
    await p.close()


async def run_one(pool: WorkerPool, what: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    (result,) = await pool.run_events([track(what)])
    return result, time.monotonic() - started


@pytest.mark.parametrize("what", ["async_sleep", "spin", "c_loop", "ignore_cancel"])
async def test_timeouts_end_within_limit_plus_one_second_and_next_event_succeeds(pool: WorkerPool, what: str) -> None:
    result, elapsed = await run_one(pool, what)
    assert result["status"] == "timeout"
    assert result["error"]["type"] == "Timeout"
    assert LIMIT_S * 0.9 <= elapsed <= LIMIT_S + 1.0 + 0.5  # the limit plus 1 s, plus scheduling slack
    after, _ = await run_one(pool, "fine")
    assert after["status"] == "ok"


async def test_a_worker_that_does_not_yield_is_killed_and_replaced(pool: WorkerPool) -> None:
    before = pool.worker_pids
    result, _ = await run_one(pool, "c_loop")
    assert "killed" in result["error"]["message"]
    after, _ = await run_one(pool, "fine")
    assert after["status"] == "ok"
    assert pool.stats.killed_for_timeout == 1
    assert pool.worker_pids and pool.worker_pids != before


async def test_memory_limit_is_bad_request_and_pool_recovers(pool: WorkerPool) -> None:
    result, _ = await run_one(pool, "memory")
    assert result["status"] == "bad_request"
    assert result["error"]["type"] == "MemoryError"
    assert "256 MiB" in result["error"]["message"]
    after, _ = await run_one(pool, "fine")
    assert after["status"] == "ok"
    assert pool.stats.recycled == 1  # a worker that hit its memory limit is replaced


@pytest.mark.parametrize(("what", "exit_text"), [("exit", "exit code 1"), ("segfault", "SIGSEGV")])
async def test_crash_retries_in_flight_events_and_a_fresh_worker_takes_over(
    pool: WorkerPool, what: str, exit_text: str
) -> None:
    events = [track("fine", "a"), track(what, "b"), track("fine", "c")]
    results = await pool.run_events(events)
    # The whole frame was in flight: none of it is lost, all of it is retried.
    assert [r["status"] for r in results] == ["retry", "retry", "retry"]
    assert exit_text in results[1]["error"]["message"]
    after, _ = await run_one(pool, "fine")
    assert after["status"] == "ok"
    assert pool.stats.crashed == 1


async def test_frames_queued_behind_a_crash_are_resent_not_failed() -> None:
    limits = Limits(timeout_s=LIMIT_S, frame_max_events=1)
    async with WorkerPool(FunctionSource(MISBEHAVE), limits=limits, size=1, max_in_flight=4) as p:
        results = await p.run_events([track("exit", "a"), track("fine", "b"), track("fine", "c")])
    assert [r["status"] for r in results] == ["retry", "ok", "ok"]


async def test_one_misbehaving_instance_never_affects_another() -> None:
    limits = Limits(timeout_s=2.0)
    async with (
        WorkerPool(FunctionSource(MISBEHAVE), limits=limits) as bad,
        WorkerPool(FunctionSource("def on_track(e, s):\n    return e\n"), limits=limits) as good,
    ):
        spinning = asyncio.create_task(bad.run_events([track("c_loop")]))
        started = time.monotonic()
        for _ in range(20):
            (result,) = await good.run_events([track("fine")])
            assert result["status"] == "ok"
        assert time.monotonic() - started < 2.0  # done while the other instance is still stuck
        assert not spinning.done()
        assert (await spinning)[0]["status"] == "timeout"


ISOLATION = """
import os

def on_track(event, settings):
    what = event["properties"]["what"]
    if what == "env":
        event["properties"]["env"] = dict(os.environ)
    elif what == "read":
        with open(event["properties"]["path"]) as f:
            event["properties"]["content"] = f.read()
    elif what == "write":
        with open(event["properties"]["path"], "w") as f:
            f.write("overwritten")
    elif what == "exec":
        importlib = __import__("importlib")
        importlib.import_module("subprocess").run(["/bin/true"])
    elif what == "kill_parent":
        os.kill(os.getppid(), 9)
    elif what == "tmp":
        with open("scratch.txt", "w") as f:
            f.write("ok")
        event["properties"]["tmp"] = open("scratch.txt").read()
    elif what == "settings":
        event["properties"]["settings"] = settings
    return event
"""


async def test_user_code_cannot_read_env_files_or_start_processes(tmp_path: Path, monkeypatch: Any) -> None:
    secret_file = tmp_path / "catalog.db"
    secret_file.write_text("catalog secrets")
    monkeypatch.setenv("SLUICE_SECRET_KEY", "parent-secret-value")

    def ev(what: str, **props: Any) -> dict[str, Any]:
        return {"type": "track", "event": "E", "userId": "u", "properties": {"what": what, **props}}

    async with WorkerPool(FunctionSource(ISOLATION), {"apiKey": "mine"}) as p:
        env, read, write, exec_, kill, tmp, settings = await p.run_events(
            [
                ev("env"),
                ev("read", path=str(secret_file)),
                ev("write", path=str(secret_file)),
                ev("exec"),
                ev("kill_parent"),
                ev("tmp"),
                ev("settings"),
            ]
        )
    assert env["status"] == "ok"
    assert "SLUICE_SECRET_KEY" not in env["event"]["properties"]["env"]
    assert "parent-secret-value" not in str(env["event"]["properties"]["env"])
    for denied in (read, write):
        assert denied["status"] == "bad_request"
        assert denied["error"]["type"] == "PermissionError"
        assert "outside the function's sandbox" in denied["error"]["message"]
    assert secret_file.read_text() == "catalog secrets"
    assert exec_["status"] == "bad_request" and "start processes" in exec_["error"]["message"]
    assert kill["status"] == "bad_request" and "send signals" in kill["error"]["message"]
    assert tmp["status"] == "ok" and tmp["event"]["properties"]["tmp"] == "ok"
    assert settings["event"]["properties"]["settings"] == {"apiKey": "mine"}
    assert os.getpid()  # still alive: the kill was refused


async def test_instances_never_see_each_others_settings_or_globals() -> None:
    code = (
        "seen = []\n"
        "def on_track(event, settings):\n"
        "    seen.append(settings['name'])\n"
        "    event['properties']['seen'] = list(seen)\n"
        "    return event\n"
    )
    ev = {"type": "track", "event": "E", "userId": "u", "properties": {}}
    async with (
        WorkerPool(FunctionSource(code), {"name": "one"}) as one,
        WorkerPool(FunctionSource(code), {"name": "two"}) as two,
    ):
        await one.run_events([dict(ev, properties={})])
        (r2,) = await two.run_events([dict(ev, properties={})])
        (r1,) = await one.run_events([dict(ev, properties={})])
    assert r2["event"]["properties"]["seen"] == ["two"]
    assert r1["event"]["properties"]["seen"] == ["one", "one"]  # module globals persist per instance


async def test_worker_scratch_directories_are_removed_after_crash_and_close() -> None:
    code = "import os\ndef on_track(event, settings):\n    open('scratch', 'w').write('x')\n    if event['properties'].get('die'):\n        os._exit(3)\n    return event\n"
    pool = WorkerPool(FunctionSource(code))
    await pool.start()
    first = pool._workers[0].workdir
    assert first is not None and os.path.isdir(first)
    (crashed,) = await pool.run_events([{"type": "track", "properties": {"die": True}}])
    assert crashed["status"] == "retry"
    (ok,) = await pool.run_events([{"type": "track", "properties": {}}])
    assert ok["status"] == "ok"
    second = pool._workers[0].workdir
    assert second is not None and second != first and not os.path.exists(first)
    await pool.close()
    assert not os.path.exists(second)


async def test_unix_sockets_are_refused(tmp_path: Path) -> None:
    import socket

    path = str(tmp_path / "local.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    code = (
        "import socket\n"
        "def on_track(event, settings):\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    s.connect(settings['path'])\n"
        "    return event\n"
    )
    try:
        async with WorkerPool(FunctionSource(code), {"path": path}) as p:
            (result,) = await p.run_events([{"type": "track", "properties": {}}])
    finally:
        server.close()
    assert result["status"] == "bad_request"
    assert "UNIX sockets" in result["error"]["message"]


async def test_pool_reports_what_the_sandbox_applied() -> None:
    async with WorkerPool(FunctionSource("def on_track(e, s):\n    return e\n"), limits=Limits(memory_mb=300)) as p:
        assert p.sandbox["memory_mb"] == 300
        assert isinstance(p.sandbox["landlock_abi"], int)


async def test_a_worker_that_cannot_start_is_a_clear_error() -> None:
    from sluice.errors import WorkerStartError

    pool = WorkerPool(FunctionSource("def on_track(e, s):\n    return e\n"), command=["/nonexistent/python"])
    with pytest.raises(WorkerStartError, match="cannot start a function worker"):
        await pool.start()
