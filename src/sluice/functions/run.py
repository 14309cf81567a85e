"""Run a function once on an event or a batch, isolated: ``sluice fn test``, previews, tests.

:mod:`sluice.testing` re-exports this for users' own test suites.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluice.functions.manifest import LoadedFunction, load_function
from sluice.functions.pool import FunctionSource, Limits, WorkerPool
from sluice.functions.settings import SettingSpec, parse_schema
from sluice.functions.store_bridge import MemoryStore


@dataclass(frozen=True, slots=True)
class MockResponse:
    """Answer ``fetch`` calls whose URL matches ``url`` (exact, or a glob with ``*``)."""

    url: str
    status: int = 200
    json: Any = None
    body: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str | None = None
    #: Simulate a network failure: ``fetch`` raises ``FetchError`` with this message.
    error: str | None = None

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "status": self.status, "headers": dict(self.headers)}
        if self.json is not None:
            out["json"] = self.json
        elif self.body is not None:
            out["body"] = self.body
        if self.method:
            out["method"] = self.method
        if self.error:
            out["error"] = self.error
        return out


@dataclass(slots=True)
class FunctionRun:
    """The same fields as ``sluice fn test --json``."""

    status: str
    event: Any = None
    error: dict[str, str] | None = None
    logs: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    duration_ms: float = 0.0
    results: list[dict[str, Any]] | None = None  # batch runs: one {status, event, error} per input

    @property
    def statuses(self) -> list[str]:
        return [r["status"] for r in self.results] if self.results is not None else [self.status]

    @property
    def successful(self) -> bool:
        return all(s in ("ok", "filtered", "dropped") for s in self.statuses)

    def to_dict(self) -> dict[str, Any]:
        base: dict[str, Any] = {"status": self.status}
        if self.results is None:
            base.update(event=self.event, error=self.error)
        else:
            base.update(error=self.error, results=self.results)
        base.update(logs=self.logs, requests=self.requests, durationMs=round(self.duration_ms, 3))
        return base


def _source(
    code: str | Path | LoadedFunction, schema: Sequence[Mapping[str, Any]] | None, language: str | None = None
) -> tuple[FunctionSource, Any]:
    """The source to run; source text is Python unless ``language`` is ``"javascript"``."""
    if isinstance(code, LoadedFunction):
        loaded = code
    elif isinstance(code, Path) or (isinstance(code, str) and "\n" not in code and Path(code).exists()):
        loaded = load_function(code)
    else:
        loaded = LoadedFunction(str(code), "function.js" if language == "javascript" else "function.py", None)
    specs: tuple[SettingSpec, ...] | None = None
    if schema is not None:
        specs = parse_schema(list(schema))
    elif loaded.manifest is not None:
        specs = loaded.manifest.settings
    language = loaded.manifest.language if loaded.manifest else "python"
    if loaded.filename.endswith(".js"):
        language = "javascript"
    return FunctionSource(loaded.code, loaded.filename, language, specs), loaded


async def arun_function(
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
    """Async form of :func:`run_function`.

    The function's ``store`` lives in memory for this run (nothing is persisted, as in previews):
    pass a dict as ``store`` to seed it and to see what the function left in it afterwards.
    """
    if (event is None) == (batch is None):
        raise ValueError("pass exactly one of event= or batch=")
    source, _ = _source(code, schema, language)
    limits = Limits(timeout_s=timeout_s, memory_mb=memory_mb)
    pool = WorkerPool(source, settings or {}, limits=limits, mocks=[m.wire() for m in mocks], store=MemoryStore(store))
    try:
        if not pool.settings_problems:
            await pool.start()
        if batch is not None:
            out = await pool.run_batch(list(batch))
            return FunctionRun(
                status=out["status"],
                error=out.get("error"),
                logs=out.get("logs", []),
                requests=out.get("requests", []),
                duration_ms=out.get("durationMs", 0.0),
                results=out["results"],
            )
        (result,) = await pool.run_events([event])
        return FunctionRun(
            status=result["status"],
            event=result.get("event"),
            error=result.get("error"),
            logs=result.get("logs", []),
            requests=result.get("requests", []),
            duration_ms=result.get("durationMs", 0.0),
        )
    finally:
        await pool.close()
