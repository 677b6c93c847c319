"""email: templates and unsubscribed addresses

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 09:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_template",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("is_shared", sa.Boolean(), nullable=False),
        sa.Column("is_archived", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("updated_by", sa.String(length=64), nullable=True),
        sa.Column("date_created", sa.DateTime(), nullable=False),
        sa.Column("date_updated", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_email_template_organization_id_organization"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_template")),
    )
    with op.batch_alter_table("email_template", schema=None) as batch_op:
        batch_op.create_index(
            "ix_email_template_org_name", ["organization_id", "name"], unique=False
        )
    op.create_table(
        "unsubscribed_email",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("email_lower", sa.String(length=254), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("date_created", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_unsubscribed_email_organization_id_organization"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "organization_id", "email_lower", name=op.f("pk_unsubscribed_email")
        ),
    )


def downgrade() -> None:
    op.drop_table("unsubscribed_email")
    with op.batch_alter_table("email_template", schema=None) as batch_op:
        batch_op.drop_index("ix_email_template_org_name")
    op.drop_table("email_template")
