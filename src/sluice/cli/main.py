"""The ``sluice`` command line."""

from __future__ import annotations

import click

from sluice import __version__
from sluice.cli import fn_remote  # noqa: F401  (registers fn push|deploy|versions|restore)
from sluice.cli.bench_cmd import bench_group
from sluice.cli.delivery_cmd import replay, tail
from sluice.cli.fn_cmd import fn_group
from sluice.cli.fql_cmd import fql_group
from sluice.cli.remote import login
from sluice.cli.serve_cmd import serve


@click.group()
@click.version_option(__version__, prog_name="sluice")
def cli() -> None:
    """sluice — a self-hosted event pipeline built around destination insert functions."""


cli.add_command(serve)
cli.add_command(login)
cli.add_command(fn_group)
cli.add_command(bench_group)
cli.add_command(fql_group)
cli.add_command(replay)
cli.add_command(tail)


def main() -> None:
    cli(prog_name="sluice")


if __name__ == "__main__":
    main()
