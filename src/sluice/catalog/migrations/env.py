"""Alembic environment of the catalog, driven from code by :func:`sluice.catalog.db.migrate`.

There is no ``alembic.ini``: :func:`sluice.catalog.db.alembic_config` builds the configuration
and passes the connection to migrate in ``config.attributes["connection"]``, already inside the
transaction the caller commits. To write a new migration, migrate a scratch database to head
and autogenerate against it::

    engine = db.create_engine_for("sqlite:////tmp/scratch.db")
    db.migrate(engine)
    with engine.connect() as connection:
        command.revision(db.alembic_config(connection), "what changed", autogenerate=True, rev_id="0002")

then review the generated file (and keep it in step with ``tables.py``).
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from sluice.catalog.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: autogenerate emits batch (copy-and-move) operations.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    # Run by hand without a connection: use SLUICE_DATABASE_URL.
    from sluice.catalog.db import ENV_VAR, create_engine_for
    from sluice.errors import ConfigError

    url = os.environ.get(ENV_VAR)
    if not url:
        raise ConfigError(f"{ENV_VAR} is not set: no database to migrate")
    engine = create_engine_for(url)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


def _run_offline() -> None:
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get("SLUICE_DATABASE_URL")
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
