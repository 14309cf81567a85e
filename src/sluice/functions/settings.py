"""Function settings: the schema a function declares and the values an instance supplies.

A schema entry has the six fields of Segment's Public API: ``name, label, description, type,
required, sensitive``; ``type`` is one of STRING, BOOLEAN, ARRAY (of strings) and TEXT_MAP
(string → string). Values are validated against the schema *before* a handler runs; a failure
becomes the ``invalid_settings`` outcome naming the setting — and never quoting its value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sluice.errors import SettingsSchemaError

SETTING_TYPES = ("STRING", "BOOLEAN", "ARRAY", "TEXT_MAP")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
REDACTED = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class SettingSpec:
    name: str
    label: str
    type: str = "STRING"
    description: str = ""
    required: bool = False
    sensitive: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def name_from_label(label: str) -> str:
    """Segment's auto-generated setting name: camelCase of the label's words."""
    words: list[str] = re.findall(r"[A-Za-z0-9]+", label)
    if not words:
        return "setting"
    first, *rest = words
    head = first.lower() if first.isupper() else first[0].lower() + first[1:]
    name = head + "".join(w[0].upper() + w[1:] for w in rest)
    return name if not name[0].isdigit() else "_" + name


def parse_schema(entries: object) -> tuple[SettingSpec, ...]:
    """Validate a schema given as a list of dicts (from function.toml or the API)."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise SettingsSchemaError("settings must be a list of setting definitions")
    specs: list[SettingSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"settings[{index}]"
        if not isinstance(entry, dict):
            raise SettingsSchemaError(f"{where} must be a table/object")
        unknown = set(entry) - {"name", "label", "description", "type", "required", "sensitive"}
        if unknown:
            raise SettingsSchemaError(f"{where} has unknown field(s): {', '.join(sorted(unknown))}")
        label = entry.get("label", entry.get("name"))
        if not isinstance(label, str) or not label.strip():
            raise SettingsSchemaError(f"{where}.label must be a non-empty string")
        name = entry.get("name") or name_from_label(label)
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise SettingsSchemaError(f"{where}.name must be an identifier (letters, digits, _), got {name!r}")
        if name in seen:
            raise SettingsSchemaError(f"{where}.name {name!r} is defined twice")
        seen.add(name)
        type_ = entry.get("type", "STRING")
        if type_ not in SETTING_TYPES:
            raise SettingsSchemaError(f"{where}.type must be one of {', '.join(SETTING_TYPES)}, got {type_!r}")
        description = entry.get("description", "")
        if not isinstance(description, str):
            raise SettingsSchemaError(f"{where}.description must be a string")
        flags = {}
        for flag in ("required", "sensitive"):
            value = entry.get(flag, False)
            if not isinstance(value, bool):
                raise SettingsSchemaError(f"{where}.{flag} must be true or false")
            flags[flag] = value
        specs.append(SettingSpec(name, label, type_, description, flags["required"], flags["sensitive"]))
    return tuple(specs)


def _type_problem(spec: SettingSpec, value: object) -> str | None:
    if spec.type == "STRING":
        return None if isinstance(value, str) else "must be a string"
    if spec.type == "BOOLEAN":
        return None if isinstance(value, bool) else "must be true or false"
    if spec.type == "ARRAY":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return None
        return "must be an array of strings"
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return None
    return "must be an object mapping strings to strings"


def validate_values(schema: Sequence[SettingSpec], values: Mapping[str, Any]) -> list[str]:
    """Return the problems (empty when valid). Messages name the setting, never its value."""
    problems: list[str] = []
    by_name = {spec.name: spec for spec in schema}
    for spec in schema:
        value = values.get(spec.name)
        missing = value is None or (spec.type == "STRING" and value == "")
        if missing:
            if spec.required:
                problems.append(f"setting '{spec.name}' ({spec.label}) is required")
            continue
        problem = _type_problem(spec, value)
        if problem:
            problems.append(f"setting '{spec.name}' {problem} (type {spec.type})")
    for name in values:
        if name not in by_name:
            problems.append(f"setting '{name}' is not defined in the function's settings")
    return problems


def secret_strings(schema: Sequence[SettingSpec], values: Mapping[str, Any]) -> list[str]:
    """Every string inside a sensitive setting's value (what redaction must hide)."""
    out: list[str] = []
    for spec in schema:
        if not spec.sensitive or spec.name not in values:
            continue
        out.extend(_strings(values[spec.name]))
    # Longest first so that a secret containing another is replaced whole.
    return sorted({s for s in out if s}, key=len, reverse=True)


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every occurrence of every secret string in ``text``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def mask(value: str) -> str:
    """How a write-only secret is shown back: the last four characters at most."""
    tail = value[-4:] if len(value) >= 8 else ""
    return "••••" + tail
