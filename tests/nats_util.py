"""NATS fixtures: the JetStream server at 127.0.0.1:4222 (skip locally when absent, fail under CI=true).

Every test gets its own random name prefix, and everything made under it is deleted afterwards,
so runs in parallel do not meet.
"""

from __future__ import annotations

import secrets
import socket

from tests.conftest import skip_or_fail

NATS_URL = "nats://127.0.0.1:4222"


def require_nats() -> str:
    """The server's URL once its port answers; otherwise skip (laptop) or fail (CI)."""
    with socket.socket() as probe:
        probe.settimeout(1.0)
        if probe.connect_ex(("127.0.0.1", 4222)) != 0:
            skip_or_fail("NATS (JetStream) is not listening on 127.0.0.1:4222")
    return NATS_URL


def unique_prefix() -> str:
    return f"t{secrets.token_hex(5)}"
