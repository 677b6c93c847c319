"""Organizations, users and memberships."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from clove.models.base import ID, Base, Timestamps


class Organization(Timestamps, Base):
    __tablename__ = "organization"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    enable_unsubscribe_link: Mapped[bool] = mapped_column(Boolean, default=True)
    require_unsubscribe_link: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str | None] = mapped_column(ID, nullable=True)
    updated_by: Mapped[str | None] = mapped_column(ID, nullable=True)


class User(Timestamps, Base):
    """A person; users are global and join organizations through memberships."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    # Lower-cased copy so that emails match case-insensitively on both databases.
    email_lower: Mapped[str] = mapped_column(String(254), unique=True)
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    last_used_timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Membership(Timestamps, Base):
    __tablename__ = "membership"
    __table_args__ = (
        UniqueConstraint("organization_id", "user_id", name="uq_membership_org_user"),
        Index("ix_membership_user", "user_id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    role_id: Mapped[str] = mapped_column(String(64), default="user")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_record_calls: Mapped[str] = mapped_column(String(16), default="unset")
    track_email_opens: Mapped[bool] = mapped_column(Boolean, default=True)
    may_workflows_impersonate: Mapped[bool] = mapped_column(Boolean, default=False)
    pinned_views: Mapped[list[str]] = mapped_column(JSON, default=list)
