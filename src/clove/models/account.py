"""Where email and calls go out from: connected email accounts, Send As grants, phone numbers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from clove.models.base import ID, Base, Timestamps


class ConnectedAccount(Timestamps, Base):
    """A user's mailbox. Passwords are Fernet tokens (`clove.kit.secrets`), never clear text."""

    __tablename__ = "connected_account"
    __table_args__ = (Index("ix_connected_account_org_user", "organization_id", "user_id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(40), default="custom_email")
    email: Mapped[str] = mapped_column(String(254))
    identities: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # {host, port, username, security: none|starttls|ssl}; the password is kept apart, encrypted.
    smtp: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    smtp_password: Mapped[str] = mapped_column(Text, default="")
    imap: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    imap_password: Mapped[str | None] = mapped_column(Text, nullable=True)
    send_status: Mapped[str] = mapped_column(String(40), default="ok")
    latest_send_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class SendAs(Base):
    """`allowing_user_id` lets `allowed_user_id` send from the allowing user's accounts."""

    __tablename__ = "send_as"
    __table_args__ = (
        UniqueConstraint(
            "organization_id", "allowing_user_id", "allowed_user_id", name="uq_send_as_pair"
        ),
        Index("ix_send_as_allowed", "organization_id", "allowed_user_id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    allowing_user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    allowed_user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))


class PhoneNumber(Timestamps, Base):
    __tablename__ = "phone_number"
    __table_args__ = (Index("ix_phone_number_org_number", "organization_id", "number"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    user_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    number: Mapped[str] = mapped_column(String(40))  # E.164
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    type: Mapped[str] = mapped_column(String(20), default="external")
    is_group_number: Mapped[bool] = mapped_column(Boolean, default=False)
    participants: Mapped[list[str]] = mapped_column(JSON, default=list)
    phone_numbers: Mapped[list[str]] = mapped_column(JSON, default=list)
    forward_to: Mapped[str | None] = mapped_column(String(40), nullable=True)
    forward_to_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    voicemail_greeting_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    press_1_to_accept: Mapped[bool] = mapped_column(Boolean, default=False)
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
