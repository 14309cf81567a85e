"""Web-console sessions in the catalog, shared by every API process.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

A frozen copy of the ``console_sessions`` table of ``sluice/catalog/tables.py`` as of this
revision. Constraint and index names follow the naming convention of ``tables.metadata``.
Sessions kept in memory before this revision are not carried over: users sign in again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("csrf", sa.String(length=100), nullable=False),
        sa.Column("me", sa.JSON(), nullable=False),
        sa.Column("flashes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_console_sessions")),
    )
    op.create_index("ix_console_sessions_last_seen_at", "console_sessions", ["last_seen_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_console_sessions_last_seen_at", table_name="console_sessions")
    op.drop_table("console_sessions")
