"""``sluice fql check EXPR [--event FILE] [--json]``: parse an FQL condition, or evaluate it on an event.

Exit codes: 0 — valid (without ``--event``) or the event matches; 1 — the event does not match; 2 — a syntax
error (printed with its position and a caret under the source) or an unreadable event file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from sluice.fql import FqlError, compile_fql, format_tree


@click.group("fql")
def fql_group() -> None:
    """Segment's Filter Query Language (destination filters)."""


def _caret(source: str, position: int) -> str:
    """The source line holding ``position`` and a caret under it."""
    start = source.rfind("\n", 0, position) + 1
    end = source.find("\n", position)
    line = source[start : end if end >= 0 else len(source)]
    return f"  {line}\n  {' ' * (position - start)}^"


@fql_group.command("check")
@click.argument("expr")
@click.option(
    "--event",
    "event_file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="A JSON object to evaluate the condition on ('-' reads stdin).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def fql_check(expr: str, event_file: Path | None, as_json: bool) -> None:
    """Print EXPR's parse tree, or with --event whether the event matches (exit 0 true, 1 false, 2 error)."""
    try:
        condition = compile_fql(expr)
    except FqlError as exc:
        if as_json:
            payload = {"valid": False, "error": str(exc), "position": exc.position, "expected": exc.expected}
            click.echo(orjson.dumps(payload).decode())
        else:
            click.echo(f"error: {exc}\n{_caret(expr, exc.position)}", err=True)
        sys.exit(2)
    if event_file is None:
        if as_json:
            click.echo(orjson.dumps({"valid": True, "tree": format_tree(condition.tree).splitlines()}).decode())
        else:
            click.echo(format_tree(condition.tree))
        return
    try:
        raw = sys.stdin.buffer.read() if str(event_file) == "-" else event_file.read_bytes()
        event = orjson.loads(raw)
    except (OSError, orjson.JSONDecodeError) as exc:
        click.echo(f"error: cannot read the event from {event_file}: {exc}", err=True)
        sys.exit(2)
    if not isinstance(event, dict):
        click.echo(f"error: the event in {event_file} is not a JSON object", err=True)
        sys.exit(2)
    result = condition(event)
    click.echo(orjson.dumps({"valid": True, "result": result}).decode() if as_json else ("true" if result else "false"))
    sys.exit(0 if result else 1)
