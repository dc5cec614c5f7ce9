"""Territory lattice: where each district's unit-cell lattice lies, and each cell in it.

The unit cells of a district lie on a regular lon/lat lattice; storing the
lattice lets a point be located to its cell by arithmetic (column and row),
with an exact polygon test only for cells clipped by the border.

Revision ID: 0002
Revises: 0001
Created: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_DISTRICT_COLUMNS = [
    ("crs_source", sa.String(10), sa.text("'wgs84'")),
    ("cell_m", sa.Float(), sa.text("100")),
    ("origin_lon", sa.Float(), sa.text("0")),
    ("origin_lat", sa.Float(), sa.text("0")),
    ("dlon", sa.Float(), sa.text("0")),
    ("dlat", sa.Float(), sa.text("0")),
    ("n_cols", sa.Integer(), sa.text("0")),
    ("n_rows", sa.Integer(), sa.text("0")),
]


def upgrade() -> None:
    for name, type_, default in _DISTRICT_COLUMNS:
        op.add_column("district", sa.Column(name, type_, server_default=default, nullable=False))
    op.add_column("unit_cell", sa.Column("adcode", sa.String(6), nullable=False, server_default=""))
    op.add_column("unit_cell", sa.Column("col", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("unit_cell", sa.Column("row", sa.Integer(), nullable=False, server_default="0"))
    op.add_column(
        "unit_cell", sa.Column("clipped", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.create_index("ix_unit_cell_lattice", "unit_cell", ["adcode", "col", "row"], unique=True)
    op.add_column("street", sa.Column("area_m2", sa.Float(), nullable=False, server_default="0"))
    op.add_column("community", sa.Column("area_m2", sa.Float(), nullable=False, server_default="0"))
    op.add_column("grid", sa.Column("area_m2", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    for table in ("grid", "community", "street"):
        op.drop_column(table, "area_m2")
    op.drop_index("ix_unit_cell_lattice", table_name="unit_cell")
    for name in ("clipped", "row", "col", "adcode"):
        op.drop_column("unit_cell", name)
    for name, *_ in reversed(_DISTRICT_COLUMNS):
        op.drop_column("district", name)
