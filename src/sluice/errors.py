"""The one exception tree of sluice.

Everything sluice raises on purpose derives from :class:`SluiceError`. The errors that *user
functions* raise to signal an outcome (``DropEvent``, ``RetryError`` …) are a separate, small
tree in :mod:`sluice.fn` — they are part of the user-facing function API, not failures of sluice.
"""

from __future__ import annotations


class SluiceError(Exception):
    """Base class of every error sluice raises on purpose."""


class UsageError(SluiceError):
    """Bad input from a user at the CLI or API (a missing file, invalid JSON …)."""


class ConfigError(SluiceError):
    """Invalid configuration (environment variables, limits, files)."""


# --- functions -------------------------------------------------------------------------------


class FunctionLoadError(SluiceError):
    """User code could not be loaded: it would never run.

    ``line`` is the 1-based line of the problem when one is known.
    """

    kind = "load_error"

    def __init__(self, message: str, *, line: int | None = None, filename: str = "function.py") -> None:
        self.message = message
        self.line = line
        self.filename = filename
        where = f"{filename}, line {line}: " if line is not None else f"{filename}: "
        super().__init__(where + message)

    def to_dict(self) -> dict[str, object]:
        """What the API and ``fn test --json`` show: ``message`` names the file and line."""
        return {"type": type(self).__name__, "message": str(self), "line": self.line}

    def to_wire(self) -> dict[str, object]:
        """Lossless form for the worker pipe (see :meth:`from_wire`)."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "line": self.line,
            "filename": self.filename,
            "module": getattr(self, "module", None),
        }

    @staticmethod
    def from_wire(data: dict[str, object]) -> FunctionLoadError:
        line = data.get("line")
        line = line if isinstance(line, int) else None
        filename = str(data.get("filename") or "function.py")
        kind = data.get("type")
        if kind == "ForbiddenImportError" and isinstance(data.get("module"), str):
            return ForbiddenImportError(str(data["module"]), line=line, filename=filename)
        cls = {"FunctionSyntaxError": FunctionSyntaxError, "NoHandlerError": NoHandlerError}.get(
            str(kind), FunctionLoadError
        )
        return cls(str(data.get("message") or "the function could not be loaded"), line=line, filename=filename)


class FunctionSyntaxError(FunctionLoadError):
    kind = "syntax_error"


class ForbiddenImportError(FunctionLoadError):
    kind = "forbidden_import"

    def __init__(self, module: str, *, line: int | None = None, filename: str = "function.py") -> None:
        self.module = module
        super().__init__(
            f"import of '{module}' is not allowed in a sluice function "
            "(allowed: the standard library and sluice's allow-listed packages)",
            line=line,
            filename=filename,
        )


class NoHandlerError(FunctionLoadError):
    kind = "no_handler"


class SettingsSchemaError(SluiceError):
    """A settings *schema* (not values) is malformed, e.g. in function.toml."""


class RuntimeFailure(SluiceError):
    """The isolated runtime itself failed (a worker could not start, a protocol error)."""


class ProtocolError(RuntimeFailure):
    """A frame on the worker pipe was malformed or out of order."""


class WorkerStartError(RuntimeFailure):
    """A worker process could not be started or did not get ready."""


class PoolClosedError(RuntimeFailure):
    """Work was submitted to a pool that has been closed."""


class StoreLimitError(SluiceError):
    """A function's ``store`` call broke a limit (key length, value size, keys per instance).

    The message names the limit; the function sees it as ``sluice.fn.StoreError``.
    """


# --- control plane ------------------------------------------------------------------------------


class ApiError(SluiceError):
    """A refusal the API shows as ``{"errors": [{"type", "message", "field"?}]}``."""

    status = 400
    type = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.line = line  # for code: the line the problem is on

    def to_dict(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {"type": self.type, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.line is not None:
            out["line"] = self.line
        return out


class Unauthorized(ApiError):
    status = 401
    type = "unauthorized"


class Forbidden(ApiError):
    status = 403
    type = "forbidden"


class NotFound(ApiError):
    status = 404
    type = "not_found"


class Conflict(ApiError):
    status = 409
    type = "conflict"


class InvalidInput(ApiError):
    status = 422
    type = "validation_error"


class RateLimited(ApiError):
    status = 429
    type = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(ApiError):
    """This process does not serve that part (no pipeline, no Tracking API)."""

    status = 503
    type = "unavailable"
