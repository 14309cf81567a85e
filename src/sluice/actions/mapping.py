"""Segment mapping-kit directives: build a request body from an event (pure code, no I/O).

A *mapping* is JSON: raw values (strings, numbers, booleans, null, lists, objects) appear in the
output as they are, objects and lists are evaluated recursively, and a *directive* — an object
whose one key starts with ``@`` — is replaced by what it resolves to:

``{"@path": "$.properties.revenue"}``
    The value at a path of the event: ``$.a.b``, ``$.a[0].b``, ``a.b``, ``a.0.b`` (``$`` is the
    event itself and may be left out; ``""``, ``"$"`` and ``"$."`` are the whole event). Keys are
    separated by ``.``, ``[`` and ``]`` (so a key may hold spaces but not those characters; quoted
    keys such as ``['a b']`` are not supported, as in mapping-kit). A list is indexed by a
    decimal number. The value may itself be a directive resolving to the path string.
``{"@if": {"exists": <value>, "then": <value>, "else": <value>}}``
    ``then`` when the value resolves to something other than missing or ``null``, else ``else``.
    ``{"@if": {"blank": …, …}}`` is the same but also treats ``""`` as blank. One of ``exists``
    / ``blank`` and at least one of ``then`` / ``else`` are required; an absent branch is missing.
``{"@template": "Hello {{properties.name}}"}``
    Each ``{{path}}`` (or ``{{{path}}}``) is replaced by the value at that path (same syntax as
    ``@path``): strings as they are (no HTML escaping), numbers and booleans as JSON writes them,
    objects and lists JSON-encoded, missing or ``null`` as ``""``.
``{"@literal": <value>}``
    The value, evaluated like any value (as mapping-kit does, directives inside it are resolved).
``{"@case": {"operator": "lower" | "upper", "value": <value>}}``
    The value lower- or upper-cased when it resolves to a string; any other value unchanged.
``{"@arrayPath": ["$.properties.products", {"id": {"@path": "$.product_id"}}]}``
    The value at the path (a string as for ``@path``), or the value a directive in its place
    resolves to (``{"@if": …}`` choosing between two lists, say). With a non-empty item
    shape, a list is mapped item by item with the shape (paths inside the shape are relative to
    the item), and an object is treated as a one-item list; anything else is returned as is.
``{"@json": {"mode": "encode" | "decode", "value": <value>}}``
    ``encode``: the value as a compact JSON string. ``decode``: a string parsed as JSON (a
    string that is not JSON makes the result missing); any other value unchanged.
``{"@merge": {"objects": [<value>, …], "direction": "left" | "right"}}``
    A shallow merge of the values that resolve to objects (others are skipped). ``right``: later
    objects win a key; ``left``: earlier objects win.

**Missing values** (a path that leads nowhere, an ``@if`` without the branch it needs …): a key
whose value is missing is left out of its object, as mapping-kit does; in a list it becomes
``null`` (as ``JSON.stringify`` writes ``undefined`` in an array); a whole mapping that resolves
to missing gives ``None``.

:func:`compile_mapping` validates a mapping once and raises :class:`MappingError` naming where
the problem is (``mapping.user.@path``); the :class:`Mapper` it returns never raises on a
JSON-like event. The result may share sub-objects and lists with the event: treat it as read-only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

__all__ = ["DIRECTIVES", "MAX_MAPPING_DEPTH", "Mapper", "MappingError", "compile_mapping", "get_path"]


class _Missing:
    """The JavaScript ``undefined`` of mapping-kit: a value that is not there."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()

#: A compiled node: event (or list item, inside ``@arrayPath``) → value or ``MISSING``.
_Node = Callable[[Any], Any]

#: The directives a mapping may use.
DIRECTIVES: Final = frozenset({"@path", "@if", "@template", "@literal", "@case", "@arrayPath", "@json", "@merge"})
#: How deeply a mapping may nest objects, lists and directives.
MAX_MAPPING_DEPTH: Final = 32

#: mapping-kit allows a ``_metadata`` key beside a directive (its UI stores notes there); ignored.
_METADATA_KEY = "_metadata"
_PATH_TOKENS = re.compile(r"[^.\[\]]+")
_INDEX = re.compile(r"0|[1-9][0-9]*")
_PLACEHOLDER = re.compile(r"\{\{\{([^}]+)\}\}\}|\{\{([^}]+)\}\}")


