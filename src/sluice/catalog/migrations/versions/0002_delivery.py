"""Delivery outcomes: counters, latency histograms and samples per destination.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

A frozen copy of the ``delivery_*`` tables of ``sluice/catalog/tables.py`` as of this revision.
No foreign keys to ``destinations``: outcomes may arrive for a destination just deleted.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_counts",
        sa.Column("destination_id", sa.String(length=40), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=False),
        sa.Column("reason_code", sa.String(length=200), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("destination_id", "minute", "outcome", "reason_code", name=op.f("pk_delivery_counts")),
    )
    op.create_table(
        "delivery_latency",
        sa.Column("destination_id", sa.String(length=40), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("histogram", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("destination_id", "minute", name=op.f("pk_delivery_latency")),
    )
    op.create_table(
        "delivery_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("destination_id", sa.String(length=40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=False),
        sa.Column("reason_code", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source_id", sa.String(length=40), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("event", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("logs", sa.JSON(), nullable=False),
        sa.Column("requests", sa.JSON(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_samples")),
    )
    op.create_index("ix_delivery_samples_destination_id_at", "delivery_samples", ["destination_id", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_delivery_samples_destination_id_at", table_name="delivery_samples")
    op.drop_table("delivery_samples")
    op.drop_table("delivery_latency")
    op.drop_table("delivery_counts")
