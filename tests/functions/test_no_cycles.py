"""A micro-batch leaves no cyclic garbage behind in the worker.

Reference cycles keep a whole frame's decoded events alive until the garbage collector runs,
and those collections are what made the p99 frame round trip 10× the median. The worker's
loop is run in a separate interpreter (it redirects stdout and logging when it loads code).
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import asyncio, gc, sys
import orjson
from sluice.functions.child_py import FunctionRunner

code = sys.argv[1]
runner = FunctionRunner({"limits": {}}, lambda data: None)
runner.load(code)
loop = asyncio.new_event_loop()
events = [{"type": "track", "messageId": str(i), "properties": {"i": i}} for i in range(100)]
frame = orjson.dumps({"op": "run", "id": 1, "mode": sys.argv[2], "events": events})
for _ in range(3):
    runner.encode_reply(loop.run_until_complete(runner.run_frame(orjson.loads(frame))))
gc.collect()
gc.set_debug(gc.DEBUG_SAVEALL)
for _ in range(10):
    runner.encode_reply(loop.run_until_complete(runner.run_frame(orjson.loads(frame))))
gc.collect()
sys.__stdout__.write(str(len(gc.garbage)))
"""

HANDLERS = {
    "returns": "def on_track(event, settings):\n    return event\n",
    "awaits": (
        "import asyncio\n"
        "async def on_track(event, settings):\n"
        "    await asyncio.sleep(0)\n"
        "    print('seen', event['messageId'])\n"
        "    return event\n"
    ),
    "batch": "async def on_batch(events, settings):\n    return events[:50]\ndef on_track(e, s):\n    return e\n",
}


def garbage_after_frames(code: str, mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, code, mode], capture_output=True, text=True, timeout=120, check=True
    )
    return int(result.stdout)


def test_frames_leave_no_cyclic_garbage() -> None:
    assert garbage_after_frames(HANDLERS["returns"], "single") == 0
    assert garbage_after_frames(HANDLERS["awaits"], "single") == 0
    assert garbage_after_frames(HANDLERS["batch"], "batch") == 0
