"""``sluice replay`` and ``sluice tail``: a destination's dead letters and live outcomes, through the API.

``replay`` re-queues dead letters (``POST /api/destinations/{id}/replay``) and shows them leaving
the queue; ``tail`` polls ``GET /api/destinations/{id}/outcomes`` and prints one line per event.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from sluice.cli.remote import ApiClient, find_one, profile_option, resolve_remote

__all__ = ["DEAD_LETTER_STATUSES", "OUTCOMES", "format_line", "parse_since", "replay", "tail"]

POLL_S = 0.5
SUMMARY_WAIT_S = 3.0
#: Outcomes kept as dead letters, the ones a replay can re-queue (``sluice.pipeline.stages``;
#: spelled out here so that the CLI starts without importing the delivery code).
DEAD_LETTER_STATUSES = ("expired", "bad_request", "invalid_settings", "rejected_by_destination")
#: Every ``sluice.delivery.outcomes.Outcome``.
OUTCOMES = (
    "delivered",
    "filtered",
    "dropped",
    "unsupported_event_type",
    "message_rejected",
    "retrying",
    "expired",
    "bad_request",
    "invalid_settings",
    "timeout",
    "rejected_by_destination",
)
MAX_CURSOR = 2**63 - 1  # "after" from the future: the server answers with its newest line
PAGE = 500  # the server's default page of outcome lines

_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (naive: UTC) or an age such as ``30m``, ``2h``, ``1d`` before ``now``."""
    age = _AGE.match(value)
    if age:
        moment = (now or datetime.now(UTC)) - timedelta(seconds=int(age.group(1)) * _UNITS[age.group(2)])
    else:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is neither an ISO 8601 time (e.g. 2026-11-26T10:00:00Z) nor an age (e.g. 30m, 2h, 1d)"
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class SinceType(click.ParamType[datetime]):
    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_since(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def find_destination(client: ApiClient, name: str) -> dict[str, Any]:
    """A destination by id or by its exact name (exactly one must match)."""
    destinations: list[dict[str, Any]] = client.get("/destinations")["destinations"]
    return find_one(destinations, name, kind="destination", name_field="name", where=client.remote.url)


def _label(destination: dict[str, Any]) -> str:
    return f"{destination['name']!r} ({destination['id']})"


# --- sluice replay ---------------------------------------------------------------------------------


@click.command("replay")
@click.option("--destination", "-d", "destination", required=True, metavar="D", help="Destination id or exact name.")
@click.option(
    "--status",
    type=click.Choice(DEAD_LETTER_STATUSES),
    help="Only dead letters with this outcome (default: all of them).",
)
@click.option(
    "--since",
    type=SinceType(),
    help="Only dead letters failed at or after this time: ISO 8601 (2026-11-26T10:00:00Z) or an age (30m, 2h, 1d).",
)
@click.option("--no-wait", is_flag=True, help="Re-queue and return; do not follow the replayed events.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="Give up waiting for the replayed events to leave the queue after this long (exit 1).",
)
@profile_option
def replay(
    destination: str, status: str | None, since: datetime | None, no_wait: bool, timeout: float, profile: str | None
) -> None:
    """Re-queue the dead letters of destination D (due now, attempts reset) and follow them.

    A progress bar shows the replayed events leaving the queue; then the last 10 minutes'
    delivered / not delivered counts are printed.
    """
    with ApiClient(resolve_remote(profile)) as client:
        found = find_destination(client, destination)
        did = found["id"]
        before = int(client.get(f"/destinations/{did}/queue")["queue"]["backlog"])
        counted = _settled(client.get(f"/destinations/{did}/delivery", {"window": "10m"})["delivery"])
        body: dict[str, Any] = {}
        if status is not None:
            body["status"] = status
        if since is not None:
            body["since"] = iso(since)
        replayed = int(client.post(f"/destinations/{did}/replay", body)["replay"]["replayed"])
        which = f"{status} " if status else ""
        after = f" failed since {iso(since)}" if since is not None else ""
        if replayed == 0:
            click.echo(f"No {which}dead letters{after} to replay for {_label(found)}.")
            return
        click.echo(f"Re-queued {replayed} {which}dead letter(s){after} of {_label(found)}.")
        if no_wait:
            click.echo(f"Not waiting; follow them with: sluice tail --destination {did}")
            return
        pending = _wait(client, did, before, replayed, timeout)
        summary = _summary(client, did, counted, replayed - pending)
    click.echo(
        f"Last 10 minutes on {_label(found)}: {summary['delivered']} delivered, "
        f"{summary['notDelivered']} not delivered, {summary['retrying']} retrying."
    )
    if pending:
        raise click.ClickException(
            f"timed out after {timeout:g} s: {pending} of the {replayed} replayed event(s) are still queued"
        )


def _wait(client: ApiClient, destination_id: str, before: int, replayed: int, timeout: float) -> int:
    """Poll the queue until the replayed events left it (or ``timeout``); returns how many remain."""
    deadline = time.monotonic() + timeout
    done = 0
    with click.progressbar(length=replayed, label="Delivering", file=sys.stderr, show_pos=True, show_eta=False) as bar:
        while True:
            backlog = int(client.get(f"/destinations/{destination_id}/queue")["queue"]["backlog"])
            pending = min(max(backlog - before, 0), replayed)
            progress = replayed - pending
            if progress > done:
                bar.update(progress - done)
                done = progress
            if pending == 0 or time.monotonic() >= deadline:
                return pending
            time.sleep(min(POLL_S, max(deadline - time.monotonic(), 0)))


def _settled(summary: dict[str, Any]) -> int:
    return int(summary["delivered"]) + int(summary["notDelivered"]) + int(summary["filtered"])


def _summary(client: ApiClient, destination_id: str, counted: int, settled: int) -> dict[str, Any]:
    """The 10-minute summary, once it counts the ``settled`` replayed events (the server writes its
    counters every second or so) or after ``SUMMARY_WAIT_S``."""
    deadline = time.monotonic() + SUMMARY_WAIT_S
    while True:
        summary: dict[str, Any] = client.get(f"/destinations/{destination_id}/delivery", {"window": "10m"})["delivery"]
        if _settled(summary) - counted >= settled or time.monotonic() >= deadline:
            return summary
        time.sleep(POLL_S)


# --- sluice tail ----------------------------------------------------------------------------------


def _short_time(at: str) -> str:
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        return at
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _event(line: dict[str, Any]) -> str:
    kind = line.get("type") or "-"
    name = line.get("eventName")
    return f"{kind} {name}" if name else kind


TAIL_COLUMNS = (("TIME", 24), ("OUTCOME", 23), ("REASON", 36), ("EVENT", 28))


def format_line(line: dict[str, Any]) -> str:
    cells = (_short_time(str(line["at"])), str(line["outcome"]), str(line["reason"]), _event(line))
    padded = [_fit(c, w).ljust(w) for c, (_, w) in zip(cells, TAIL_COLUMNS, strict=True)]
    return "  ".join([*padded, str(line.get("messageId") or "-")]).rstrip()


def _header() -> str:
    return "  ".join([*(name.ljust(w) for name, w in TAIL_COLUMNS), "MESSAGE ID"])


@click.command("tail")
@click.option("--destination", "-d", "destination", required=True, metavar="D", help="Destination id or exact name.")
@click.option(
    "--outcome",
    "outcomes",
    multiple=True,
    type=click.Choice(OUTCOMES),
    metavar="OUTCOME",
    help="Only lines with this outcome, e.g. delivered, expired, rejected_by_destination (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--max-lines", type=click.IntRange(min=1), hidden=True, help="Exit 0 after this many lines.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), hidden=True, help="Exit 1 after this long.")
@profile_option
def tail(
    destination: str,
    outcomes: Sequence[str],
    as_json: bool,
    max_lines: int | None,
    timeout: float | None,
    profile: str | None,
) -> None:
    """Follow the per-event outcomes of destination D live, until Ctrl+C.

    Lines appear for events settled from now on: time, outcome, reason, event, messageId.
    """
    try:
        with ApiClient(resolve_remote(profile)) as client:
            found = find_destination(client, destination)
            click.echo(f"Following {_label(found)}; Ctrl+C to stop.", err=True)
            if not as_json:
                click.echo(_header())
            printed = _follow(client, found["id"], set(outcomes), as_json, max_lines, timeout)
    except KeyboardInterrupt:
        return
    except BrokenPipeError:  # e.g. piped into head: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return
    if max_lines is not None and printed < max_lines:
        raise click.ClickException(f"timed out after {timeout:g} s: {printed} of {max_lines} line(s)")


def _follow(
    client: ApiClient,
    destination_id: str,
    wanted: set[str],
    as_json: bool,
    max_lines: int | None,
    timeout: float | None,
) -> int:
    """Poll and print until ``max_lines`` lines were printed or ``timeout`` passed; returns how many."""
    deadline = None if timeout is None else time.monotonic() + timeout
    path = f"/destinations/{destination_id}/outcomes"
    cursor = int(client.get(path, {"after": str(MAX_CURSOR)})["next"])  # starts the following; skip older lines
    printed = 0
    while True:
        page = client.get(path, {"after": str(cursor), "limit": str(PAGE)})
        lines: list[dict[str, Any]] = page["lines"]
        if lines and cursor and int(lines[0]["seq"]) > cursor + 1:
            click.echo(f"({int(lines[0]['seq']) - cursor - 1} line(s) missed: too many to keep up)", err=True)
        cursor = int(page["next"])
        for line in lines:
            if wanted and line["outcome"] not in wanted:
                continue
            click.echo(json.dumps(line) if as_json else format_line(line))
            printed += 1
            if max_lines is not None and printed >= max_lines:
                return printed
        if deadline is not None and time.monotonic() >= deadline:
            return printed
        if len(lines) < PAGE:
            wait = POLL_S if deadline is None else min(POLL_S, max(deadline - time.monotonic(), 0))
            time.sleep(wait)
