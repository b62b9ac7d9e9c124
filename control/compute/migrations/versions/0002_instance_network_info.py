"""instance network_info (the ports cache)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 15:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("instances", sa.Column("network_info", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("instances", "network_info")
