"""Destination filters as values: a parsed, validated filter document (Segment's Public API shape).

A filter document is ``{"if", "actions", "sourceId"?, "title"?, "description"?, "enabled"?}``.
:func:`parse_filter` validates it and compiles the FQL condition once; every refusal is an
:class:`~sluice.errors.InvalidInput` naming the field (``if``, ``actions[0].percent``, ``title`` …).
Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sluice.errors import InvalidInput
from sluice.fql import FqlError, compile_fql

__all__ = [
    "ACTION_TYPES",
    "ALWAYS_KEPT",
    "MAX_ACTIONS",
    "MAX_DESCRIPTION",
    "MAX_FQL_BYTES",
    "MAX_TITLE",
    "UNDROPPABLE",
    "Action",
    "AllowProperties",
    "DestinationFilter",
    "Drop",
    "DropProperties",
    "Predicate",
    "Sample",
    "compile_condition",
    "parse_actions",
    "parse_filter",
]

#: An FQL condition is at most 5 KB (UTF-8), as in Segment.
MAX_FQL_BYTES: Final = 5 * 1024
MAX_TITLE: Final = 64
MAX_DESCRIPTION: Final = 1000
MAX_ACTIONS: Final = 20
#: Paths per ALLOW/DROP_PROPERTIES action, and keys per path.
MAX_PATHS: Final = 50
MAX_KEYS: Final = 200
MAX_PATH_CHARS: Final = 500

ACTION_TYPES: Final = ("SAMPLE", "DROP", "DROP_PROPERTIES", "ALLOW_PROPERTIES")  # Segment's order of application

#: Top-level fields that ALLOW_PROPERTIES at ``""`` always keeps: what identifies and times an event
#: and what the spec requires per type (without them no destination could take the event).
ALWAYS_KEPT: Final = frozenset(
    {
        "type",
        "messageId",
        "userId",
        "anonymousId",
        "event",
        "name",
        "groupId",
        "previousId",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "receivedAt",
    }
)
#: Top-level fields DROP_PROPERTIES at ``""`` refuses to drop (the pipeline needs them).
UNDROPPABLE: Final = frozenset({"type", "messageId"})


#: What a filter's condition is to the engine: a compiled FQL condition (:func:`sluice.fql.compile_fql`),
#: or any callable of the same shape.
Predicate = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class Drop:
    """Drop every matching event."""

    def to_document(self) -> dict[str, Any]:
        return {"type": "DROP"}

    def describe(self) -> str:
        return "DROP"


@dataclass(frozen=True, slots=True)
class Sample:
    """Keep ``percent`` (0–1) of the matching events: at random, or by a stable hash of the value at ``path``."""

    percent: float
    path: str | None = None
    segments: tuple[str, ...] = field(default=(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.path is not None:
            object.__setattr__(self, "segments", tuple(self.path.split(".")))

    def to_document(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "SAMPLE", "percent": self.percent}
        if self.path is not None:
            out["path"] = self.path
        return out

    def describe(self) -> str:
        share = f"{self.percent * 100:g}%"
        return f"SAMPLE {share}" + (f" by {self.path}" if self.path is not None else "")


def _segments(path: str) -> tuple[str, ...]:
    return () if path == "" else tuple(path.split("."))


@dataclass(frozen=True, slots=True)
class _Properties:
    #: path (``""`` = top level) → the keys of the object(s) at that path
    fields: tuple[tuple[str, frozenset[str]], ...]
    compiled: tuple[tuple[tuple[str, ...], frozenset[str]], ...] = field(
        default=(), init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        # ALLOW at the top level always keeps ALWAYS_KEPT: the engine uses these key sets as they are
        top = ALWAYS_KEPT if isinstance(self, AllowProperties) else frozenset()
        compiled = tuple((_segments(p), keys | top if p == "" else keys) for p, keys in self.fields)
        object.__setattr__(self, "compiled", compiled)

    def _fields_document(self) -> dict[str, list[str]]:
        return {path: sorted(keys) for path, keys in self.fields}


@dataclass(frozen=True, slots=True)
class DropProperties(_Properties):
    """Remove the listed keys from the object(s) at each path."""

    def to_document(self) -> dict[str, Any]:
        return {"type": "DROP_PROPERTIES", "fields": self._fields_document()}

    def describe(self) -> str:
        return "DROP_PROPERTIES"


@dataclass(frozen=True, slots=True)
class AllowProperties(_Properties):
    """Keep only the listed keys in the object(s) at each path (plus :data:`ALWAYS_KEPT` at the top level)."""

    def to_document(self) -> dict[str, Any]:
        return {"type": "ALLOW_PROPERTIES", "fields": self._fields_document()}

    def describe(self) -> str:
        return "ALLOW_PROPERTIES"


Action = Drop | Sample | DropProperties | AllowProperties


@dataclass(frozen=True, slots=True)
class DestinationFilter:
    """One validated filter with its condition compiled. ``source_id`` None = events of every source."""

    if_: str
    condition: Predicate = field(compare=False, repr=False)
    actions: tuple[Action, ...]
    id: str | None = None
    destination_id: str | None = None
    source_id: str | None = None
    title: str = ""
    description: str = ""
    enabled: bool = True
    # the actions by phase, for apply_filters
    samples: tuple[Sample, ...] = field(default=(), init=False, compare=False, repr=False)
    drops: bool = field(default=False, init=False, compare=False, repr=False)
    drop_properties: tuple[DropProperties, ...] = field(default=(), init=False, compare=False, repr=False)
    allow_properties: tuple[AllowProperties, ...] = field(default=(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples", tuple(a for a in self.actions if isinstance(a, Sample)))
        object.__setattr__(self, "drops", any(isinstance(a, Drop) for a in self.actions))
        object.__setattr__(self, "drop_properties", tuple(a for a in self.actions if isinstance(a, DropProperties)))
        object.__setattr__(self, "allow_properties", tuple(a for a in self.actions if isinstance(a, AllowProperties)))

    @property
    def label(self) -> str:
        """How reasons name the filter: its title, else its id, else its condition."""
        return self.title or self.id or f"if {self.if_}"

    def to_document(self) -> dict[str, Any]:
        """The filter's own fields as the API shows them (without id, destination and times)."""
        return {
            "sourceId": self.source_id,
            "if": self.if_,
            "actions": [a.to_document() for a in self.actions],
            "title": self.title,
            "description": self.description,
            "enabled": self.enabled,
        }


