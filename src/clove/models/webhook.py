"""Webhook subscriptions: where an organization's events are POSTed (close-api.md §6.2)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text
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
    created_by: Mapped[str | None] = mapped_column(ID, nullable=True)
    updated_by: Mapped[str | None] = mapped_column(ID, nullable=True)
