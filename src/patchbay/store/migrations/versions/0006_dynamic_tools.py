"""dynamic tools: pending definitions of quarantined tools, per-server new-tool policy and compact mode

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 13:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs: a batch rebuild of "servers" or "tools" on SQLite (foreign keys on) would
    # cascade-delete every row that references them.
    op.add_column("tools", sa.Column("pending_definition", sa.JSON(), nullable=True))
    op.add_column("tools", sa.Column("pending_hash", sa.String(length=64), nullable=True))
    op.add_column("servers", sa.Column("new_tools", sa.String(length=10), server_default="disabled", nullable=False))
    op.add_column("servers", sa.Column("compact", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("servers") as batch:
        batch.drop_column("compact")
        batch.drop_column("new_tools")
    with op.batch_alter_table("tools") as batch:
        batch.drop_column("pending_hash")
        batch.drop_column("pending_definition")
