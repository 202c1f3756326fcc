"""oauth connections: per-template OAuth clients and per-owner encrypted tokens

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _stamps() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    # New tables only: nothing existing is rebuilt.
    op.create_table(
        "oauth_clients",
        *_stamps(),
        sa.Column(
            "template_id",
            sa.String(length=32),
            sa.ForeignKey(
                "server_templates.id", ondelete="CASCADE", name="fk_oauth_clients_template_id_server_templates"
            ),
            nullable=False,
        ),
        sa.Column("resource", sa.String(length=2000), nullable=False),
        sa.Column("issuer", sa.String(length=2000), nullable=False),
        sa.Column("authorization_endpoint", sa.String(length=2000), nullable=False),
        sa.Column("token_endpoint", sa.String(length=2000), nullable=False),
        sa.Column("revocation_endpoint", sa.String(length=2000), nullable=True),
        sa.Column("client_id", sa.String(length=2000), nullable=False),
        sa.Column("secret_ciphertext", sa.Text(), nullable=True),
        sa.Column("auth_method", sa.String(length=40), nullable=False),
        sa.Column("registration", sa.String(length=20), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_oauth_clients"),
    )
    op.create_index("ix_oauth_clients_template_id", "oauth_clients", ["template_id"], unique=True)
    op.create_table(
        "oauth_tokens",
        *_stamps(),
        sa.Column(
            "client_id",
            sa.String(length=32),
            sa.ForeignKey("oauth_clients.id", ondelete="CASCADE", name="fk_oauth_tokens_client_id_oauth_clients"),
            nullable=False,
        ),
        sa.Column(
            "template_id",
            sa.String(length=32),
            sa.ForeignKey(
                "server_templates.id", ondelete="CASCADE", name="fk_oauth_tokens_template_id_server_templates"
            ),
            nullable=False,
        ),
        sa.Column(
            "org_id",
            sa.String(length=32),
            sa.ForeignKey("organizations.id", ondelete="CASCADE", name="fk_oauth_tokens_org_id_organizations"),
            nullable=False,
        ),
        sa.Column(
            "user_id",
            sa.String(length=32),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_oauth_tokens_user_id_users"),
            nullable=True,
        ),
        sa.Column("shared_name", sa.String(length=100), nullable=True),
        sa.Column("purpose", sa.String(length=10), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_oauth_tokens"),
        sa.UniqueConstraint("template_id", "org_id", "user_id", "shared_name", name="uq_oauth_tokens_template_id"),
    )
    for column in ("client_id", "template_id", "org_id", "user_id"):
        op.create_index(f"ix_oauth_tokens_{column}", "oauth_tokens", [column])


def downgrade() -> None:
    op.drop_table("oauth_tokens")
    op.drop_table("oauth_clients")
