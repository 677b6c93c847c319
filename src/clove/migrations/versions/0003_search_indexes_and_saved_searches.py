"""search: saved searches, trigram indexes for word matches, events by user

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# PostgreSQL only: GIN trigram indexes let word and prefix matches (`~`, `LIKE '%x%'`) use an
# index. They are not in the models (SQLite has no equivalent); migrate_check skips `ix_trgm_*`.
TRIGRAM_INDEXES = {
    "ix_trgm_lead_name": ("lead", "lower(name)"),
    "ix_trgm_lead_description": ("lead", "lower(description)"),
    "ix_trgm_contact_name": ("contact", "lower(name)"),
    "ix_trgm_contact_title": ("contact", "lower(title)"),
    "ix_trgm_contact_email": ("contact_email", "email_lower"),
}


def upgrade() -> None:
    op.create_table(
        "saved_search",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("query", sa.Text(), nullable=True),
        sa.Column("s_query", sa.JSON(), nullable=True),
        sa.Column("selected_fields", sa.JSON(), nullable=True),
        sa.Column("is_shared", sa.Boolean(), nullable=False),
        sa.Column("shared_with", sa.JSON(), nullable=True),
        sa.Column("sharing_settings", sa.JSON(), nullable=True),
        sa.Column("is_user_dependent", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("updated_by", sa.String(length=64), nullable=True),
        sa.Column("date_created", sa.DateTime(), nullable=False),
        sa.Column("date_updated", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_saved_search_organization_id_organization"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_search")),
    )
    with op.batch_alter_table("saved_search", schema=None) as batch_op:
        batch_op.create_index("ix_saved_search_org_name", ["organization_id", "name"], unique=False)
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_event_org_user", ["organization_id", "user_id", "date_updated"], unique=False
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, (table, expression) in TRIGRAM_INDEXES.items():
            op.execute(f"CREATE INDEX {name} ON {table} USING gin ({expression} gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in TRIGRAM_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index("ix_event_org_user")
    with op.batch_alter_table("saved_search", schema=None) as batch_op:
        batch_op.drop_index("ix_saved_search_org_name")
    op.drop_table("saved_search")
