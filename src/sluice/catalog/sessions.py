"""Web-console sessions in the catalog database, shared by every API process (DESIGN §5).

A session is what the console keeps for a signed-in browser: the API token the user signed in
with, a CSRF token, ``GET /api/me`` and the flash messages waiting for the next page. The
browser holds only the session id (256 random bits, the ``sluice_session`` cookie). Several
``sluice serve --role api`` processes behind a load balancer see the same sessions because
they live in the catalog (table ``console_sessions``):

- The row is keyed by the SHA-256 of the session id, never the id itself, and the API token is
  sealed with the catalog's secret box (:mod:`sluice.catalog.crypto`): a copy of the table does
  not let anyone act as a signed-in user. Every process must therefore share the secret key
  (``SLUICE_SECRET_KEY``); a row whose token does not decrypt counts as signed out.
- Idle expiry: :data:`IDLE_S` (12 h) after the last *recorded* use. ``last_seen_at`` is written
  at most once per :data:`TOUCH_EVERY_S` (a minute) per session, so pages cost no write; the
  expiry may thus come up to that minute early.
- Expired rows are deleted when met, and all of them whenever a session is created (sign-ins
  are rare enough to carry that).
- :meth:`ConsoleSessions.drop` deletes the row: signing out (or a revoked token) on one process
  ends the session on every process at once.
- Flash messages are a JSON list in the row: :meth:`Session.flash` appends under a row lock and
  :meth:`Session.pop_flashes` takes and clears them, touching the database only when the row
  as loaded had some, so a page without a message writes nothing. A message flashed by one
  process shows on the next page, whichever process renders it.

Times come from the catalog's clock (``Catalog(clock=...)``), so tests move time instead of
sleeping. The console's in-memory twin is :class:`sluice.console.session.MemorySessions`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from sqlalchemy import Connection, delete, insert, select, update

from sluice.catalog import tables
from sluice.catalog.core import Core
from sluice.errors import ConfigError

__all__ = ["IDLE_S", "MAX_FLASHES", "TOUCH_EVERY_S", "ConsoleSessions", "Flash", "FlashStore", "Session", "id_hash"]

IDLE_S: Final = 12 * 3600.0
TOUCH_EVERY_S: Final = 60.0
MAX_FLASHES: Final = 20  # the newest ones, should pages flash without ever rendering

Flash = tuple[str, str]  # (kind: ok|error|info, text)


class FlashStore(Protocol):
    """Where a :class:`Session`'s flash messages persist (``None`` on the session: in the object)."""

    def add_flash(self, sid: str, kind: str, text: str) -> None: ...

    def pop_flashes(self, sid: str) -> list[Flash]: ...


@dataclass(slots=True)
class Session:
    """One signed-in browser. ``sid``, ``token`` and ``csrf`` are credentials: kept out of ``repr``."""

    sid: str = field(repr=False)
    token: str = field(repr=False)
    csrf: str = field(repr=False)
    me: dict[str, Any]
    last_seen: float = 0.0
    flashes: list[Flash] = field(default_factory=list)
    store: FlashStore | None = field(default=None, repr=False, compare=False)

    def flash(self, text: str, kind: str = "ok") -> None:
        self.flashes.append((kind, text))
        if self.store is not None:
            self.store.add_flash(self.sid, kind, text)

    def pop_flashes(self) -> list[Flash]:
        out, self.flashes = self.flashes, []
        if self.store is not None and out:
            return self.store.pop_flashes(self.sid)
        return out


def id_hash(sid: str) -> str:
    """What the table stores for a session id (the id is random: a plain SHA-256 suffices)."""
    return hashlib.sha256(sid.encode("utf-8", "surrogatepass")).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # SQLite: naive UTC


def _flashes(stored: Any) -> list[Flash]:
    if not isinstance(stored, list):
        return []
    return [(str(item[0]), str(item[1])) for item in stored if isinstance(item, list | tuple) and len(item) == 2]


