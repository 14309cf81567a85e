from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from sluice.catalog import db, tables
from sluice.errors import ConfigError, SluiceError


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.create_engine_for(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _table_names(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def _version(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def _pragmas(connection: sa.Connection) -> dict[str, object]:
    return {
        name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
        for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
    }


# --- create_engine_for -----------------------------------------------------------------------


def test_sqlite_file_engine_sets_pragmas_on_every_connection(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "catalog.db"
    engine = db.create_engine_for(f"sqlite:///{path}")
    try:
        assert path.parent.is_dir()
        with engine.connect() as first, engine.connect() as second:  # two pooled connections
            for connection in (first, second):
                assert _pragmas(connection) == {
                    "journal_mode": "wal",
                    "synchronous": 1,  # NORMAL
                    "foreign_keys": 1,
                    "busy_timeout": 5000,
                }
        assert path.exists()
    finally:
        engine.dispose()


def _connect_all_at_once(url: str, parties: int) -> tuple[list[object], list[BaseException]]:
    engines = [db.create_engine_for(url) for _ in range(parties)]
    barrier = threading.Barrier(parties)
    modes: list[object] = []
    errors: list[BaseException] = []

    def connect(engine: Engine) -> None:
        try:
            barrier.wait(timeout=10)
            with engine.connect() as connection:
                modes.append(_pragmas(connection)["journal_mode"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=connect, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    return modes, errors


def test_many_first_connections_to_a_new_sqlite_file_all_get_wal(tmp_path: Path) -> None:
    """Switching a new file to WAL races between connections (SQLite answers "database is
    locked" without waiting, in a few percent of rounds like these); none may fail."""
    for round_ in range(25):
        modes, errors = _connect_all_at_once(f"sqlite:///{tmp_path / f'race{round_}.db'}", parties=8)
        assert errors == []
        assert modes == ["wal"] * 8


def test_sqlite_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    engine = db.create_engine_for("sqlite:///data/catalog.db")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        assert (tmp_path / "data" / "catalog.db").exists()
    finally:
        engine.dispose()


def test_migrate_in_memory_keeps_foreign_keys_on() -> None:
    engine = db.create_engine_for("sqlite://")
    try:
        db.migrate(engine)
        db.migrate(engine)
        with engine.connect() as connection:
            assert _pragmas(connection)["foreign_keys"] == 1
            assert set(sa.inspect(connection).get_table_names()) == set(tables.metadata.tables) | {"alembic_version"}
    finally:
        engine.dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite+pysqlite://"])
def test_sqlite_memory_engine_shares_one_connection(url: str) -> None:
    engine = db.create_engine_for(url)
    try:
        assert isinstance(engine.pool, StaticPool)
        with engine.begin() as connection:
            assert _pragmas(connection)["foreign_keys"] == 1
            assert _pragmas(connection)["busy_timeout"] == 5000
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        seen: list[object] = []

        def other_thread() -> None:
            with engine.connect() as connection:
                seen.append(connection.exec_driver_sql("SELECT x FROM t").scalar())

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert seen == [1]
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:pw@db.example:5432/sluice",
        "postgresql+psycopg://user:pw@db.example/sluice",
        "postgresql://db.example/sluice?sslmode=require",
    ],
)
def test_postgresql_urls_use_psycopg3(url: str) -> None:
    engine = db.create_engine_for(url)  # does not connect
    try:
        assert engine.dialect.name == "postgresql"
        assert engine.dialect.driver == "psycopg"
        assert engine.url.drivername == "postgresql+psycopg"
        assert engine.url.database == "sluice"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "not a url",
        "mysql://user:hunter2@localhost/sluice",
        "postgresql+psycopg2://user:hunter2@localhost/sluice",
        "postgresql+asyncpg://user:hunter2@localhost/sluice",
        "postgres://user:hunter2@localhost/sluice",
        "postgresql://user:hunter2@localhost",
        "sqlite://user:hunter2@host/path.db",
        "nats://localhost:4222",
        "http://example.com",
    ],
)
def test_bad_urls_are_config_errors_naming_the_variable(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        db.create_engine_for(url)
    assert "SLUICE_DATABASE_URL" in str(info.value)
    assert "hunter2" not in str(info.value)


# --- migrate ---------------------------------------------------------------------------------


def test_migrations_are_packaged_and_head_is_known() -> None:
    assert (db.MIGRATIONS_DIR / "env.py").is_file()
    assert (db.MIGRATIONS_DIR / "script.py.mako").is_file()
    assert db.head_revision() == "0005"


def test_migrate_creates_the_schema_and_a_second_run_is_a_no_op(engine: Engine) -> None:
    assert _table_names(engine) == set()
    db.migrate(engine)
    expected = set(tables.metadata.tables) | {"alembic_version"}
    assert _table_names(engine) == expected
    assert _version(engine) == [db.head_revision()]

    with engine.begin() as connection:
        connection.execute(
            tables.sources.insert().values(id="src_1", name="web", created_at=sa.func.now(), updated_at=sa.func.now())
        )

    db.migrate(engine)
    assert _table_names(engine) == expected
    assert _version(engine) == [db.head_revision()]
    with engine.connect() as connection:
        assert connection.execute(sa.select(tables.sources.c.id)).scalars().all() == ["src_1"]


def test_migrated_schema_matches_tables_py(engine: Engine) -> None:
    db.migrate(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, tables.metadata)
    assert diff == []


def test_a_schema_difference_would_be_seen(engine: Engine) -> None:
    """The comparison above is not vacuous: a column the migrations lack shows up."""
    db.migrate(engine)
    changed = sa.MetaData(naming_convention=tables.metadata.naming_convention)
    for table in tables.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["sources"].append_column(sa.Column("extra", sa.Integer, nullable=True))
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), changed)
    assert [entry[0] for entry in diff] == ["add_column"]


def test_foreign_keys_cascade_after_migrate(engine: Engine) -> None:
    db.migrate(engine)
    if engine.dialect.name == "sqlite":  # switched off while migrating, on again for the pool
        with engine.connect() as connection:
            assert _pragmas(connection)["foreign_keys"] == 1
    now = sa.func.now()
    with engine.begin() as connection:
        connection.execute(tables.sources.insert().values(id="src_1", name="web", created_at=now, updated_at=now))
        connection.execute(tables.write_keys.insert().values(key="wk_1", source_id="src_1", created_at=now))
    with engine.begin() as connection:
        connection.execute(tables.sources.delete())
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(tables.write_keys)).scalar() == 0
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(tables.write_keys.insert().values(key="wk_2", source_id="missing", created_at=now))