# --- parsing --------------------------------------------------------------------------------------


def compile_condition(source: object) -> Predicate:
    """Compile an ``if``: a 422 on ``if`` naming the position when the FQL is invalid."""
    if not isinstance(source, str) or not source.strip():
        raise InvalidInput("if (an FQL condition, e.g. 'all') is required", field="if")
    size = len(source.encode("utf-8"))
    if size > MAX_FQL_BYTES:
        raise InvalidInput(f"if is {size} bytes; an FQL condition is at most {MAX_FQL_BYTES} bytes", field="if")
    try:
        return compile_fql(source)
    except FqlError as exc:
        raise InvalidInput(
            f"invalid FQL at position {exc.position}: {exc.message} (expected {exc.expected})", field="if"
        ) from None
    except RecursionError:
        raise InvalidInput("invalid FQL: the condition is nested too deeply", field="if") from None


def _percent(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput("percent must be a number from 0 to 1 (the share of events kept)", field=where)
    percent = float(value)
    if math.isnan(percent) or not 0.0 <= percent <= 1.0:
        raise InvalidInput(f"percent must be from 0 to 1 (the share of events kept), not {value!r}", field=where)
    return percent


def _path(value: object, where: str, *, allow_top: bool) -> str:
    if not isinstance(value, str):
        raise InvalidInput("a path is a string of dot-separated keys, e.g. 'properties.user'", field=where)
    if value == "":
        if allow_top:
            return value
        raise InvalidInput("path must not be empty", field=where)
    if len(value) > MAX_PATH_CHARS:
        raise InvalidInput(f"a path is at most {MAX_PATH_CHARS} characters", field=where)
    if any(part == "" for part in value.split(".")):
        raise InvalidInput(f"path {value!r} has an empty key (two dots, or a dot at an end)", field=where)
    return value


def _fields(value: object, where: str, kind: str) -> tuple[tuple[str, frozenset[str]], ...]:
    if not isinstance(value, Mapping) or not value:
        raise InvalidInput(
            'fields must be an object of paths to key lists, e.g. {"properties": ["email"]} ("" = top level)',
            field=where,
        )
    if len(value) > MAX_PATHS:
        raise InvalidInput(f"fields has {len(value)} paths; at most {MAX_PATHS}", field=where)
    out: list[tuple[str, frozenset[str]]] = []
    for path, keys in value.items():
        key_field = f"{where}.{path}" if path else f'{where}[""]'
        _path(path, key_field, allow_top=True)
        if not isinstance(keys, list | tuple) or not keys:
            raise InvalidInput(f"fields[{path!r}] must be a non-empty list of keys", field=key_field)
        if len(keys) > MAX_KEYS:
            raise InvalidInput(f"fields[{path!r}] lists {len(keys)} keys; at most {MAX_KEYS}", field=key_field)
        for index, key in enumerate(keys):
            if not isinstance(key, str) or not key or len(key) > MAX_PATH_CHARS:
                raise InvalidInput("a key is a non-empty string", field=f"{key_field}[{index}]")
            if kind == "DROP_PROPERTIES" and path == "" and key in UNDROPPABLE:
                raise InvalidInput(
                    f"{key!r} cannot be dropped from the top level (every event keeps type and messageId)",
                    field=f"{key_field}[{index}]",
                )
        out.append((path, frozenset(keys)))
    return tuple(out)


_ACTION_KEYS: Final = {
    "DROP": frozenset({"type"}),
    "SAMPLE": frozenset({"type", "percent", "path"}),
    "DROP_PROPERTIES": frozenset({"type", "fields"}),
    "ALLOW_PROPERTIES": frozenset({"type", "fields"}),
}


def _action(value: object, where: str) -> Action:
    if not isinstance(value, Mapping):
        raise InvalidInput("an action is an object with a type", field=where)
    kind = value.get("type")
    if kind not in _ACTION_KEYS:
        raise InvalidInput(f"type must be one of {', '.join(ACTION_TYPES)}", field=f"{where}.type")
    for key, item in value.items():
        # null counts as absent (a SAMPLE with "path": null, a DROP with "fields": null)
        if key not in _ACTION_KEYS[kind] and item is not None:
            raise InvalidInput(f"a {kind} action has no field {key!r}", field=f"{where}.{key}")
    if kind == "DROP":
        return Drop()
    if kind == "SAMPLE":
        if value.get("percent") is None:
            raise InvalidInput(
                "a SAMPLE action needs percent (0–1, the share of events kept)", field=f"{where}.percent"
            )
        percent = _percent(value["percent"], f"{where}.percent")
        path = value.get("path")
        return Sample(percent, None if path is None else _path(path, f"{where}.path", allow_top=False))
    fields = _fields(value.get("fields"), f"{where}.fields", str(kind))
    return DropProperties(fields) if kind == "DROP_PROPERTIES" else AllowProperties(fields)


def parse_actions(value: object) -> tuple[Action, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise InvalidInput('actions must be a non-empty list, e.g. [{"type": "DROP"}]', field="actions")
    if len(value) > MAX_ACTIONS:
        raise InvalidInput(f"a filter has at most {MAX_ACTIONS} actions", field="actions")
    return tuple(_action(item, f"actions[{index}]") for index, item in enumerate(value))


def _text(data: Mapping[str, Any], name: str, limit: int) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", field=name)
    if len(value) > limit:
        raise InvalidInput(f"{name} is {len(value)} characters; at most {limit}", field=name)
    return value


def parse_filter(
    document: Mapping[str, Any], *, id: str | None = None, destination_id: str | None = None
) -> DestinationFilter:
    """Validate a filter document and compile its condition (raises :class:`InvalidInput`)."""
    if not isinstance(document, Mapping):
        raise InvalidInput("a filter is an object with if and actions", field="body")
    condition = compile_condition(document.get("if"))
    actions = parse_actions(document.get("actions"))
    source_id = document.get("sourceId")
    if source_id is not None and (not isinstance(source_id, str) or not source_id):
        raise InvalidInput("sourceId must be a source's id (or null: every source)", field="sourceId")
    enabled = document.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidInput("enabled must be true or false", field="enabled")
    return DestinationFilter(
        if_=str(document["if"]),
        condition=condition,
        actions=actions,
        id=id,
        destination_id=destination_id,
        source_id=source_id,
        title=_text(document, "title", MAX_TITLE),
        description=_text(document, "description", MAX_DESCRIPTION),
        enabled=enabled,
    )
