"""In-memory console sessions.

A session holds the API token the user signed in with, a CSRF token and ``GET /api/me``. They
live in this server process only: a restart (or a second server process behind a load
balancer) signs users out — they sign in again with their token. Sessions expire after 12 hours
without a request.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

COOKIE = "sluice_session"
IDLE_S = 12 * 3600.0


@dataclass(slots=True)
class Session:
    sid: str
    token: str
    csrf: str
    me: dict[str, Any]
    last_seen: float = 0.0
    flashes: list[tuple[str, str]] = field(default_factory=list)  # (kind: ok|error|info, text)

    def flash(self, text: str, kind: str = "ok") -> None:
        self.flashes.append((kind, text))

    def pop_flashes(self) -> list[tuple[str, str]]:
        out, self.flashes = self.flashes, []
        return out


class Sessions:
    """Sessions by id; ``get`` refreshes the idle timer and forgets expired ones."""

    def __init__(self, idle_s: float = IDLE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self._clock = clock
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, token: str, me: dict[str, Any]) -> Session:
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), token, secrets.token_urlsafe(32), dict(me), now)
        with self._lock:
            self._purge(now)
            self._by_id[session.sid] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        now = self._clock()
        with self._lock:
            session = self._by_id.get(sid)
            if session is None:
                return None
            if now - session.last_seen > self.idle_s:
                del self._by_id[sid]
                return None
            session.last_seen = now
            return session

    def drop(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._by_id.pop(sid, None)

    def __len__(self) -> int:
        return len(self._by_id)

    def _purge(self, now: float) -> None:
        for sid in [sid for sid, s in self._by_id.items() if now - s.last_seen > self.idle_s]:
            del self._by_id[sid]
