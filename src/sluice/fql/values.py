"""FQL values and built-in functions. Every function here is total: it never raises on JSON-like input.

Values are JSON values (``None``, ``bool``, ``int``/``float``, ``str``, lists, mappings) plus :data:`MISSING`,
the value of a path that leads nowhere. ``MISSING`` differs from ``null`` only for ``=``, ``!=`` and ``in``
(``properties.missing = null`` is false, as in Segment's engine); every function treats it as ``null``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from sluice.fql.glob import compile_glob

__all__ = [
    "FUNCTIONS",
    "MISSING",
    "is_number",
    "strict_equal",
    "typeof",
]


class _Missing:
    """The value of a path that does not exist in the event."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def get(self, key: object, default: object = None) -> _Missing:
        """Lets compiled paths chain ``.get`` through a missing step without an exception."""
        return self


MISSING: Final = _Missing()

_NUMBER_TYPES: Final = (int, float)


def is_number(value: object) -> bool:
    """A JSON number: ``int`` or ``float`` but never ``bool``."""
    return isinstance(value, _NUMBER_TYPES) and not isinstance(value, bool)


def typeof(value: object) -> str:
    """``"string"``, ``"number"``, ``"bool"``, ``"list"``, ``"object"`` or ``"null"`` (also for a missing path)."""
    if value is None or value is MISSING:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, _NUMBER_TYPES):
        return "number"
    if isinstance(value, list | tuple):
        return "list"
    return "object"


def strict_equal(a: object, b: object) -> bool:
    """``=``: the same type and equal; lists and objects compare element by element."""
    try:
        return _strict_equal(a, b)
    except RecursionError:
        return False


def _strict_equal(a: object, b: object) -> bool:
    if a is MISSING or b is MISSING:
        return a is b
    kind = typeof(a)
    if kind != typeof(b):
        return False
    if kind == "list":
        assert isinstance(a, list | tuple) and isinstance(b, list | tuple)
        return len(a) == len(b) and all(_strict_equal(x, y) for x, y in zip(a, b, strict=True))
    if kind == "object":
        if not isinstance(a, Mapping) or not isinstance(b, Mapping):
            return a is b
        if len(a) != len(b):
            return False
        return all(key in b and _strict_equal(value, b[key]) for key, value in a.items())
    return bool(a == b)


# --- functions ------------------------------------------------------------------------------------------------


def fn_contains(s: object, sub: object) -> bool:
    return isinstance(s, str) and isinstance(sub, str) and sub in s


def fn_match(s: object, pattern: object) -> bool:
    if not isinstance(s, str) or not isinstance(pattern, str):
        return False
    matcher = compile_glob(pattern)
    return matcher is not None and matcher(s)


def fn_length(value: object) -> float:
    """Bytes of a string's UTF-8 encoding, elements of a list, 0 for null; NaN (never equal) otherwise."""
    if value is None or value is MISSING:
        return 0
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, list | tuple):
        return len(value)
    return math.nan


def fn_lowercase(value: object) -> str | None:
    return value.lower() if isinstance(value, str) else None


def fn_uppercase(value: object) -> str | None:
    return value.upper() if isinstance(value, str) else None


def fn_snakecase(value: object) -> str | None:
    return value.replace(" ", "_") if isinstance(value, str) else None


def fn_kebabcase(value: object) -> str | None:
    return value.replace(" ", "-") if isinstance(value, str) else None


def fn_titlecase(value: object) -> str | None:
    """The first character of every space-separated word upper-cased; the rest unchanged."""
    if not isinstance(value, str):
        return None
    return " ".join(word[:1].upper() + word[1:] for word in value.split(" "))


def fn_typeof(value: object) -> str:
    return typeof(value)


_TRUE_STRINGS: Final = frozenset({"true", "t", "1"})


def fn_bool(value: object) -> bool:
    """null → false; a number → non-zero; a string → "true", "t" or "1" (any case, trimmed); a list or object →
    non-empty."""
    if value is None or value is MISSING:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, _NUMBER_TYPES):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_STRINGS
    if isinstance(value, list | tuple | Mapping):
        return len(value) > 0
    return False


def format_number(value: float) -> str:
    """A number as JavaScript prints it: ``3``, ``0.5``, ``1e+21``."""
    if isinstance(value, int):
        return str(value) if abs(value) < 10**21 else format_number(float(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else "+"
        text = f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return text


def fn_string(value: object) -> str | None:
    """A string unchanged; null → "null"; true/false; a number as JavaScript prints it; a list or object as JSON."""
    try:
        if isinstance(value, str):
            return value
        if value is None or value is MISSING:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, _NUMBER_TYPES):
            return format_number(value)
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (ValueError, TypeError, RecursionError):
        return None


_NUMBER_TEXT: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def fn_number(value: object) -> float | None:
    """A number unchanged; a string holding a decimal number parsed; anything else null."""
    if isinstance(value, bool):
        return None
    if isinstance(value, _NUMBER_TYPES):
        return value
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 400 or _NUMBER_TEXT.fullmatch(text) is None:
            return None
        return parse_number(text)
    return None


def parse_number(text: str) -> float:
    """``text`` (already validated) as an ``int`` when it is a short integer, else a ``float``."""
    digits = text.lstrip("+-")
    if digits.isdigit() and len(digits) <= 300:
        return int(text)
    return float(text)


# semver: MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD], missing parts are 0, an optional leading "v".
_SEMVER: Final = re.compile(
    r"v?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?",
    re.ASCII,
)
_SemverKey = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]


def _semver_key(text: str) -> _SemverKey | None:
    if len(text) > 256:
        return None
    m = _SEMVER.fullmatch(text.strip())
    if m is None:
        return None
    major, minor, patch, pre = m.group(1), m.group(2) or "0", m.group(3) or "0", m.group(4)
    if pre is None:
        return int(major), int(minor), int(patch), 1, ()
    # Pre-release identifiers: numeric ones sort numerically and before alphanumeric ones.
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return int(major), int(minor), int(patch), 0, ids


_SEMVER_OPS: Final[dict[str, Callable[[_SemverKey, _SemverKey], bool]]] = {
    "=": lambda a, b: a == b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def fn_semver(version: object, op: object, other: object) -> bool:
    """Compare two semantic versions; false for a non-version or an unsupported operator."""
    if not isinstance(version, str) or not isinstance(op, str) or not isinstance(other, str):
        return False
    compare = _SEMVER_OPS.get(op)
    a, b = _semver_key(version), _semver_key(other)
    if compare is None or a is None or b is None:
        return False
    return compare(a, b)


FUNCTIONS: Final[dict[str, tuple[int, Callable[..., Any]]]] = {
    "contains": (2, fn_contains),
    "match": (2, fn_match),
    "length": (1, fn_length),
    "lowercase": (1, fn_lowercase),
    "uppercase": (1, fn_uppercase),
    "snakecase": (1, fn_snakecase),
    "kebabcase": (1, fn_kebabcase),
    "titlecase": (1, fn_titlecase),
    "typeof": (1, fn_typeof),
    "bool": (1, fn_bool),
    "string": (1, fn_string),
    "number": (1, fn_number),
    "semver": (3, fn_semver),
}
"""Name → (number of arguments, implementation). Implementations get ``MISSING`` as is and treat it as null."""
