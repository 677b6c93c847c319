"""Smart Views: a named query over one object type."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from clove.models.base import ID, Base, Timestamps


class SavedSearch(Timestamps, Base):
    __tablename__ = "saved_search"
    __table_args__ = (Index("ix_saved_search_org_name", "organization_id", "name"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    user_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    type: Mapped[str] = mapped_column(String(40), default="lead")
    # Either a text query or an `s_query` wrapper `{query, sort, results_limit}`, as in Close.
    query: Mapped[str | None] = mapped_column(Text, nullable=True)
    s_query: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    selected_fields: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    is_shared: Mapped[bool] = mapped_column(Boolean, default=False)
    shared_with: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    sharing_settings: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    is_user_dependent: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str | None] = mapped_column(ID, nullable=True)
    updated_by: Mapped[str | None] = mapped_column(ID, nullable=True)
