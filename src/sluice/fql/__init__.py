"""FQL — Segment's Filter Query Language, compiled to Python closures (pure Python, no I/O).

``compile_fql(source)`` returns a :class:`Condition`: call it with an event mapping to get a ``bool``. It is
compiled once and never raises on a JSON-like event (a missing path is a missing value, never an error).
Invalid source raises :class:`FqlError` (a ``ValueError``) naming the 0-based ``position`` and what was
``expected`` there. The language and where sluice departs from Segment's engine: ``docs/fql.md``.
"""

from __future__ import annotations

from sluice.fql.compiler import Condition, compile_fql
from sluice.fql.errors import FqlError
from sluice.fql.syntax import MAX_DEPTH, MAX_SOURCE_LENGTH, format_tree, parse

__all__ = ["MAX_DEPTH", "MAX_SOURCE_LENGTH", "Condition", "FqlError", "compile_fql", "format_tree", "parse"]
