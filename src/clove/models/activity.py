"""Activities on a lead (emails) and tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from clove.models.base import ID, Base, Timestamps


class EmailActivity(Timestamps, Base):
    __tablename__ = "email_activity"
    __table_args__ = (
        Index("ix_email_activity_lead", "lead_id", "date_created"),
        Index("ix_email_activity_org_created", "organization_id", "date_created", "id"),
        Index("ix_email_activity_message_id", "organization_id", "message_id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    lead_id: Mapped[str] = mapped_column(ID, ForeignKey("lead.id", ondelete="CASCADE"))
    contact_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    user_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    email_account_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    direction: Mapped[str] = mapped_column(String(20), default="outgoing")
    status: Mapped[str] = mapped_column(String(20), default="sent")
    subject: Mapped[str] = mapped_column(Text, default="")
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str] = mapped_column(Text, default="")
    sender: Mapped[str | None] = mapped_column(String(600), nullable=True)
    to: Mapped[list[str]] = mapped_column(JSON, default=list)
    cc: Mapped[list[str]] = mapped_column(JSON, default=list)
    bcc: Mapped[list[str]] = mapped_column(JSON, default=list)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    message_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(300), nullable=True)
    references: Mapped[list[str]] = mapped_column(JSON, default=list)
    thread_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    template_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    sequence_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    sequence_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    sequence_subscription_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    bulk_email_action_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    date_sent: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_by: Mapped[str | None] = mapped_column(ID, nullable=True)
    updated_by: Mapped[str | None] = mapped_column(ID, nullable=True)


class Task(Timestamps, Base):
    __tablename__ = "task"
    __table_args__ = (
        Index("ix_task_org_assigned", "organization_id", "assigned_to", "is_complete"),
        Index("ix_task_lead", "lead_id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    type: Mapped[str] = mapped_column(String(40), default="lead")
    lead_id: Mapped[str] = mapped_column(ID, ForeignKey("lead.id", ondelete="CASCADE"))
    contact_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    assigned_to: Mapped[str | None] = mapped_column(ID, nullable=True)
    text: Mapped[str] = mapped_column(Text, default="")
    # Close's `date` is either a date or a datetime; `date_has_time` says which.
    date: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    date_has_time: Mapped[bool] = mapped_column(Boolean, default=False)
    is_complete: Mapped[bool] = mapped_column(Boolean, default=False)
    sequence_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    sequence_subscription_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    created_by: Mapped[str | None] = mapped_column(ID, nullable=True)
    updated_by: Mapped[str | None] = mapped_column(ID, nullable=True)
