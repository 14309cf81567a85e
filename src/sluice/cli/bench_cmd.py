"""``sluice bench``: benchmarks that print each figure beside its ceiling from the same run."""

from __future__ import annotations

import asyncio

import click
import orjson


@click.group("bench")
def bench_group() -> None:
    """Measure sluice on this machine."""


@bench_group.command("queue")
@click.option("--events", "count", type=click.IntRange(min=1000), default=100_000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_queue(count: int, as_json: bool) -> None:
    """The SQLite event log's appends and lease+ack, beside a bare SQLite insert ceiling."""
    from sluice.bench.queue import format_report, run_benchmark

    report = asyncio.run(run_benchmark(count=count))
    click.echo(orjson.dumps(report).decode() if as_json else format_report(report))


@bench_group.command("nats")
@click.option("--events", "count", type=click.IntRange(min=1000), default=50_000, show_default=True)
@click.option("--url", help="NATS server [env SLUICE_NATS_URL; default nats://127.0.0.1:4222].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_nats(count: int, url: str | None, as_json: bool) -> None:
    """NATS JetStream's own publish and pull+ack ceilings on this machine (the scale-out log's base)."""
    from sluice.bench.nats import format_report, run_benchmark

    try:
        report = asyncio.run(run_benchmark(count=count, url=url))
    except (OSError, TimeoutError) as exc:
        raise click.ClickException(f"cannot reach NATS: {exc}") from None
    click.echo(orjson.dumps(report).decode() if as_json else format_report(report))


def _worker_counts(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        counts = ()
    if not counts or any(not 1 <= n <= 16 for n in counts):
        raise click.BadParameter(f"expected worker counts from 1 to 16 separated by commas (like 1,2,4), got {value!r}")
    return counts


@bench_group.command("scaleout")
@click.option("--events", "count", type=click.IntRange(min=1000), default=100_000, show_default=True)
@click.option(
    "--workers",
    default="1,2,4",
    show_default=True,
    callback=_worker_counts,
    help="Worker process counts to measure, one cluster each.",
)
@click.option(
    "--ingest",
    "ingests",
    type=click.IntRange(min=1, max=8),
    default=2,
    show_default=True,
    help="Ingest processes (the sender's connections are spread over them).",
)
@click.option("--nats-url", help="NATS server [env SLUICE_NATS_URL; default nats://127.0.0.1:4222].")
@click.option(
    "--postgres-url",
    envvar="SLUICE_BENCH_POSTGRES_URL",
    help="PostgreSQL server's admin database; a database is created beside it and dropped "
    "[env SLUICE_BENCH_POSTGRES_URL; default postgresql://postgres@127.0.0.1:5432/postgres].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_scaleout(
    count: int, workers: tuple[int, ...], ingests: int, nats_url: str | None, postgres_url: str | None, as_json: bool
) -> None:
    """End to end through separate `sluice serve --role` processes on PostgreSQL + NATS with 1, 2
    and 4 workers, beside NATS's own publish and pull+ack ceilings and the embedded pipeline figure
    from the same run, with CPU seconds per 1,000 events per role."""
    from sluice.bench.scaleout import DEFAULT_POSTGRES_URL, format_report, nats_url_from_env, run_benchmark, unreachable

    nats_url = nats_url or nats_url_from_env()
    postgres_url = postgres_url or DEFAULT_POSTGRES_URL
    problem = unreachable(postgres_url, nats_url)
    if problem:
        raise click.ClickException(f"cannot run the scale-out benchmark: {problem}")
    try:
        report = asyncio.run(
            run_benchmark(count=count, workers=workers, ingests=ingests, nats_url=nats_url, postgres_url=postgres_url)
        )
    except OSError as exc:
        raise click.ClickException(f"cannot run the scale-out benchmark: {exc}") from None
    click.echo(orjson.dumps(report).decode() if as_json else format_report(report))


@bench_group.command("runtime")
@click.option("--events", "count", type=click.IntRange(min=1000), default=200_000, show_default=True)
@click.option("--workers", type=click.IntRange(min=1, max=16), default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_runtime(count: int, workers: int, as_json: bool) -> None:
    """Isolated function throughput vs. the in-process ceiling, frame round trips, idle worker RSS."""
    from sluice.bench.runtime import format_report, run_benchmark

    report = asyncio.run(run_benchmark(count=count, workers=workers))
    if as_json:
        click.echo(orjson.dumps(report).decode())
    else:
        click.echo(format_report(report))


@bench_group.command("js")
@click.option("--events", "count", type=click.IntRange(min=1000), default=100_000, show_default=True)
@click.option("--workers", type=click.IntRange(min=1, max=16), default=2, show_default=True)
@click.option(
    "--latency-events",
    type=click.IntRange(min=100),
    default=5_000,
    show_default=True,
    help="Single events sent one at a time through an idle pool (at most --events).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_js(count: int, workers: int, latency_events: int, as_json: bool) -> None:
    """JavaScript onTrack throughput through the pool beside the Python pool and a bare in-process
    Node loop over the same events, and per-event latency through an idle pool."""
    from sluice.bench.js import format_report, node_binary, run_benchmark

    try:
        node_binary()
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    report = asyncio.run(run_benchmark(count=count, workers=workers, latency_events=latency_events))
    click.echo(orjson.dumps(report).decode() if as_json else format_report(report))


@bench_group.command("pipeline")
@click.option("--events", "count", type=click.IntRange(min=100), default=100_000, show_default=True)
@click.option(
    "--seconds", type=click.FloatRange(min=1.0), default=5.0, show_default=True, help="Length of the latency phase."
)
@click.option(
    "--connections", type=click.IntRange(min=1, max=64), default=8, show_default=True, help="Concurrent senders."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_pipeline(count: int, seconds: float, connections: int, as_json: bool) -> None:
    """End to end through a real `sluice serve`: /v1/batch → insert function → webhook sink;
    sustained events/s and receivedAt → sink latency beside the event-log, sink and runtime
    ceilings from the same run."""
    from sluice.bench.pipeline import format_report, run_benchmark

    report = asyncio.run(run_benchmark(count=count, seconds=seconds, lanes=connections))
    click.echo(orjson.dumps(report).decode() if as_json else format_report(report))


@bench_group.command("fql")
@click.option("--evaluations", "count", type=click.IntRange(min=100), default=1_000_000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_fql(count: int, as_json: bool) -> None:
    """Compiled FQL evaluations/s of a 3-clause condition on one core, beside a hand-written ceiling."""
    from sluice.bench.fql import format_report, run_benchmark

    report = run_benchmark(count=count)
    click.echo(orjson.dumps(report).decode() if as_json else format_report(report))
