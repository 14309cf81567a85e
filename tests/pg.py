"""PostgreSQL fixtures (registered for every test by ``tests/conftest.py``).

The server is the one at 127.0.0.1:5432 (user ``postgres``, trust authentication). Without it,
tests that need it skip on a laptop and fail under ``CI=true`` (see ``skip_or_fail``). Every
database made here has a random ``sluice_test_…`` name and is dropped afterwards, so test runs
in parallel do not meet.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import skip_or_fail

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
CONNECT_TIMEOUT_S = 2


def pg_url(database: str) -> str:
    """The SQLAlchemy URL of ``database`` on the test server."""
    return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def _admin_connect() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host=PG_HOST,
        port=PG_PORT,
        user=PG_USER,
        dbname="postgres",
        connect_timeout=CONNECT_TIMEOUT_S,
        autocommit=True,
    )


@contextmanager
def temporary_database() -> Iterator[str]:
    """Create an empty, uniquely named database; yield its URL; drop it (whoever is connected)."""
    name = f"sluice_test_{secrets.token_hex(6)}"
    with _admin_connect() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield pg_url(name)
    finally:
        with _admin_connect() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """URL of the server's ``postgres`` database, once the server answered within 2 s."""
    try:
        with _admin_connect() as admin:
            admin.execute("SELECT 1")
    except psycopg.Error as exc:
        skip_or_fail(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} as {PG_USER}: {exc}".strip())
    return pg_url("postgres")


@pytest.fixture(scope="session")
def pg_database(pg_server_url: str) -> Iterator[str]:
    """One database for the whole session (tests share it: use it for what tolerates that)."""
    with temporary_database() as url:
        yield url


@pytest.fixture
def fresh_pg_url(pg_server_url: str) -> Iterator[str]:
    """A new, empty database for this test only."""
    with temporary_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty catalog database URL: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url
