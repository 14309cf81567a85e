"""``sluice fn new`` and ``sluice fn test``."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import click
import orjson

from sluice.cli.templates import FUNCTION_TOML, JAVASCRIPT_FUNCTION, PYTHON_FUNCTION
from sluice.errors import FunctionLoadError, UsageError
from sluice.functions.manifest import SOURCE_FILES, load_function
from sluice.functions.run import FunctionRun, arun_function

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class CliUsage(click.ClickException):
    """A usage error: message on stderr, exit 2."""

    exit_code = EXIT_USAGE


@click.group("fn")
def fn_group() -> None:
    """Write and test insert functions."""


@fn_group.command("new")
@click.argument("name")
@click.option("--lang", type=click.Choice(["python", "js", "javascript"]), default="python", show_default=True)
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
def fn_new(name: str, lang: str, parent: Path) -> None:
    """Create NAME/function.py (or function.js with --lang js) and NAME/function.toml from the template."""
    language = "python" if lang == "python" else "javascript"
    if not _NAME_RE.match(name):
        raise CliUsage(f"invalid function name {name!r}: use letters, digits, '-', '_' or '.'")
    folder = parent / name
    if folder.exists():
        raise CliUsage(f"{folder} already exists; choose another name or remove it")
    folder.mkdir(parents=True)
    source = SOURCE_FILES[language]
    template = PYTHON_FUNCTION if language == "python" else JAVASCRIPT_FUNCTION
    (folder / source).write_text(template.format(name=name), encoding="utf-8")
    (folder / "function.toml").write_text(FUNCTION_TOML.format(name=name, language=language), encoding="utf-8")
    click.echo(f"Created {folder}/{source} and {folder}/function.toml")
    click.echo(f"Try it: sluice fn test {folder} --event event.json")


def _read_json(path: Path, option: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliUsage(f"{option} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliUsage(f"{option} {path}: cannot read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliUsage(f"{option} {path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def _parse_settings(raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    if raw.startswith("@"):
        value = _read_json(Path(raw[1:]), "--settings")
    else:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CliUsage(f"--settings: invalid JSON at column {exc.colno}: {exc.msg}") from None
    if not isinstance(value, dict):
        raise CliUsage('--settings must be a JSON object, e.g. \'{"apiKey": "..."}\'')
    return value


@fn_group.command("test")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--event", "event_file", type=click.Path(path_type=Path), help="A JSON file with one event.")
@click.option("--batch", "batch_file", type=click.Path(path_type=Path), help="A JSON file with an array of events.")
@click.option("--settings", "settings_json", help="Setting values as a JSON object (or @file.json).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1, max=300), default=5.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object.")
def fn_test(
    path: Path,
    event_file: Path | None,
    batch_file: Path | None,
    settings_json: str | None,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Run the function at PATH (a file, or a folder from `fn new`) in the isolated runtime.

    Exit status: 0 when every outcome is ok, filtered or dropped; 1 otherwise; 2 for usage errors.
    """
    if (event_file is None) == (batch_file is None):
        raise CliUsage("give exactly one of --event FILE or --batch FILE")
    settings = _parse_settings(settings_json)
    if event_file is not None:
        event = _read_json(event_file, "--event")
        if isinstance(event, list):
            raise CliUsage(f"--event {event_file}: holds a JSON array; use --batch for several events")
        if not isinstance(event, dict):
            raise CliUsage(f"--event {event_file}: must hold a JSON object (one event)")
        batch = None
    else:
        assert batch_file is not None
        batch = _read_json(batch_file, "--batch")
        if not isinstance(batch, list) or not batch:
            raise CliUsage(f"--batch {batch_file}: must hold a non-empty JSON array of events")
        event = None
    try:
        loaded = load_function(path)
    except UsageError as exc:
        raise CliUsage(str(exc)) from None
    try:
        run = asyncio.run(arun_function(loaded, event, batch=batch, settings=settings, timeout_s=timeout_s))
    except FunctionLoadError as exc:
        run = FunctionRun(status="bad_request", error={"type": type(exc).__name__, "message": str(exc)})
        if batch is not None:
            run.results = [{"status": "bad_request", "event": None, "error": run.error} for _ in batch]
    if as_json:
        sys.stdout.write(orjson.dumps(run.to_dict()).decode() + "\n")
    else:
        _print_human(run, event, batch)
    sys.exit(EXIT_OK if run.successful else EXIT_FAILED)


# --- human output ------------------------------------------------------------------------------

_COLORS = {"ok": "green", "filtered": "yellow", "dropped": "yellow"}


def _status(status: str) -> str:
    return click.style(status, fg=_COLORS.get(status, "red"), bold=True)


def json_diff(before: Any, after: Any, path: str = "") -> list[str]:
    """Lines describing how ``after`` differs from ``before`` (``+`` added, ``-`` removed, ``~`` changed)."""
    if isinstance(before, dict) and isinstance(after, dict):
        lines: list[str] = []
        for key in list(before) + [k for k in after if k not in before]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in after:
                lines.append(f"- {sub}: {_short(before[key])}")
            elif key not in before:
                lines.append(f"+ {sub}: {_short(after[key])}")
            else:
                lines.extend(json_diff(before[key], after[key], sub))
        return lines
    if before != after:
        return [f"~ {path or '(event)'}: {_short(before)} → {_short(after)}"]
    return []


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 120 else text[:117] + "..."


def _print_event(before: Any, after: Any, status: str, indent: str = "  ") -> None:
    if status != "ok":
        return
    diff = json_diff(before, after)
    if not diff:
        click.echo(f"{indent}event unchanged")
    for line in diff:
        click.echo(indent + line)


def _print_human(run: FunctionRun, event: Any, batch: list[Any] | None) -> None:
    click.echo(f"Outcome: {_status(run.status)}  ({run.duration_ms:.1f} ms)")
    if run.error:
        click.echo(f"Error: {run.error['type']}: {run.error['message']}")
    if batch is None:
        if run.status == "ok":
            click.echo("Returned event (diff against input):")
            _print_event(event, run.event, run.status)
    else:
        click.echo(f"Results ({len(run.results or [])} events):")
        for index, (item, result) in enumerate(zip(batch, run.results or [], strict=False)):
            mid = item.get("messageId", "") if isinstance(item, dict) else ""
            label = f"  [{index}] {_status(result['status'])}" + (f"  messageId={mid}" if mid else "")
            if result.get("error"):
                label += f"  {result['error']['type']}: {result['error']['message']}"
            click.echo(label)
            _print_event(item, result.get("event"), result["status"], indent="      ")
    click.echo("Logs:" if run.logs else "Logs: (none)")
    for line in run.logs:
        click.echo(f"  {line}")
    click.echo("Requests:" if run.requests else "Requests: (none)")
    for req in run.requests:
        outcome = req.get("status") if req.get("status") is not None else f"failed: {req.get('error')}"
        click.echo(f"  {req['method']} {req['url']} → {outcome}  ({req.get('durationMs', 0):.1f} ms)")
