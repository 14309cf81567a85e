"""The ``sluice`` command line."""

from __future__ import annotations

import sys

import click

from sluice import __version__
from sluice.cli.bench_cmd import bench_group
from sluice.cli.fn_cmd import fn_group


@click.group()
@click.version_option(__version__, prog_name="sluice")
def cli() -> None:
    """sluice — a self-hosted event pipeline built around destination insert functions."""


@cli.command("serve")
def serve() -> None:
    """Start sluice (ingest, API, console and workers) on the embedded SQLite default."""
    click.echo(
        "sluice serve: the server (ingest, control-plane API, console, delivery workers) is not part of "
        "this version yet.\nWhat works today: 'sluice fn new NAME' and 'sluice fn test PATH --event FILE' "
        "(see docs/functions.md), and 'sluice bench runtime'.",
        err=True,
    )
    sys.exit(1)


cli.add_command(fn_group)
cli.add_command(bench_group)


def main() -> None:
    cli(prog_name="sluice")
