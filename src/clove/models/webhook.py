"""Webhook subscriptions and their deliveries: where an organization's events are POSTed
(close-api.md §6.2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from clove.models.base import ID, Base, Timestamps


class Webhook(Timestamps, Base):
    __tablename__ = "webhook"
    __table_args__ = (Index("ix_webhook_org_created", "organization_id", "date_created"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    url: Mapped[str] = mapped_column(String(2000))
    # [{"object_type": ..., "action": ..., "extra_filter": {...} | null}, ...]
    events: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(20), default="active")
    verify_ssl: Mapped[bool] = mapped_column(Boolean, default=True)
    # The 32-byte key as hex, Fernet-encrypted at rest (clove.kit.secrets).
    signature_key: Mapped[str] = mapped_column(Text)
    pause_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    latest_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # When the current run of failed attempts began (null after any success): 3 days of
    # failures pause the subscription.
    failing_since: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_by: Mapped[str | None] = mapped_column(ID, nullable=True)
    updated_by: Mapped[str | None] = mapped_column(ID, nullable=True)


class WebhookDelivery(Timestamps, Base):
    """One event for one subscription: pending until a 2xx (delivered), the 72-hour retry
    window ends (failed), or the subscription is paused (dropped). Clove's delivery history."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id"),
        Index("ix_webhook_delivery_history", "webhook_id", "date_created"),
        # A subscription's due deliveries, oldest first (the dispatcher's claim), its backlog
        # (pending count) and what a pause drops.
        Index("ix_webhook_delivery_queue", "webhook_id", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_event", "event_id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(ID)
    webhook_id: Mapped[str] = mapped_column(ID, ForeignKey("webhook.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(ID)
    # pending | delivered | failed | dropped
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime)
    locked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    date_delivered: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
