"""Test your sluice functions in your own pytest suite.

    from sluice.testing import MockResponse, run_function

    def test_enriches_track():
        run = run_function(
            "my_fn/",                                   # a folder from `sluice fn new`, or a file
            event={"type": "track", "event": "Signed Up", "userId": "u1", "properties": {}},
            settings={"apiKey": "k"},
            mocks=[MockResponse("https://api.example.com/*", json={"tier": "gold"})],
        )
        assert run.status == "ok"
        assert run.event["properties"]["tier"] == "gold"
        assert run.requests[0]["url"] == "https://api.example.com/users/u1"

The function runs in the same isolated worker process as in production; ``fetch`` calls that
match a mock are answered by it (and traced), the others go to the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from sluice.functions.manifest import LoadedFunction
from sluice.functions.run import FunctionRun, MockResponse, arun_function

__all__ = ["FunctionRun", "MockResponse", "arun_function", "run_function"]


def run_function(
    code: str | Path | LoadedFunction,
    event: Any = None,
    *,
    batch: Sequence[Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    schema: Sequence[Mapping[str, Any]] | None = None,
    mocks: Sequence[MockResponse] = (),
    timeout_s: float = 5.0,
    memory_mb: int = 256,
    language: str | None = None,
    store: MutableMapping[str, Any] | None = None,
) -> FunctionRun:
    """Run a function (source text, a file, or a ``fn new`` folder) on one event or a batch.

    Source text is Python unless ``language="javascript"``; a ``.js`` file or a folder whose
    function.toml says ``language = "javascript"`` runs in the Node.js runtime.

    ``store`` (a dict) seeds the function's ``store`` for this run and shows what it left there
    afterwards; without it the run gets an empty in-memory store. Nothing is persisted.

    Raises :class:`sluice.errors.FunctionLoadError` when the code does not load (syntax error,
    forbidden import, no handler); every other failure is a ``status`` on the result.
    """
    return asyncio.run(
        arun_function(
            code,
            event,
            batch=batch,
            settings=settings,
            schema=schema,
            mocks=mocks,
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            language=language,
            store=store,
        )
    )
