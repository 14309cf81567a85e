"""Destination filters: an FQL condition plus actions, per destination (optionally per source).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

A frozen copy of the ``destination_filters`` table of ``sluice/catalog/tables.py`` as of this
revision. Constraint and index names follow the naming convention of ``tables.metadata``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "destination_filters",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("destination_id", sa.String(length=40), nullable=False),
        sa.Column("source_id", sa.String(length=40), nullable=True),
        sa.Column("if_", sa.Text(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("title", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["destination_id"],
            ["destinations.id"],
            name=op.f("fk_destination_filters_destination_id_destinations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.id"], name=op.f("fk_destination_filters_source_id_sources"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_destination_filters")),
    )
    op.create_index(
        op.f("ix_destination_filters_destination_id"), "destination_filters", ["destination_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_destination_filters_destination_id"), table_name="destination_filters")
    op.drop_table("destination_filters")
