"""Gateway: events of the field force (left/returned to the own grid, offline/online).

The GPS gateway derives these from the positions it stores, so the console
can alarm on a worker who left the grid or went silent without replaying
every position.  The table is append-only by convention; ``id`` orders it,
so a console catches up with ``id > last_seen``.

Revision ID: 0003
Revises: 0002
Created: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_event",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("grid_id", sa.Integer(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column(
            "detail",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('left_grid','returned_to_grid','offline','online')",
            name=op.f("ck_worker_event_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["device.id"],
            name=op.f("fk_worker_event_device_id_device"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["worker.id"],
            name=op.f("fk_worker_event_worker_id_worker"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["grid_id"],
            ["grid.id"],
            name=op.f("fk_worker_event_grid_id_grid"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_event")),
    )
    op.create_index("ix_worker_event_device_at", "worker_event", ["device_id", "at"])
    op.create_index("ix_worker_event_worker_at", "worker_event", ["worker_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_worker_event_worker_at", table_name="worker_event")
    op.drop_index("ix_worker_event_device_at", table_name="worker_event")
    op.drop_table("worker_event")
