"""The functions' persistent key-value store in the catalog database (``store``, DESIGN §3.5).

One namespace per function instance (table ``function_store``, keyed by instance id and key),
shared by every worker and every delivery process of that instance, kept across restarts and
deploys, removed with the instance. Values are stored as JSON text.

- Limits (:mod:`sluice.functions.store_bridge`): keys up to 256 characters, values up to 64 KB
  of JSON, at most 10,000 unexpired keys per instance. Breaking one raises
  :class:`~sluice.errors.StoreLimitError` naming it. The key count is checked before a new key
  is written, so writers racing at the limit may pass it by a few keys.
- ``ttl_ms`` makes a value expire; times come from the catalog's clock (``Catalog(clock=...)``).
  An expired value reads as absent; its row is deleted when read, and an instance's expired rows
  all go when it reaches the key limit (:meth:`FunctionStore.purge_expired` sweeps every instance).
- Writes are upserts (``INSERT … ON CONFLICT DO UPDATE``) on SQLite and PostgreSQL.

The methods are synchronous like the rest of the catalog; :meth:`FunctionStore.backend` gives
the async, instance-bound :class:`InstanceStore` the function runtime calls (in a thread).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from sluice.catalog import tables
from sluice.catalog.core import Core
from sluice.functions.store_bridge import MAX_KEYS, check_key, check_value, too_many_keys

__all__ = ["FunctionStore", "InstanceStore"]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # SQLite: naive UTC


class FunctionStore:
    """Key-value store per function instance; what ``Catalog.function_store`` is."""

    def __init__(self, core: Core, *, max_keys: int = MAX_KEYS) -> None:
        self.core = core
        self.max_keys = max_keys

    # --- JSON text (what the runtime moves) -------------------------------------------------------
    def get_json(self, instance_id: str, key: str) -> str | None:
        """The JSON text stored under ``key``, or ``None`` when absent or expired."""
        check_key(key)
        t = tables.function_store
        where = (t.c.instance_id == instance_id, t.c.key == key)
        with self.core.tx() as conn:
            row = conn.execute(select(t.c.value, t.c.expires_at).where(*where)).first()
            if row is None:
                return None
            now = self.core.clock()
            if row.expires_at is not None and _aware(row.expires_at) <= now:
                conn.execute(delete(t).where(*where, t.c.expires_at <= now))  # unless set again meanwhile
                return None
            return str(row.value)

    def set_json(self, instance_id: str, key: str, value: str, ttl_ms: int | None = None) -> None:
        """Store JSON text under ``key`` (``ttl_ms`` ``None`` or negative: no expiry)."""
        check_key(key)
        check_value(value)
        t = tables.function_store
        now = self.core.clock()
        expires = None if ttl_ms is None or ttl_ms < 0 else now + timedelta(milliseconds=ttl_ms)
        with self.core.tx() as conn:
            exists = conn.execute(select(t.c.key).where(t.c.instance_id == instance_id, t.c.key == key)).first()
            if exists is None:
                held = self._count(conn, instance_id)
                if held >= self.max_keys:
                    self._purge(conn, now, instance_id)
                    held = self._count(conn, instance_id)
                    if held >= self.max_keys:
                        raise too_many_keys(held, self.max_keys)
            values = {"instance_id": instance_id, "key": key, "value": value, "expires_at": expires, "updated_at": now}
            insert = postgresql.insert(t) if conn.dialect.name == "postgresql" else sqlite.insert(t)
            stmt = insert.values(**values)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[t.c.instance_id, t.c.key],
                    set_={
                        "value": stmt.excluded.value,
                        "expires_at": stmt.excluded.expires_at,
                        "updated_at": stmt.excluded.updated_at,
                    },
                )
            )

    # --- Python values ----------------------------------------------------------------------------
    def get(self, instance_id: str, key: str, default: Any = None) -> Any:
        text = self.get_json(instance_id, key)
        return default if text is None else orjson.loads(text)

    def set(self, instance_id: str, key: str, value: Any, ttl_ms: int | None = None) -> None:
        try:
            text = orjson.dumps(value).decode("utf-8")
        except TypeError as exc:
            raise TypeError(f"store values must be JSON-serializable: {exc}") from None
        self.set_json(instance_id, key, text, ttl_ms)

    def delete(self, instance_id: str, key: str) -> bool:
        """Remove ``key``; whether a row was there (expired or not)."""
        check_key(key)
        t = tables.function_store
        with self.core.tx() as conn:
            gone = conn.execute(delete(t).where(t.c.instance_id == instance_id, t.c.key == key))
            return bool(gone.rowcount)

    # --- housekeeping -----------------------------------------------------------------------------
    def count(self, instance_id: str) -> int:
        """Rows held by the instance (expired ones not yet purged included)."""
        with self.core.tx() as conn:
            return self._count(conn, instance_id)

    def purge_expired(self, instance_id: str | None = None) -> int:
        """Delete expired rows (of one instance, or of all); how many went."""
        with self.core.tx() as conn:
            return self._purge(conn, self.core.clock(), instance_id)

    @staticmethod
    def _count(conn: Connection, instance_id: str) -> int:
        t = tables.function_store
        query = select(func.count()).select_from(t).where(t.c.instance_id == instance_id)
        return int(conn.execute(query).scalar_one())

    @staticmethod
    def _purge(conn: Connection, now: datetime, instance_id: str | None) -> int:
        t = tables.function_store
        stmt = delete(t).where(t.c.expires_at.is_not(None), t.c.expires_at <= now)
        if instance_id is not None:
            stmt = stmt.where(t.c.instance_id == instance_id)
        return int(conn.execute(stmt).rowcount or 0)

    # --- the runtime's view -----------------------------------------------------------------------
    def backend(self, instance_id: str) -> InstanceStore:
        """The async store of one instance for its worker pool (a :class:`StoreProvider`)."""
        return InstanceStore(self, instance_id)


class InstanceStore:
    """One instance's store as a :class:`sluice.functions.store_bridge.StoreBackend` (calls in a thread)."""

    def __init__(self, store: FunctionStore, instance_id: str) -> None:
        self.store = store
        self.instance_id = instance_id

    async def get(self, key: str) -> str | None:
        return await asyncio.to_thread(self.store.get_json, self.instance_id, key)

    async def set(self, key: str, value: str, ttl_ms: int | None) -> None:
        await asyncio.to_thread(self.store.set_json, self.instance_id, key, value, ttl_ms)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.store.delete, self.instance_id, key)