class ConsoleSessions:
    """Console sessions by id, in the catalog; what ``sluice serve`` gives the console."""

    def __init__(self, core: Core, *, idle_s: float = IDLE_S, touch_every_s: float = TOUCH_EVERY_S) -> None:
        self.core = core
        self.idle_s = idle_s
        self.touch_every_s = touch_every_s

    def create(self, token: str, me: Mapping[str, Any]) -> Session:
        """A new session (new id, new CSRF token); expired rows are purged on the way."""
        now = self.core.clock()
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        t = tables.console_sessions
        with self.core.tx() as conn:
            self._purge(conn, now)
            conn.execute(
                insert(t).values(
                    id_hash=id_hash(sid),
                    token=self.core.box.encrypt(token),
                    csrf=csrf,
                    me=dict(me),
                    flashes=[],
                    created_at=now,
                    last_seen_at=now,
                )
            )
        return Session(sid, token, csrf, dict(me), now.timestamp(), [], self)

    def get(self, sid: str | None) -> Session | None:
        """The live session with this id, or ``None`` (unknown, signed out, idle too long).

        Refreshes ``last_seen_at`` when the stored one is at least ``touch_every_s`` old.
        """
        if not sid:
            return None
        key = id_hash(sid)
        now = self.core.clock()
        t = tables.console_sessions
        with self.core.engine.connect() as conn:  # a read; writes below are their own transactions
            row = conn.execute(
                select(t.c.token, t.c.csrf, t.c.me, t.c.flashes, t.c.last_seen_at).where(t.c.id_hash == key)
            ).first()
        if row is None:
            return None
        last_seen = _aware(row.last_seen_at)
        idle = (now - last_seen).total_seconds()
        if idle > self.idle_s:
            self._delete(key, seen_before=now - timedelta(seconds=self.idle_s))
            return None
        try:
            token = self.core.box.decrypt(row.token)
        except ConfigError:  # sealed under another secret key: sign in again
            self._delete(key)
            return None
        if idle >= self.touch_every_s:
            with self.core.tx() as conn:
                conn.execute(update(t).where(t.c.id_hash == key, t.c.last_seen_at < now).values(last_seen_at=now))
            last_seen = now
        return Session(
            sid, token, str(row.csrf), dict(row.me or {}), last_seen.timestamp(), _flashes(row.flashes), self
        )

    def drop(self, sid: str | None) -> None:
        """Sign out: delete the session, for every process."""
        if sid:
            self._delete(id_hash(sid))

    def purge(self) -> int:
        """Delete every expired session; returns how many."""
        with self.core.tx() as conn:
            return self._purge(conn, self.core.clock())

    def add_flash(self, sid: str, kind: str, text: str) -> None:
        """Append a message for the session's next page (nothing if the session is gone)."""
        t = tables.console_sessions
        key = id_hash(sid)
        with self.core.tx() as conn:
            stored = self._locked_flashes(conn, key)
            if stored is None:
                return
            flashes = [*stored, (kind, text)][-MAX_FLASHES:]
            conn.execute(update(t).where(t.c.id_hash == key).values(flashes=[list(f) for f in flashes]))

    def pop_flashes(self, sid: str) -> list[Flash]:
        """The session's waiting messages, oldest first; they are gone afterwards."""
        t = tables.console_sessions
        key = id_hash(sid)
        with self.core.tx() as conn:
            stored = self._locked_flashes(conn, key)
            if not stored:
                return []
            conn.execute(update(t).where(t.c.id_hash == key).values(flashes=[]))
        return stored

    # --- internals ----------------------------------------------------------------------------------

    def _locked_flashes(self, conn: Connection, key: str) -> list[Flash] | None:
        """The row's flashes, with the row (PostgreSQL) or the database (SQLite) locked for writing
        until the transaction ends, so concurrent appends and pops do not lose messages."""
        t = tables.console_sessions
        query = select(t.c.flashes).where(t.c.id_hash == key)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        else:  # SQLite: a write first takes the write lock (a read first could not upgrade safely)
            conn.execute(update(t).where(t.c.id_hash == key).values(flashes=t.c.flashes))
        row = conn.execute(query).first()
        return None if row is None else _flashes(row.flashes)

    def _delete(self, key: str, *, seen_before: datetime | None = None) -> None:
        t = tables.console_sessions
        stmt = delete(t).where(t.c.id_hash == key)
        if seen_before is not None:  # only while expired: a process with a lagging clock may just have refreshed it
            stmt = stmt.where(t.c.last_seen_at < seen_before)
        with self.core.tx() as conn:
            conn.execute(stmt)

    def _purge(self, conn: Connection, now: datetime) -> int:
        t = tables.console_sessions
        cutoff = now - timedelta(seconds=self.idle_s)
        return int(conn.execute(delete(t).where(t.c.last_seen_at < cutoff)).rowcount or 0)
