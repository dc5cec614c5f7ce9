"""Console state shared across workstations: saved queue filters and presence.

Presence ("王伟 正在查看") is a row per user and workstation naming the case
on screen, refreshed by a heartbeat; a trigger NOTIFYs every console so the
label appears within a second.  Rows older than the heartbeat timeout are
ignored by readers, so a console that crashed does not haunt a case.

Revision ID: 0004
Revises: 0003
Created: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saved_filter",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("criteria", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"],
                                name=op.f("fk_saved_filter_user_id_app_user"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "name", name=op.f("pk_saved_filter")),
    )
    op.create_table(
        "presence",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("workstation", sa.String(length=100), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"],
                                name=op.f("fk_presence_user_id_app_user"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"], name=op.f("fk_presence_case_id_case"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "workstation", name=op.f("pk_presence")),
    )
    op.create_index("ix_presence_case", "presence", ["case_id"], unique=False)
    op.execute("""
        CREATE FUNCTION presence_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('grid_presence', coalesce(NEW.case_id, OLD.case_id, 0)::text);
            RETURN NULL;
        END $$
    """)
    op.execute("""
        CREATE TRIGGER presence_notify AFTER INSERT OR UPDATE OF case_id OR DELETE ON presence
            FOR EACH ROW EXECUTE FUNCTION presence_notify()
    """)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS presence_notify ON presence")
    op.execute("DROP FUNCTION IF EXISTS presence_notify()")
    op.drop_index("ix_presence_case", table_name="presence")
    op.drop_table("presence")
    op.drop_table("saved_filter")
