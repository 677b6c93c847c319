"""Background jobs and the bulk actions they run.

A job is a row written in the same transaction as the request that asks for the work. Workers
claim it with a lease (`locked_by`, `locked_until`) and run it in chunks; each chunk is one
transaction that also moves `phase`/`position` on, so a killed worker loses nothing and a
resumed one repeats nothing.
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
    PrimaryKeyConstraint,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from clove.kit.dates import utcnow
from clove.models.base import ID, Base, Timestamps


class Job(Timestamps, Base):
    __tablename__ = "job"
    __table_args__ = (
        # The claim scans runnable jobs only; done jobs are never looked at again.
        Index("ix_job_state_org", "state", "organization_id", "last_run_at"),
        Index("ix_job_subject", "subject_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(40))
    subject_id: Mapped[str] = mapped_column(ID)
    # ready (claimable) | waiting (paused by a user) | done | failed
    state: Mapped[str] = mapped_column(String(20), default="ready")
    phase: Mapped[str] = mapped_column(String(20), default="load")
    position: Mapped[int] = mapped_column(Integer, default=0)
    locked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    run_after: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class BulkAction(Timestamps, Base):
    """One bulk action of any of Close's four kinds; kind-specific request fields in `params`."""

    __tablename__ = "bulk_action"
    __table_args__ = (Index("ix_bulk_action_org_kind", "organization_id", "kind", "date_created"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(40))  # sequence_subscription | email | edit | delete
    status: Mapped[str] = mapped_column(String(20), default="created")
    query: Mapped[str | None] = mapped_column(Text, nullable=True)
    s_query: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    sort: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    results_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Where "today" was for the request: relative dates in the query resolve the same later.
    search_timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    send_done_email: Mapped[bool] = mapped_column(Boolean, default=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    n_leads: Mapped[int | None] = mapped_column(Integer, nullable=True)
    n_leads_processed: Mapped[int] = mapped_column(Integer, default=0)
    n_objects: Mapped[int | None] = mapped_column(Integer, nullable=True)
    n_objects_processed: Mapped[int] = mapped_column(Integer, default=0)
    # Clove extension: objects left alone, by reason ({"no_email": 3, ...}).
    skipped: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    paused_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_by: Mapped[str | None] = mapped_column(ID, nullable=True)
    updated_by: Mapped[str | None] = mapped_column(ID, nullable=True)


class BulkActionItem(Base):
    """The objects a bulk action's query matched, numbered in its sort order when it was
    resolved; chunks walk `position` ranges and delete what they have done."""

    __tablename__ = "bulk_action_item"
    __table_args__ = (PrimaryKeyConstraint("bulk_action_id", "position"),)

    bulk_action_id: Mapped[str] = mapped_column(ID)
    position: Mapped[int] = mapped_column(Integer)
    object_id: Mapped[str] = mapped_column(ID)
