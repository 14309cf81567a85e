"""The functions' persistent key-value store (``store`` in DESIGN §3.5).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

A frozen copy of the ``function_store`` table of ``sluice/catalog/tables.py`` as of this
revision. Constraint names follow the naming convention of ``tables.metadata``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "function_store",
        sa.Column("instance_id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=256), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", "key", name=op.f("pk_function_store")),
    )


def downgrade() -> None:
    op.drop_table("function_store")
