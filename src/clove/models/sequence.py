"""Sequences, their steps, subscriptions and the record of every step a subscription ran.

A subscription carries its own schedule state (`next_step_position`, `next_step_at`,
`locked_until`): the engine finds due work with one indexed range scan and claims it with a
lease, so no process memory is needed to know what runs next.
"""

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
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from clove.models.base import ID, Base, Timestamps


class Sequence(Timestamps, Base):
    __tablename__ = "sequence"
    __table_args__ = (Index("ix_sequence_org_created", "organization_id", "date_created"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="active")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # null, or {"ranges": [{"weekday": 1..7, "start": "HH:MM", "end": "HH:MM"}, ...]}
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_by_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    updated_by_id: Mapped[str | None] = mapped_column(ID, nullable=True)


class SequenceStep(Timestamps, Base):
    __tablename__ = "sequence_step"
    __table_args__ = (Index("ix_sequence_step_sequence", "sequence_id", "position"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(ID)
    sequence_id: Mapped[str] = mapped_column(ID, ForeignKey("sequence.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    step_type: Mapped[str] = mapped_column(String(20), default="email")
    delay: Mapped[int] = mapped_column(Integer, default=0)  # seconds after the previous step
    email_template_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    threading: Mapped[str | None] = mapped_column(String(20), nullable=True)
    required: Mapped[bool] = mapped_column(Boolean, default=True)
    step_allowed_delay: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_by_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    updated_by_id: Mapped[str | None] = mapped_column(ID, nullable=True)


LIVE = "status IN ('active', 'paused')"


class SequenceSubscription(Timestamps, Base):
    __tablename__ = "sequence_subscription"
    __table_args__ = (
        # A contact runs a sequence at most once at a time.
        Index(
            "uq_sequence_subscription_live",
            "sequence_id",
            "contact_id",
            unique=True,
            sqlite_where=text(LIVE),
            postgresql_where=text(LIVE),
        ),
        Index("ix_sequence_subscription_contact", "contact_id"),
        Index("ix_sequence_subscription_lead", "lead_id"),
        # The engine's scan: only active subscriptions have a next_step_at.
        Index("ix_sequence_subscription_due", "next_step_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    sequence_id: Mapped[str] = mapped_column(ID, ForeignKey("sequence.id", ondelete="CASCADE"))
    contact_id: Mapped[str] = mapped_column(ID, ForeignKey("contact.id", ondelete="CASCADE"))
    lead_id: Mapped[str] = mapped_column(ID, ForeignKey("lead.id", ondelete="CASCADE"))
    contact_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    sender_account_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    sender_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    sender_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    calls_assigned_to: Mapped[list[str]] = mapped_column(JSON, default=list)
    start_date: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="active")
    status_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_by_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    updated_by_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    bulk_action_id: Mapped[str | None] = mapped_column(ID, nullable=True)

    # Engine state. `next_step_position` indexes the sequence's steps in order.
    next_step_position: Mapped[int] = mapped_column(Integer, default=0)
    next_step_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_step_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # The thread later `old_thread` steps reply into: its subject and Message-IDs so far.
    thread_subject: Mapped[str | None] = mapped_column(Text, nullable=True)
    thread_message_ids: Mapped[list[str]] = mapped_column(JSON, default=list)


class SequenceStepRun(Base):
    """One (subscription, step) execution, written before any side effect: never twice."""

    __tablename__ = "sequence_step_run"
    __table_args__ = (
        UniqueConstraint("subscription_id", "step_id", name="uq_sequence_step_run_step"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(ID)
    subscription_id: Mapped[str] = mapped_column(
        ID, ForeignKey("sequence_subscription.id", ondelete="CASCADE")
    )
    step_id: Mapped[str] = mapped_column(ID)
    # sending -> sent | unconfirmed | retry -> sending ... | failed | skipped
    status: Mapped[str] = mapped_column(String(20))
    message_id: Mapped[str | None] = mapped_column(String(300), nullable=True, unique=True)
    activity_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    task_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    date_created: Mapped[datetime] = mapped_column(DateTime)
    date_updated: Mapped[datetime] = mapped_column(DateTime)
