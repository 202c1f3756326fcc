"""audit: per-server payload capture switch, a detail column for security events

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 13:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN: a batch rebuild of "servers" on SQLite (foreign keys on) would cascade-delete
    # every row that references a server (server_tools, api_keys, ...).
    op.add_column("servers", sa.Column("capture_payloads", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("detail", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("detail")
    with op.batch_alter_table("servers") as batch:
        batch.drop_column("capture_payloads")
