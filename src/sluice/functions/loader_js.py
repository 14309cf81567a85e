"""Static checks of a JavaScript function's source: syntax (by ``node --check``) and handlers.

Segment's JavaScript functions define their handlers as top-level functions or function-valued
variables: ``async function onTrack(event, settings) {…}``, ``const onBatch = async (events) =>
…``. This check finds those names by a light scan of the source (the worker makes the real
check when it loads the code: a handler defined some other way still works there).
"""

from __future__ import annotations

import re
import shutil
import subprocess

from sluice.errors import FunctionLoadError, FunctionSyntaxError, NoHandlerError
from sluice.functions.loader import HANDLER_TYPES, StaticInfo, camel_name

__all__ = ["NODE_MISSING", "check_js_source", "node_path"]

NODE_MISSING = "JavaScript functions need Node.js 20 or newer, and node was not found on PATH"
CHECK_TIMEOUT_S = 10.0
_LINE = re.compile(r"^\[stdin\]:(\d+)", re.MULTILINE)
_DEFINED = re.compile(
    r"(?:^|[\s;])(?:async\s+)?function\s*\*?\s*(on[A-Z][A-Za-z]*)\s*\("
    r"|(?:^|[\s;])(?:const|let|var)\s+(on[A-Z][A-Za-z]*)\s*="
    r"|(?:^|[\s;])(?:globalThis|exports|module\.exports)\.(on[A-Z][A-Za-z]*)\s*=",
)


def node_path() -> str | None:
    return shutil.which("node")


def check_js_source(source: str, filename: str = "function.js") -> StaticInfo:
    """Raise a :class:`FunctionLoadError` subclass, or describe the handlers found."""
    node = node_path()
    if node is None:
        raise FunctionLoadError(NODE_MISSING, filename=filename)
    try:
        done = subprocess.run(
            [node, "--check", "-"],
            input=source.encode("utf-8"),
            capture_output=True,
            timeout=CHECK_TIMEOUT_S,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
    except subprocess.TimeoutExpired:
        raise FunctionLoadError("checking the JavaScript syntax took too long", filename=filename) from None
    if done.returncode != 0:
        text = done.stderr.decode("utf-8", errors="replace")
        found = _LINE.search(text)
        message = next((line for line in text.splitlines() if "Error:" in line), "the code is not valid JavaScript")
        raise FunctionSyntaxError(message.strip(), line=int(found.group(1)) if found else None, filename=filename)
    names = {name for match in _DEFINED.finditer(source) for name in match.groups() if name}
    kinds = tuple(kind for kind in HANDLER_TYPES if camel_name(kind) in names)
    if not kinds:
        wanted = ", ".join(camel_name(kind) for kind in HANDLER_TYPES)
        raise NoHandlerError(f"no handler defined: define at least one of {wanted}", filename=filename)
    return StaticInfo(handlers=kinds)
