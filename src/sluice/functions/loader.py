"""Static checks of a Python function's source: syntax, imports and handlers.

Runs in the parent (``fn test``, the API's save) *without executing user code*, and again in
the worker before ``exec``. Every problem names the line and, for imports, the module.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass

from sluice.errors import ForbiddenImportError, FunctionSyntaxError, NoHandlerError

EVENT_HANDLER_TYPES = ("track", "identify", "page", "screen", "group", "alias", "delete")
HANDLER_TYPES = (*EVENT_HANDLER_TYPES, "batch")


def snake_name(kind: str) -> str:
    return f"on_{kind}"


def camel_name(kind: str) -> str:
    return "on" + kind[0].upper() + kind[1:]


HANDLER_NAMES: dict[str, str] = {}
for _kind in HANDLER_TYPES:
    HANDLER_NAMES[snake_name(_kind)] = _kind
    HANDLER_NAMES[camel_name(_kind)] = _kind

#: Third-party packages shipped with sluice that functions may import (DESIGN §3.1).
ALLOWED_PACKAGES = frozenset({"httpx", "jwt", "phonenumbers", "xmltodict", "dateutil", "pendulum", "orjson"})

#: Standard-library modules refused because they only serve to escape the worker's isolation.
FORBIDDEN_STDLIB = frozenset(
    {
        "subprocess",
        "multiprocessing",
        "concurrent.futures.process",
        "ctypes",
        "_ctypes",
        "_posixsubprocess",
        "pty",
        "signal",
        "resource",
        "faulthandler",
        "tracemalloc",
    }
)

#: The only part of sluice a function may import.
ALLOWED_SLUICE = frozenset({"sluice", "sluice.fn"})


def import_allowed(module: str) -> bool:
    top = module.split(".", 1)[0]
    if top == "sluice":
        return module in ALLOWED_SLUICE
    if module in FORBIDDEN_STDLIB or top in FORBIDDEN_STDLIB:
        return False
    return top in sys.stdlib_module_names or top in ALLOWED_PACKAGES


@dataclass(frozen=True, slots=True)
class StaticInfo:
    """What the parent knows about a function without running it."""

    handlers: tuple[str, ...]  # event kinds with a handler, e.g. ("track", "batch")


def check_source(source: str, filename: str = "function.py") -> StaticInfo:
    """Raise a :class:`FunctionLoadError` subclass, or describe the handlers found.

    A ``.js`` filename is checked as JavaScript (:mod:`sluice.functions.loader_js`)."""
    if filename.endswith(".js"):
        from sluice.functions.loader_js import check_js_source  # it builds on this module

        return check_js_source(source, filename)
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise FunctionSyntaxError(f"syntax error: {exc.msg}", line=exc.lineno, filename=filename) from None
    except ValueError as exc:  # e.g. source containing NUL bytes
        raise FunctionSyntaxError(f"cannot parse source: {exc}", filename=filename) from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not import_allowed(alias.name):
                    raise ForbiddenImportError(alias.name, line=node.lineno, filename=filename)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise ForbiddenImportError("." * node.level + (node.module or ""), line=node.lineno)
            module = node.module or ""
            if module == "sluice":
                bad = [a.name for a in node.names if f"sluice.{a.name}" not in ALLOWED_SLUICE]
                if bad:
                    raise ForbiddenImportError(f"sluice.{bad[0]}", line=node.lineno, filename=filename)
            elif not import_allowed(module):
                raise ForbiddenImportError(module, line=node.lineno, filename=filename)
    kinds: list[str] = []
    for node in tree.body:
        names: list[str] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        for name in names:
            kind = HANDLER_NAMES.get(name)
            if kind and kind not in kinds:
                kinds.append(kind)
    if not kinds:
        expected = ", ".join(snake_name(k) for k in HANDLER_TYPES)
        raise NoHandlerError(
            f"no handler defined: define at least one of {expected} (or Segment's camelCase names)",
            filename=filename,
        )
    return StaticInfo(handlers=tuple(k for k in HANDLER_TYPES if k in kinds))