class MappingError(ValueError):
    """An invalid mapping. ``location`` names where (``mapping.user.@path``), ``message`` what."""

    def __init__(self, location: str, message: str) -> None:
        self.location = location
        self.message = message
        super().__init__(f"{location}: {message}")


class Mapper:
    """A compiled mapping: ``mapper(event)`` is the mapped value (never raises on JSON-like events)."""

    __slots__ = ("_node", "source")

    def __init__(self, source: Any, node: _Node) -> None:
        self.source = source
        self._node = node

    def __call__(self, event: Mapping[str, Any]) -> Any:
        value = self._node(event)
        return None if value is MISSING else value

    def __repr__(self) -> str:
        return f"Mapper({self.source!r})"


# --- paths ------------------------------------------------------------------------------------------


def _path_tokens(path: str) -> tuple[str, ...]:
    if path.startswith("$") and (len(path) == 1 or path[1] in ".["):
        path = path[1:]
    return tuple(_PATH_TOKENS.findall(path))


def _walk(root: Any, tokens: tuple[str, ...]) -> Any:
    value = root
    for token in tokens:
        if isinstance(value, Mapping):
            value = value.get(token, MISSING)
        elif isinstance(value, list) and len(token) <= 18 and _INDEX.fullmatch(token) and int(token) < len(value):
            value = value[int(token)]
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value


def get_path(root: Any, path: str) -> Any:
    """The value at ``path`` (``@path`` syntax) in ``root``, or ``None`` when there is none."""
    value = _walk(root, _path_tokens(path))
    return None if value is MISSING else value


# --- value conversions ------------------------------------------------------------------------------


def _json_encode(value: Any) -> str | _Missing:
    try:
        return orjson.dumps(value).decode()
    except (TypeError, ValueError, RecursionError):  # not JSON-like, or nested too deeply
        return MISSING


def _json_decode(text: str) -> Any:
    try:
        return orjson.loads(text)
    except (ValueError, RecursionError):
        return MISSING


def _template_text(value: Any) -> str:
    if value is MISSING or value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    encoded = _json_encode(value)
    return "" if isinstance(encoded, _Missing) else encoded


# --- compilation ------------------------------------------------------------------------------------


def _const(value: Any) -> _Node:
    def node(_event: Any) -> Any:
        return value

    return node


def _is_directive(value: Any) -> bool:
    return isinstance(value, Mapping) and any(isinstance(k, str) and k.startswith("@") for k in value)