def _migrate_concurrently(database_url: str, parties: int = 4) -> None:
    """Like several processes starting at once: separate engines, all migrating an empty database."""
    engines = [db.create_engine_for(database_url) for _ in range(parties)]
    barrier = threading.Barrier(parties)
    errors: list[BaseException] = []

    def start(engine: Engine) -> None:
        try:
            barrier.wait(timeout=10)
            db.migrate(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(engine,)) for engine in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert _version(engines[0]) == [db.head_revision()]
        assert _table_names(engines[0]) == set(tables.metadata.tables) | {"alembic_version"}
    finally:
        for engine in engines:
            engine.dispose()


def test_concurrent_migrate_from_two_threads_on_postgresql(fresh_pg_url: str) -> None:
    _migrate_concurrently(fresh_pg_url, parties=2)


def test_concurrent_migrate_from_several_threads(database_url: str) -> None:
    _migrate_concurrently(database_url, parties=4)


def _advisory_locks(engine: Engine) -> int:
    with engine.connect() as connection:
        count = connection.execute(
            sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        ).scalar()
    assert isinstance(count, int)
    return count


def test_migrate_releases_the_postgresql_lock(fresh_pg_url: str) -> None:
    engine = db.create_engine_for(fresh_pg_url)
    try:
        db.migrate(engine)
        assert _advisory_locks(engine) == 0
        db.migrate(engine)
        assert _advisory_locks(engine) == 0
    finally:
        engine.dispose()


def test_failed_sqlite_migration_leaves_no_partial_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SQLite upgrade runs in one transaction: a failure part-way rolls every table back."""
    engine = db.create_engine_for(f"sqlite:///{tmp_path / 'catalog.db'}")
    real_upgrade = db._upgrade

    def failing_upgrade(connection: sa.Connection) -> None:
        real_upgrade(connection)
        raise RuntimeError("boom after the tables were created")

    monkeypatch.setattr(db, "_upgrade", failing_upgrade)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            db.migrate(engine)
        assert _table_names(engine) == set()
        with engine.connect() as connection:
            assert _pragmas(connection)["foreign_keys"] == 1
        monkeypatch.setattr(db, "_upgrade", real_upgrade)
        db.migrate(engine)
        assert _version(engine) == [db.head_revision()]
    finally:
        engine.dispose()


def test_sqlite_migration_leaving_orphans_is_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Foreign keys are off while migrating on SQLite, so they are checked before commit."""
    engine = db.create_engine_for(f"sqlite:///{tmp_path / 'catalog.db'}")
    real_upgrade = db._upgrade

    def orphaning_upgrade(connection: sa.Connection) -> None:
        real_upgrade(connection)
        connection.execute(tables.write_keys.insert().values(key="wk", source_id="missing", created_at=sa.func.now()))

    monkeypatch.setattr(db, "_upgrade", orphaning_upgrade)
    try:
        with pytest.raises(SluiceError, match="violating foreign keys"):
            db.migrate(engine)
        assert _table_names(engine) == set()
    finally:
        engine.dispose()


def test_failed_postgresql_migration_rolls_back_and_unlocks(fresh_pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = db.create_engine_for(fresh_pg_url)
    real_upgrade = db._upgrade

    def failing_upgrade(connection: sa.Connection) -> None:
        real_upgrade(connection)
        raise RuntimeError("boom after the tables were created")

    monkeypatch.setattr(db, "_upgrade", failing_upgrade)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            db.migrate(engine)
        assert _table_names(engine) == set()
        assert _advisory_locks(engine) == 0
        monkeypatch.setattr(db, "_upgrade", real_upgrade)
        db.migrate(engine)
        assert _version(engine) == [db.head_revision()]
    finally:
        engine.dispose()


def _migrate_in_another_process(url: str, barrier: Any, results: Any) -> None:
    engine = db.create_engine_for(url)
    try:
        barrier.wait(timeout=30)
        db.migrate(engine)
        results.put("ok")
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")
    finally:
        engine.dispose()


def test_concurrent_migrate_from_several_processes_on_postgresql(fresh_pg_url: str) -> None:
    """What the advisory lock is for: without it, all but one of these fail (IntegrityError)."""
    parties = 3
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(parties)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=_migrate_in_another_process, args=(fresh_pg_url, barrier, results)) for _ in range(parties)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    assert outcomes == ["ok"] * parties
    engine = db.create_engine_for(fresh_pg_url)
    try:
        assert _version(engine) == [db.head_revision()]
    finally:
        engine.dispose()
