"""The scale-out deployment files say what sluice really accepts (no Docker engine runs here, so the
compose file is checked against the code instead of being started): every sluice service runs a
real ``sluice serve --role`` with options the CLI knows, its environment passes the role checks,
and its queue URL opens a NATS event log with the options the guide documents."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from sluice.cli.main import cli
from sluice.config import Config
from sluice.queue.factory import open_event_log
from sluice.queue.nats import NatsEventLog
from sluice.server import ROLES, check_role

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
GUIDE = ROOT / "docs" / "scale-out.md"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = {k: str(v) for k, v in service["environment"].items()}
    # compose's ${VAR:?message} must be given by the user: stand in for them
    return {k: ("a" * 64 if "${" in v else v) for k, v in env.items()}


def test_the_compose_file_runs_every_role_with_the_shared_backends() -> None:
    services = _compose()["services"]
    sluice = {name: s for name, s in services.items() if s.get("image") == "sluice"}
    roles = {}
    for name, service in sluice.items():
        command = service["command"]
        assert command[:3] == ["sluice", "serve", "--role"], name
        roles[name] = command[3]
        assert command[3] in ROLES
        env = _environment(service)
        config = Config.from_env(env)
        check_role(command[3], config)  # PostgreSQL, NATS and a secret key: refused otherwise
        assert config.database_url.startswith("postgresql://") and "@postgres:" in config.database_url
        log = open_event_log(config)
        assert isinstance(log, NatsEventLog) and log.url == "nats://nats:4222" and log.prefix == "sluice"
        assert (log.ack_wait_s, log.replicas) == (30.0, 1)
        assert int(env["SLUICE_PORT"]) == 8000 and env["SLUICE_HOST"] == "0.0.0.0"
        assert "/healthz" in " ".join(service["healthcheck"]["test"])
    assert sorted(roles.values()) == ["api", "ingest", "worker"]
    assert {"postgres", "nats"} <= set(services)
    assert "-js" in services["nats"]["command"]


def test_every_serve_option_the_deployment_uses_exists() -> None:
    help_text = CliRunner().invoke(cli, ["serve", "--help"]).output
    used = set(re.findall(r"--[a-z-]+", COMPOSE.read_text() + GUIDE.read_text()))
    serve_options = {o for o in used if o in {"--role", "--port", "--data-dir", "--host"}}
    assert serve_options == {"--role", "--port", "--data-dir"}
    for option in serve_options:
        assert option in help_text
    for role in ("ingest", "worker", "api"):
        assert role in help_text


def test_the_guide_names_every_queue_url_option_the_code_accepts() -> None:
    from sluice.queue.factory import _NATS_OPTIONS

    guide = GUIDE.read_text()
    for option in _NATS_OPTIONS:
        assert f"`{option}`" in guide, option


def test_a_role_without_shared_backends_is_refused_with_what_is_missing(tmp_path: Path) -> None:
    unset = {"SLUICE_DATABASE_URL": "", "SLUICE_QUEUE_URL": "", "SLUICE_SECRET_KEY": ""}
    result = CliRunner().invoke(cli, ["serve", "--role", "worker", "--data-dir", str(tmp_path)], env=unset)
    assert result.exit_code == 1
    assert "--role worker" in result.output
    for needed in ("SLUICE_DATABASE_URL=postgresql://", "SLUICE_QUEUE_URL=nats://", "SLUICE_SECRET_KEY"):
        assert needed in result.output
