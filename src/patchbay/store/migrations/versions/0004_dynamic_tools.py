"""dynamic tools: pending definitions of quarantined tools, per-server new-tool policy and compact mode

Revision ID: 0004
Revises: 0006
Create Date: 2026-11-23 13:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tools") as batch:
        batch.add_column(sa.Column("pending_definition", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("pending_hash", sa.String(length=64), nullable=True))
    with op.batch_alter_table("servers") as batch:
        batch.add_column(sa.Column("new_tools", sa.String(length=10), server_default="disabled", nullable=False))
        batch.add_column(sa.Column("compact", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("servers") as batch:
        batch.drop_column("compact")
        batch.drop_column("new_tools")
    with op.batch_alter_table("tools") as batch:
        batch.drop_column("pending_hash")
        batch.drop_column("pending_definition")
