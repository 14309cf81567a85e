"""Configuration from the environment (``SLUICE_*``), with command-line overrides."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from sluice.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path
    database_url: str
    secret_key: str | None = None
    admin_token: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    #: ``SLUICE_QUEUE_URL``: ``nats://host:4222[?prefix=…&ack_wait=…&replicas=…&max_age=…]`` for the
    #: scale-out event log on NATS JetStream; unset (or ``sqlite:``) = ``queue.db`` in the data folder.
    queue_url: str | None = None

    @property
    def shared_queue(self) -> bool:
        """The event log is NATS (shared by processes on any machine), not a file in the data folder."""
        return bool(self.queue_url) and not str(self.queue_url).startswith("sqlite:")

    @property
    def shared_catalog(self) -> bool:
        return self.database_url.startswith("postgresql")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        data_dir = Path(env.get("SLUICE_DATA_DIR") or ".sluice").expanduser()
        database_url = env.get("SLUICE_DATABASE_URL") or f"sqlite:///{(data_dir / 'sluice.db').resolve()}"
        port_text = env.get("SLUICE_PORT") or "8000"
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"SLUICE_PORT must be a port number, got {port_text!r}") from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"SLUICE_PORT must be from 0 to 65535, got {port}")
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            secret_key=env.get("SLUICE_SECRET_KEY") or None,
            admin_token=env.get("SLUICE_ADMIN_TOKEN") or None,
            host=env.get("SLUICE_HOST") or "127.0.0.1",
            port=port,
            queue_url=_queue_url(env.get("SLUICE_QUEUE_URL") or None),
        )

    def with_data_dir(self, data_dir: Path, env: Mapping[str, str] | None = None) -> Config:
        """``--data-dir`` given on the command line: the default database moves with it."""
        env = os.environ if env is None else env
        url = env.get("SLUICE_DATABASE_URL") or f"sqlite:///{(data_dir / 'sluice.db').resolve()}"
        return replace(self, data_dir=data_dir, database_url=url)


def _queue_url(url: str | None) -> str | None:
    if url is None or url.startswith(("nats://", "tls://")) or url == "sqlite:" or url.startswith("sqlite:///"):
        return url
    raise ConfigError(f"SLUICE_QUEUE_URL must be nats://host:port (NATS JetStream) or sqlite:///path, got {url!r}")
