"""The event log a process uses, chosen by ``SLUICE_QUEUE_URL`` (DESIGN §5)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

from sluice.config import Config
from sluice.queue.base import EventLog, QueueError
from sluice.queue.nats import NatsEventLog
from sluice.queue.sqlite import SqliteEventLog

__all__ = ["open_event_log"]

_NATS_OPTIONS = ("prefix", "ack_wait", "replicas", "max_age", "dead_letter_max_age")


def open_event_log(config: Config) -> EventLog:
    """``queue.db`` in the data folder by default; ``sqlite:///path`` a file elsewhere; ``nats://…`` JetStream.

    NATS options ride on the URL's query: ``prefix`` (stream names, default ``sluice``), ``ack_wait``
    (seconds, default 30), ``replicas`` (1), ``max_age`` (seconds events are kept, default 7 days),
    ``dead_letter_max_age`` (seconds, default 7 days).
    """
    url = config.queue_url
    if not url or url == "sqlite:":
        return SqliteEventLog(config.data_dir, filename="queue.db")
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///")).expanduser()
        return SqliteEventLog(path.parent, filename=path.name)
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - set(_NATS_OPTIONS))
    if unknown:
        raise QueueError(f"SLUICE_QUEUE_URL: unknown option {unknown[0]!r} (known: {', '.join(_NATS_OPTIONS)})")

    def number(key: str, default: float) -> float:
        try:
            value = float(query.get(key, default))
        except ValueError:
            raise QueueError(f"SLUICE_QUEUE_URL: {key} must be a number, got {query[key]!r}") from None
        if value <= 0:
            raise QueueError(f"SLUICE_QUEUE_URL: {key} must be positive, got {query[key]!r}")
        return value

    return NatsEventLog(
        urlunsplit((parts.scheme, parts.netloc, "", "", "")),
        prefix=query.get("prefix", "sluice"),
        ack_wait_s=number("ack_wait", 30.0),
        replicas=int(number("replicas", 1)),
        stream_max_age_s=number("max_age", 7 * 24 * 3600.0),
        dead_letter_retention_s=number("dead_letter_max_age", 7 * 24 * 3600.0),
    )