def _compile(value: Any, loc: str, depth: int) -> _Node:
    if depth > MAX_MAPPING_DEPTH:
        raise MappingError(loc, f"the mapping nests more than {MAX_MAPPING_DEPTH} levels deep")
    if value is None or isinstance(value, str | bool | int):
        return _const(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MappingError(loc, "numbers must be finite")
        return _const(value)
    if isinstance(value, list):
        items = [_compile(item, f"{loc}[{i}]", depth + 1) for i, item in enumerate(value)]

        def list_node(event: Any) -> Any:
            out = []
            for item in items:
                resolved = item(event)
                out.append(None if resolved is MISSING else resolved)
            return out

        return list_node
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise MappingError(loc, f"object keys must be strings, not {key!r}")
        if _is_directive(value):
            return _compile_directive(value, loc, depth)
        fields = [(key, _compile(item, f"{loc}.{key}", depth + 1)) for key, item in value.items()]

        def object_node(event: Any) -> Any:
            out = {}
            for key, node in fields:
                resolved = node(event)
                if resolved is not MISSING:
                    out[key] = resolved
            return out

        return object_node
    raise MappingError(loc, f"{type(value).__name__} is not a JSON value")


def _compile_directive(value: Mapping[str, Any], loc: str, depth: int) -> _Node:
    names = [k for k in value if k.startswith("@")]
    others = [k for k in value if not k.startswith("@") and k != _METADATA_KEY]
    if len(names) > 1:
        raise MappingError(loc, f"a directive object has exactly one @-key; this one has {', '.join(names)}")
    name = names[0]
    if others:
        raise MappingError(
            loc,
            f"a directive ({name}) cannot share its object with other keys ({', '.join(others)}); "
            f"put it under a key of its own",
        )
    where = f"{loc}.{name}"
    compiler = _DIRECTIVE_COMPILERS.get(name)
    if compiler is None:
        raise MappingError(where, f"unknown directive {name} (known: {', '.join(sorted(DIRECTIVES))})")
    return compiler(value[name], where, depth + 1)


def _options(
    value: Any, loc: str, name: str, *, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or _is_directive(value):
        fields = ", ".join(f'"{k}"' for k in (*required, *optional))
        raise MappingError(loc, f"{name} takes an object with {fields}")
    for key in value:
        if key not in required and key not in optional:
            allowed = ", ".join(f'"{k}"' for k in (*required, *optional))
            raise MappingError(f"{loc}.{key}", f"{name} has no option {key!r} (allowed: {allowed})")
    for key in required:
        if key not in value:
            raise MappingError(loc, f'{name} requires "{key}"')
    return value


def _string_or_directive(value: Any, loc: str, depth: int, what: str) -> _Node:
    """A string (returned as is) or a directive that should resolve to one."""
    if isinstance(value, str):
        return _const(value)
    if _is_directive(value):
        return _compile(value, loc, depth)
    raise MappingError(loc, f"{what} must be a string or a directive")


def _choice(value: Any, loc: str, name: str, option: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        listed = " or ".join(f'"{c}"' for c in choices)
        raise MappingError(f"{loc}.{option}", f"{name} {option} must be {listed}, not {value!r}")
    return str(value)


def _path_node(path_node: _Node) -> _Node:
    """Looks up the path the node resolves to (constant paths are parsed once)."""
    cache: dict[str, tuple[str, ...]] = {}

    def node(event: Any) -> Any:
        path = path_node(event)
        if not isinstance(path, str):
            return MISSING
        tokens = cache.get(path)
        if tokens is None:
            tokens = _path_tokens(path)
            if len(cache) < 64:
                cache[path] = tokens
        return _walk(event, tokens)

    return node


def _compile_path(value: Any, loc: str, depth: int) -> _Node:
    if isinstance(value, str):
        tokens = _path_tokens(value)
        return lambda event: _walk(event, tokens)
    return _path_node(_string_or_directive(value, loc, depth, "@path"))


def _compile_if(value: Any, loc: str, depth: int) -> _Node:
    opts = _options(value, loc, "@if", required=(), optional=("exists", "blank", "then", "else"))
    tests = [k for k in ("exists", "blank") if k in opts]
    if len(tests) != 1:
        raise MappingError(loc, '@if requires exactly one of "exists" or "blank"')
    if "then" not in opts and "else" not in opts:
        raise MappingError(loc, '@if requires "then", "else" or both')
    kind = tests[0]
    test = _compile(opts[kind], f"{loc}.{kind}", depth + 1)
    then = _compile(opts["then"], f"{loc}.then", depth + 1) if "then" in opts else None
    other = _compile(opts["else"], f"{loc}.else", depth + 1) if "else" in opts else None
    blank = kind == "blank"

    def node(event: Any) -> Any:
        tested = test(event)
        holds = tested is not MISSING and tested is not None and not (blank and tested == "")
        branch = then if holds else other
        return MISSING if branch is None else branch(event)

    return node


def _compile_template(value: Any, loc: str, depth: int) -> _Node:
    if isinstance(value, str):
        return _template_node(value)
    source = _string_or_directive(value, loc, depth, "@template")
    cache: dict[str, _Node] = {}

    def node(event: Any) -> Any:
        template = source(event)
        if not isinstance(template, str):
            return MISSING
        render = cache.get(template) or _template_node(template)
        if len(cache) < 64:
            cache[template] = render
        return render(event)

    return node


def _template_node(template: str) -> _Node:
    parts: list[str | tuple[str, ...]] = []
    end = 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(template[end : match.start()])
        parts.append(_path_tokens((match.group(1) or match.group(2)).strip()))
        end = match.end()
    parts.append(template[end:])
    if len(parts) == 1:
        return _const(template)

    def node(event: Any) -> Any:
        return "".join(p if isinstance(p, str) else _template_text(_walk(event, p)) for p in parts)

    return node


def _compile_literal(value: Any, loc: str, depth: int) -> _Node:
    return _compile(value, loc, depth)


def _compile_case(value: Any, loc: str, depth: int) -> _Node:
    opts = _options(value, loc, "@case", required=("operator", "value"))
    operator = _choice(opts["operator"], loc, "@case", "operator", ("lower", "upper"))
    inner = _compile(opts["value"], f"{loc}.value", depth + 1)
    change: Callable[[str], str] = str.lower if operator == "lower" else str.upper

    def node(event: Any) -> Any:
        resolved = inner(event)
        return change(resolved) if isinstance(resolved, str) else resolved

    return node


def _compile_array_path(value: Any, loc: str, depth: int) -> _Node:
    if not isinstance(value, list) or not 1 <= len(value) <= 2:
        raise MappingError(loc, "@arrayPath takes a list: [path] or [path, item shape]")
    first = value[0]
    if isinstance(first, str):  # a path; a directive gives the value itself (as in mapping-kit)
        root = _compile_path(first, f"{loc}[0]", depth + 1)
    else:
        root = _string_or_directive(first, f"{loc}[0]", depth + 1, "the @arrayPath path")
    shape_source = value[1] if len(value) == 2 else None
    if shape_source is not None and not isinstance(shape_source, Mapping):
        raise MappingError(f"{loc}[1]", "the @arrayPath item shape must be an object")
    if not shape_source:
        return root
    shape = _compile(shape_source, f"{loc}[1]", depth + 1)

    def node(event: Any) -> Any:
        found = root(event)
        if isinstance(found, list):
            return [_none_if_missing(shape(item)) for item in found]
        if isinstance(found, Mapping):
            return [_none_if_missing(shape(found))]
        return found

    return node


def _none_if_missing(value: Any) -> Any:
    return None if value is MISSING else value


def _compile_json(value: Any, loc: str, depth: int) -> _Node:
    opts = _options(value, loc, "@json", required=("mode", "value"))
    mode = _choice(opts["mode"], loc, "@json", "mode", ("encode", "decode"))
    inner = _compile(opts["value"], f"{loc}.value", depth + 1)
    if mode == "encode":

        def encode(event: Any) -> Any:
            resolved = inner(event)
            return MISSING if resolved is MISSING else _json_encode(resolved)

        return encode

    def decode(event: Any) -> Any:
        resolved = inner(event)
        return _json_decode(resolved) if isinstance(resolved, str) else resolved

    return decode


def _compile_merge(value: Any, loc: str, depth: int) -> _Node:
    opts = _options(value, loc, "@merge", required=("objects", "direction"))
    direction = _choice(opts["direction"], loc, "@merge", "direction", ("left", "right"))
    if not isinstance(opts["objects"], list):
        raise MappingError(f"{loc}.objects", "@merge objects must be a list")
    objects = [_compile(item, f"{loc}.objects[{i}]", depth + 1) for i, item in enumerate(opts["objects"])]
    if direction == "left":
        objects.reverse()

    def node(event: Any) -> Any:
        out: dict[str, Any] = {}
        for item in objects:
            resolved = item(event)
            if isinstance(resolved, Mapping):
                out.update(resolved)
        return out

    return node


_DIRECTIVE_COMPILERS: dict[str, Callable[[Any, str, int], _Node]] = {
    "@path": _compile_path,
    "@if": _compile_if,
    "@template": _compile_template,
    "@literal": _compile_literal,
    "@case": _compile_case,
    "@arrayPath": _compile_array_path,
    "@json": _compile_json,
    "@merge": _compile_merge,
}
assert _DIRECTIVE_COMPILERS.keys() == DIRECTIVES


def compile_mapping(mapping: Any, *, location: str = "mapping") -> Mapper:
    """Validates ``mapping`` once and returns its :class:`Mapper`.

    Raises :class:`MappingError` for an unknown ``@`` directive, a directive of the wrong shape
    or a value that is not JSON; its ``location`` starts with ``location`` (``mapping.user.@path``).
    """
    return Mapper(mapping, _compile(mapping, location, 0))
