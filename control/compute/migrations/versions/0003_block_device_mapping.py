"""block_device_mapping (servers' volumes)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 18:30:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_DATETIME = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def upgrade() -> None:
    op.create_table(
        "block_device_mapping",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("device_name", sa.String(length=255), nullable=False),
        sa.Column("boot_index", sa.Integer(), nullable=True),
        sa.Column("delete_on_termination", sa.Boolean(), nullable=False),
        sa.Column("attachment_id", sa.String(length=36), nullable=True),
        sa.Column("connection_info", sa.JSON(), nullable=True),
        sa.Column("created_at", _DATETIME, nullable=False),
        sa.Column("updated_at", _DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["instance_uuid"], ["instances.uuid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("instance_uuid", "device_name", name="uq_bdm_instance_device"),
        sa.UniqueConstraint("instance_uuid", "volume_id", name="uq_bdm_instance_volume"),
    )
    op.create_index(
        op.f("ix_block_device_mapping_instance_uuid"),
        "block_device_mapping",
        ["instance_uuid"],
        unique=False,
    )
    op.create_index(
        op.f("ix_block_device_mapping_volume_id"),
        "block_device_mapping",
        ["volume_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_block_device_mapping_volume_id"), table_name="block_device_mapping")
    op.drop_index(op.f("ix_block_device_mapping_instance_uuid"), table_name="block_device_mapping")
    op.drop_table("block_device_mapping")
