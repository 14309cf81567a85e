"""A function on disk: ``function.py`` (or ``function.js``) beside ``function.toml``.

``function.toml`` holds the same fields as the API's function object::

    displayName = "Enrich with CRM"
    description = "Adds the account tier"
    language = "python"
    resourceType = "INSERT_DESTINATION"
    batchMaxCount = 20

    [[settings]]
    name = "apiKey"
    label = "API Key"
    description = "Key for the CRM"
    type = "STRING"
    required = true
    sensitive = true
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluice.errors import SettingsSchemaError, UsageError
from sluice.functions.settings import SettingSpec, parse_schema

LANGUAGES = ("python", "javascript")
RESOURCE_TYPES = ("INSERT_DESTINATION", "DESTINATION")
MAX_DISPLAY_NAME = 120
MAX_BATCH_COUNT = 400
SOURCE_FILES = {"python": "function.py", "javascript": "function.js"}


@dataclass(frozen=True, slots=True)
class Manifest:
    display_name: str
    description: str = ""
    language: str = "python"
    resource_type: str = "INSERT_DESTINATION"
    batch_max_count: int = 20
    settings: tuple[SettingSpec, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class LoadedFunction:
    code: str
    filename: str
    manifest: Manifest | None  # None for a bare source file


def parse_manifest(data: dict[str, Any], where: str = "function.toml") -> Manifest:
    known = {"displayName", "description", "language", "resourceType", "batchMaxCount", "settings"}
    unknown = set(data) - known
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    name = data.get("displayName", "")
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"{where}: displayName must be a non-empty string")
    if len(name) > MAX_DISPLAY_NAME:
        raise UsageError(f"{where}: displayName is {len(name)} characters, over the {MAX_DISPLAY_NAME} limit")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise UsageError(f"{where}: description must be a string")
    language = data.get("language", "python")
    if language not in LANGUAGES:
        raise UsageError(f"{where}: language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    resource_type = data.get("resourceType", "INSERT_DESTINATION")
    if resource_type not in RESOURCE_TYPES:
        raise UsageError(f"{where}: resourceType must be one of {', '.join(RESOURCE_TYPES)}, got {resource_type!r}")
    batch = data.get("batchMaxCount", 20)
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_BATCH_COUNT:
        raise UsageError(f"{where}: batchMaxCount must be a whole number from 1 to {MAX_BATCH_COUNT}")
    try:
        settings = parse_schema(data.get("settings", []))
    except SettingsSchemaError as exc:
        raise UsageError(f"{where}: {exc}") from None
    return Manifest(name, description, language, resource_type, batch, settings)


def load_function(path: str | Path) -> LoadedFunction:
    """Read a function from a source file or a folder made by ``sluice fn new``."""
    path = Path(path)
    if path.is_dir():
        toml_path = path / "function.toml"
        if not toml_path.is_file():
            raise UsageError(f"{path}: no function.toml in this folder (create one with 'sluice fn new')")
        try:
            data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{toml_path}: invalid TOML: {exc}") from None
        manifest = parse_manifest(data, str(toml_path))
        source = path / SOURCE_FILES[manifest.language]
        if not source.is_file():
            raise UsageError(f"{path}: {source.name} is missing (language is {manifest.language})")
        return LoadedFunction(_read(source), source.name, manifest)
    if not path.is_file():
        raise UsageError(f"{path}: no such file or folder")
    return LoadedFunction(_read(path), path.name, None)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
