"""Credentials: API keys and OAuth2 apps, codes and tokens. Secrets are stored as SHA-256."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from clove.models.base import ID, Base, Timestamps


class ApiKey(Timestamps, Base):
    __tablename__ = "api_key"
    __table_args__ = (Index("ix_api_key_org", "organization_id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), default="")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, so that a user can tell keys apart without the secret.
    key_prefix: Mapped[str] = mapped_column(String(12))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class OAuthApp(Timestamps, Base):
    __tablename__ = "oauth_app"

    id: Mapped[str] = mapped_column(ID, primary_key=True)  # the client_id
    name: Mapped[str] = mapped_column(String(200))
    client_secret_hash: Mapped[str] = mapped_column(String(64))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)


class OAuthCode(Base):
    """A one-time authorization code, exchanged for tokens at /oauth2/token/."""

    __tablename__ = "oauth_code"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ID, ForeignKey("oauth_app.id", ondelete="CASCADE"))
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class OAuthToken(Base):
    """An access token and, with `offline_access`, its refresh token."""

    __tablename__ = "oauth_token"
    __table_args__ = (Index("ix_oauth_token_refresh", "refresh_hash", unique=True),)

    access_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    refresh_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    client_id: Mapped[str] = mapped_column(ID, ForeignKey("oauth_app.id", ondelete="CASCADE"))
    organization_id: Mapped[str] = mapped_column(
        ID, ForeignKey("organization.id", ondelete="CASCADE")
    )
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    date_created: Mapped[datetime] = mapped_column(DateTime)
