"""What every catalog use-case shares: transactions, ids, time, secrets, audit, permission checks."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, insert

from sluice.catalog import tables
from sluice.catalog.access import Actor, Decision
from sluice.delivery.secrets import Location, map_secrets, value_at
from sluice.errors import Forbidden
from sluice.functions.settings import SettingSpec, mask


class Box(Protocol):
    """Encrypts values at rest (:class:`sluice.catalog.crypto.SecretBox`)."""

    def encrypt(self, plaintext: str) -> str: ...

    def decrypt(self, token: str) -> str: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


MASK_PREFIX = "••••"


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite hands back naive datetimes
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def is_masked(value: object) -> bool:
    return isinstance(value, str) and value.startswith(MASK_PREFIX)


def mask_value(value: object) -> str:
    return mask(value) if isinstance(value, str) else MASK_PREFIX


class Core:
    """Engine, clock, ids and secret box, plus the helpers the use-case modules share."""

    def __init__(
        self,
        engine: Engine,
        box: Box,
        *,
        clock: Callable[[], datetime] = utcnow,
        ids: Callable[[str], str] = new_id,
    ) -> None:
        self.engine = engine
        self.box = box
        self.clock = clock
        self.ids = ids

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @staticmethod
    def require(decision: Decision) -> None:
        if not decision.allowed:
            raise Forbidden(f"this token lacks {decision.missing}")

    def audit(
        self,
        conn: Connection,
        actor: Actor,
        action: str,
        resource_type: str,
        resource_id: str,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a change. ``before``/``after`` must already have their secrets masked."""
        conn.execute(
            insert(tables.audit_events).values(
                at=self.clock(),
                actor=actor.name,
                action=action,
                resource_type=resource_type,
                resource_id=resource_id,
                before=dict(before) if before is not None else None,
                after=dict(after) if after is not None else None,
            )
        )

    # --- secrets in settings and configs --------------------------------------------------------

    def seal_settings(
        self, schema: Sequence[SettingSpec], values: Mapping[str, Any], previous: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Encrypt the sensitive values; a masked value sent back keeps the stored secret."""
        sensitive = {s.name for s in schema if s.sensitive}
        out: dict[str, Any] = {}
        for name, value in values.items():
            if name in sensitive and value is not None:
                if is_masked(value) and previous is not None and name in previous:
                    out[name] = previous[name]
                else:
                    out[name] = self.box.encrypt(json.dumps(value))
            else:
                out[name] = value
        return out

    def open_settings(self, schema: Sequence[SettingSpec], stored: Mapping[str, Any]) -> dict[str, Any]:
        sensitive = {s.name for s in schema if s.sensitive}
        return {
            name: json.loads(self.box.decrypt(value)) if name in sensitive and isinstance(value, str) else value
            for name, value in stored.items()
        }

    @staticmethod
    def masked_settings(
        schema: Sequence[SettingSpec], stored: Mapping[str, Any], clear: Mapping[str, Any]
    ) -> dict[str, Any]:
        sensitive = {s.name for s in schema if s.sensitive}
        return {name: mask_value(clear.get(name)) if name in sensitive else value for name, value in stored.items()}

    # Destination configs: where the secrets are depends on the destination type
    # (sluice.delivery.secrets.SENSITIVE_PATHS); a mapping (webhook headers) has each value secret.

    def seal_config(self, type_: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """Encrypt the type's sensitive values of a validated, clear config."""
        return map_secrets(type_, config, lambda v, _: None if v is None else self.box.encrypt(json.dumps(v)))

    def open_config(self, type_: str, stored: Mapping[str, Any]) -> dict[str, Any]:
        return map_secrets(type_, stored, lambda v, _: json.loads(self.box.decrypt(v)) if isinstance(v, str) else v)

    def masked_config(self, type_: str, stored: Mapping[str, Any]) -> dict[str, Any]:
        return map_secrets(type_, self.open_config(type_, stored), lambda v, _: mask_value(v))

    @staticmethod
    def unmask_config(type_: str, incoming: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
        """A config sent back with masked secrets: a masked value takes the clear one stored at the
        same place (same keys, same list positions)."""

        def keep(value: Any, location: Location) -> Any:
            before = value_at(previous, location)
            return before if is_masked(value) and before is not None else value

        return map_secrets(type_, incoming, keep)
