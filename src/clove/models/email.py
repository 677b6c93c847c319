"""Email configuration: templates and the organization's unsubscribed addresses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from clove.kit.dates import utcnow
from clove.models.base import ID, Base, Timestamps


class EmailTemplate(Timestamps, Base):
    __tablename__ = "email_template"
    __table_args__ = (Index("ix_email_template_org_name", "organization_id", "name"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    is_shared: Mapped[bool] = mapped_column(Boolean, default=False)
    is_archived: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str | None] = mapped_column(ID, nullable=True)
    updated_by: Mapped[str | None] = mapped_column(ID, nullable=True)


class UnsubscribedEmail(Base):
    """An address the organization never mails from sequences or bulk email."""

    __tablename__ = "unsubscribed_email"

    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True
    )
    # Stored lower-cased: addresses match without regard to case, as contact emails do.
    email_lower: Mapped[str] = mapped_column(String(254), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    date_created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
