"""What a JavaScript function cannot do even after escaping Node's ``vm`` context.

``vm`` is not a security boundary: ``Buffer.constructor('return process')()`` reaches the real
``process``. These tests take that escape on purpose and check the kernel sandbox the launcher
(:mod:`sluice.functions.launch_js`) applies before node starts: no reading outside the allowed
paths, no writing outside the worker's scratch directory, no running programs, no signals to
other processes. The network stays open (as for Python functions: docs/isolation.md).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sluice.functions.launch_js import elf_interpreter
from sluice.functions.pool import FunctionSource, WorkerPool
from tests.conftest import skip_or_fail

ESCAPE = """
const real = Buffer.constructor('return process')();
function attempt(fn) {
  try { return 'allowed: ' + String(fn()).slice(0, 40) } catch (e) { return 'denied: ' + (e.code || e.message) }
}
async function onTrack(event) {
  const req = real.mainModule.require;
  const fs = req('fs');
  const cp = req('child_process');
  event.properties = {
    escaped: typeof real.pid === 'number',
    readPasswd: attempt(() => fs.readFileSync('/etc/passwd', 'utf8')),
    readHome: attempt(() => fs.readdirSync(real.env.HOME || '/root')),
    writeTmp: attempt(() => { fs.writeFileSync('/tmp/sluice-escape-' + real.pid, 'x'); return 'written' }),
    writeScratch: attempt(() => { fs.writeFileSync('scratch.txt', 'x'); return fs.readFileSync('scratch.txt', 'utf8') }),
    spawn: attempt(() => cp.execFileSync('/bin/true')),
    signal: attempt(() => real.kill(1, 0)),
    landlock: real.env.SLUICE_LANDLOCK_ABI,
  }
  return event
}
"""


@pytest.fixture(autouse=True)
def _node() -> None:
    if shutil.which("node") is None:
        skip_or_fail("Node.js is not installed")


async def test_an_escaped_function_still_cannot_touch_the_machine() -> None:
    pool = WorkerPool(FunctionSource(ESCAPE, filename="function.js", language="javascript"))
    async with pool:
        abi = pool.sandbox.get("landlock_abi")
        if not abi:
            skip_or_fail("Landlock is not available on this kernel")
        [result] = await pool.run_events([{"type": "track", "event": "x", "messageId": "m"}])
    assert result["status"] == "ok", result
    seen = result["event"]["properties"]
    assert seen["escaped"] is True  # the vm context alone would not have stopped this
    assert seen["readPasswd"].startswith("denied")
    assert seen["readHome"].startswith("denied")
    assert seen["writeTmp"].startswith("denied")
    assert seen["writeScratch"] == "allowed: x"
    assert seen["spawn"].startswith("denied")
    assert seen["signal"].startswith("denied")
    assert seen["landlock"] == str(abi)
    assert not list(Path("/tmp").glob("sluice-escape-*"))


def test_the_launcher_finds_node_s_dynamic_loader() -> None:
    node = shutil.which("node")
    assert node is not None
    interpreter = elf_interpreter(os.path.realpath(node))
    assert interpreter is not None and os.path.exists(interpreter) and "ld-" in os.path.basename(interpreter)
    assert elf_interpreter("/etc/hostname") is None
