"""Console sessions: what the pages need of them, and an in-memory store for tests.

A session holds the API token the user signed in with, a CSRF token, ``GET /api/me`` and the
flash messages for the next page; the browser holds only its id (cookie :data:`COOKIE`).
Sessions expire after 12 hours without a request.

``sluice serve`` gives the console the catalog's store,
:class:`sluice.catalog.sessions.ConsoleSessions`: sessions live in the catalog database, so
every API process behind a load balancer shares them, a restart signs nobody out and signing
out on one process ends the session everywhere. :class:`MemorySessions` keeps them in this
process only; it is what :func:`~sluice.console.app.create_console` uses when given no store
(tests that build the console without a catalog).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from sluice.catalog.sessions import IDLE_S, Session

__all__ = ["COOKIE", "IDLE_S", "MemorySessions", "Session", "Sessions"]

COOKIE = "sluice_session"


class Sessions(Protocol):
    """What the console needs of a session store (``MemorySessions``, the catalog's ``ConsoleSessions``)."""

    def create(self, token: str, me: dict[str, Any]) -> Session:
        """A new session with a new id and CSRF token."""
        ...

    def get(self, sid: str | None) -> Session | None:
        """The live session with this id (refreshing its idle timer), else ``None``."""
        ...

    def drop(self, sid: str | None) -> None:
        """Sign out: the id is refused from now on."""
        ...


class MemorySessions:
    """Sessions by id in this process; ``get`` refreshes the idle timer and forgets expired ones."""

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
