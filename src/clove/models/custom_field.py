"""Custom field definitions for leads and contacts (values live on the objects)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from clove.models.base import ID, Base, Timestamps


class CustomField(Timestamps, Base):
    __tablename__ = "custom_field"
    __table_args__ = (
        UniqueConstraint(
            "organization_id", "object_type", "name", name="uq_custom_field_org_type_name"
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    object_type: Mapped[str] = mapped_column(String(20))  # "lead" or "contact"
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    # text, number, date, datetime, choices, user, contact, hidden
    type: Mapped[str] = mapped_column(String(20))
    accepts_multiple_values: Mapped[bool] = mapped_column(Boolean, default=False)
    choices: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # Order within /custom_field_schema/{object_type}/.
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str | None] = mapped_column(ID, nullable=True)
    updated_by: Mapped[str | None] = mapped_column(ID, nullable=True)
