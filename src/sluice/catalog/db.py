"""The catalog database: an engine for ``SLUICE_DATABASE_URL`` and the schema migrations.

SQLite (the embedded default) and PostgreSQL (scale-out) hold the same schema
(:mod:`sluice.catalog.tables`), created and upgraded by the Alembic migrations shipped in
``sluice/catalog/migrations``. :func:`migrate` is meant to run at every start, from any number
of processes at once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Final

import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from sluice.errors import ConfigError, SluiceError

__all__ = ["ENV_VAR", "MIGRATIONS_DIR", "alembic_config", "create_engine_for", "head_revision", "migrate"]

ENV_VAR: Final = "SLUICE_DATABASE_URL"
MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"

# Key of the PostgreSQL advisory lock held while migrating (a constant: "sluice:catalog").
_MIGRATION_LOCK_KEY: Final = 0x736C_7569_6365_4D31

# Alembic's ``context`` and ``op`` are process-wide proxies: one migration at a time per process.
# Taken after the database's lock, so threads of one process also meet at the database's lock.
_ALEMBIC_LOCK: Final = threading.Lock()

_SQLITE_PRAGMAS: Final = (
    "PRAGMA busy_timeout=5000",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)
_SQLITE_BUSY_S: Final = 5.0

_EXPECTED = "expected sqlite:///<path>, sqlite:// (in memory) or postgresql://user:password@host:port/database"


def create_engine_for(url: str) -> Engine:
    """An engine for a ``SLUICE_DATABASE_URL`` value.

    Accepted: ``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``sqlite://`` (in
    memory: one connection shared by every user of the engine), ``postgresql://…`` and
    ``postgresql+psycopg://…`` (always the psycopg 3 driver). SQLite connections all get WAL,
    ``synchronous=NORMAL``, ``foreign_keys=ON`` and ``busy_timeout=5000``; the database file's
    folder is created if missing. Anything else raises :class:`ConfigError`.
    """
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    return sqlalchemy.create_engine(parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True)


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url.strip())
    except (ArgumentError, ValueError, AttributeError):
        # No echo of the value: it may hold a password.
        raise ConfigError(f"{ENV_VAR} is not a database URL: {_EXPECTED}") from None
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        if parsed.host or parsed.username or parsed.password or parsed.port:
            raise ConfigError(f"{ENV_VAR}: a sqlite URL has no host, write sqlite:///<path> (three slashes)")
        return parsed
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        if not parsed.database:
            raise ConfigError(f"{ENV_VAR}: the postgresql URL names no database: {_EXPECTED}")
        return parsed
    raise ConfigError(f"{ENV_VAR} has an unsupported scheme {parsed.drivername + '://'!r}: {_EXPECTED}")


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or (
        database.startswith("file:") and url.query.get("mode") == "memory"  # URI form
    )
    if in_memory:
        engine = sqlalchemy.create_engine(
            url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
        )
    else:
        if not database.startswith("file:"):
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"{ENV_VAR}: cannot create the folder of {database}: {exc.strerror}") from None
        engine = sqlalchemy.create_engine(url)
    event.listen(engine, "connect", _on_sqlite_connect)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, connection_record: ConnectionPoolEntry) -> None:
    assert isinstance(dbapi_connection, sqlite3.Connection)
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        _use_wal(cursor)
    finally:
        cursor.close()


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the database file to WAL (it stays so: later connections find it done).

    The switch needs an exclusive lock and SQLite answers "database is locked" at once, without
    waiting, when several connections try it on a new file together: retry for a while.
    """
    mode = str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    if mode in ("wal", "memory"):
        return
    deadline = time.monotonic() + _SQLITE_BUSY_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() > deadline:
                raise
        time.sleep(0.005)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code (no ``alembic.ini``), bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # The migrations' file names sort by number: 0001_initial.py, 0002_….
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration's revision id."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def migrate(engine: Engine) -> None:
    """Upgrade the catalog schema to the newest migration (a no-op when it is there already).

    Safe at every start and from several processes at once: on PostgreSQL the upgrade runs
    under a session advisory lock, in one transaction; on SQLite in one ``BEGIN IMMEDIATE``
    transaction, which other writers wait for (``busy_timeout``), with foreign keys checked
    at the end rather than enforced statement by statement.
    """
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            _migrate_postgresql(connection)
        else:
            _migrate_sqlite(connection)


def _migrate_sqlite(connection: Connection) -> None:
    # SQLite's procedure for schema changes: foreign keys off (only possible outside a
    # transaction), so that a table rebuilt by a batch migration does not cascade deletes into
    # its children; checked before commit; back on afterwards for the pooled connection.
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            _upgrade(connection)
            violations = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if violations:
                raise SluiceError(f"a catalog migration left rows violating foreign keys: {violations[:5]}")
        except BaseException:
            connection.rollback()
            raise
        connection.commit()
    finally:
        try:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
        except Exception:
            connection.invalidate()  # never hand back a connection without foreign keys


def _migrate_postgresql(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    connection.commit()
    try:
        with connection.begin():
            _upgrade(connection)
    finally:
        try:
            if connection.in_transaction():
                connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            connection.commit()
        except Exception:
            # The session could not be told: closing it releases the lock.
            connection.invalidate()


def _upgrade(connection: Connection) -> None:
    with _ALEMBIC_LOCK:
        command.upgrade(alembic_config(connection), "head")
