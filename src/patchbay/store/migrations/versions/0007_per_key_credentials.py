"""per-key credentials: named shared credentials, the credential each key calls an upstream with, shared keys

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _stamps() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "shared_credentials",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("template_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_shared_credentials_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["server_templates.id"],
            name=op.f("fk_shared_credentials_template_id_server_templates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shared_credentials")),
        sa.UniqueConstraint("org_id", "template_id", "name", name=op.f("uq_shared_credentials_org_id")),
    )
    op.create_index(op.f("ix_shared_credentials_org_id"), "shared_credentials", ["org_id"], unique=False)
    op.create_index(op.f("ix_shared_credentials_template_id"), "shared_credentials", ["template_id"], unique=False)

    op.create_table(
        "api_key_credentials",
        sa.Column("api_key_id", sa.String(length=32), nullable=False),
        sa.Column("template_id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("shared_credential_id", sa.String(length=32), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name=op.f("fk_api_key_credentials_api_key_id_api_keys"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["server_templates.id"],
            name=op.f("fk_api_key_credentials_template_id_server_templates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["shared_credential_id"],
            ["shared_credentials.id"],
            name=op.f("fk_api_key_credentials_shared_credential_id_shared_credentials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key_credentials")),
        sa.UniqueConstraint("api_key_id", "template_id", name=op.f("uq_api_key_credentials_api_key_id")),
    )
    for column in ("api_key_id", "template_id", "shared_credential_id"):
        op.create_index(op.f(f"ix_api_key_credentials_{column}"), "api_key_credentials", [column], unique=False)

    # Plain ADD COLUMNs: a batch rebuild of "api_keys" on SQLite (foreign keys on) would cascade-delete
    # every permission of every key. Existing keys stay personal and keep the default choice.
    op.add_column("api_keys", sa.Column("shared", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("audit_records", sa.Column("credential", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("credential")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("shared")
    op.drop_table("api_key_credentials")
    op.drop_table("shared_credentials")
