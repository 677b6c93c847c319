"""The event log: one row per change, written in the same transaction as the change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Index, String, false, text
from sqlalchemy.orm import Mapped, mapped_column

from clove.kit.dates import utcnow
from clove.models.base import ID, Base


class Event(Base):
    __tablename__ = "event"
    __table_args__ = (
        # Newest first by date_updated, with the id as the tie-breaker for cursors.
        Index("ix_event_org_updated", "organization_id", "date_updated", "id"),
        Index("ix_event_org_object", "organization_id", "object_id", "date_updated"),
        Index("ix_event_org_lead", "organization_id", "lead_id", "date_updated"),
        Index(
            "ix_event_org_type_action", "organization_id", "object_type", "action", "date_updated"
        ),
        Index("ix_event_org_request", "organization_id", "request_id"),
        Index("ix_event_org_user", "organization_id", "user_id", "date_updated"),
        # The events webhooks have not looked at yet (clove.webhook.fanout); few at any time.
        Index(
            "ix_event_unfanned",
            "date_created",
            postgresql_where=text("fanned_out = false"),
            sqlite_where=text("fanned_out = 0"),
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(ID)
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    lead_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    request_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    api_key_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    oauth_client_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    previous_data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    changed_fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    date_created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    date_updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Set once webhook deliveries for this event exist; a server default, so every writer
    # (including INSERT ... SELECT) leaves new events to be fanned out.
    fanned_out: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
