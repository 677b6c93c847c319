"""Leads, their contacts and addresses, and lead statuses.

Contact emails, phones and URLs are rows of their own (not JSON) so that searches can
index them; each carries `organization_id` and `lead_id` so that a search needs no join
back through the contact. Custom field values live in a JSON `custom` column keyed by
custom field id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from clove.models.base import ID, Base, Timestamps


class LeadStatus(Timestamps, Base):
    __tablename__ = "lead_status"
    __table_args__ = (
        UniqueConstraint("organization_id", "label", name="uq_lead_status_org_label"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    label: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, default=0)


class Lead(Timestamps, Base):
    __tablename__ = "lead"
    __table_args__ = (
        Index("ix_lead_org_created", "organization_id", "date_created", "id"),
        Index("ix_lead_org_updated", "organization_id", "date_updated"),
        Index("ix_lead_org_status", "organization_id", "status_id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    name: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    # RESTRICT: a status in use cannot be deleted (the service says so first, in Close's words).
    status_id: Mapped[str] = mapped_column(ID, ForeignKey("lead_status.id", ondelete="RESTRICT"))
    custom: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str | None] = mapped_column(ID, nullable=True)
    updated_by: Mapped[str | None] = mapped_column(ID, nullable=True)


class LeadAddress(Base):
    __tablename__ = "lead_address"
    __table_args__ = (Index("ix_lead_address_lead", "lead_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(ID)
    lead_id: Mapped[str] = mapped_column(ID, ForeignKey("lead.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    label: Mapped[str | None] = mapped_column(String(100), nullable=True)
    address_1: Mapped[str | None] = mapped_column(String(500), nullable=True)
    address_2: Mapped[str | None] = mapped_column(String(500), nullable=True)
    city: Mapped[str | None] = mapped_column(String(200), nullable=True)
    state: Mapped[str | None] = mapped_column(String(200), nullable=True)
    zipcode: Mapped[str | None] = mapped_column(String(50), nullable=True)
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)


class Contact(Timestamps, Base):
    __tablename__ = "contact"
    __table_args__ = (
        Index("ix_contact_lead", "lead_id", "date_created", "id"),
        Index("ix_contact_org_created", "organization_id", "date_created", "id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    lead_id: Mapped[str] = mapped_column(ID, ForeignKey("lead.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    title: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    custom: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str | None] = mapped_column(ID, nullable=True)
    updated_by: Mapped[str | None] = mapped_column(ID, nullable=True)


class ContactChild:
    """Columns every email, phone and URL row of a contact has, in list order."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(ID)
    lead_id: Mapped[str] = mapped_column(ID, ForeignKey("lead.id", ondelete="CASCADE"))
    contact_id: Mapped[str] = mapped_column(ID, ForeignKey("contact.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)


class ContactEmail(ContactChild, Base):
    __tablename__ = "contact_email"
    __table_args__ = (
        Index("ix_contact_email_contact", "contact_id", "position"),
        Index("ix_contact_email_org_email", "organization_id", "email_lower"),
        Index("ix_contact_email_lead", "lead_id"),
    )

    type: Mapped[str] = mapped_column(String(50), default="office")
    email: Mapped[str] = mapped_column(String(254))
    # Emails match case-insensitively; a lower-cased copy indexes the same on both databases.
    email_lower: Mapped[str] = mapped_column(String(254))


class ContactPhone(ContactChild, Base):
    __tablename__ = "contact_phone"
    __table_args__ = (
        Index("ix_contact_phone_contact", "contact_id", "position"),
        Index("ix_contact_phone_org_phone", "organization_id", "phone"),
        Index("ix_contact_phone_lead", "lead_id"),
    )

    type: Mapped[str] = mapped_column(String(50), default="office")
    phone: Mapped[str] = mapped_column(String(40))  # E.164
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)


class ContactUrl(ContactChild, Base):
    __tablename__ = "contact_url"
    __table_args__ = (Index("ix_contact_url_contact", "contact_id", "position"),)

    type: Mapped[str] = mapped_column(String(50), default="url")
    url: Mapped[str] = mapped_column(String(2000))
