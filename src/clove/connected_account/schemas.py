"""Request bodies and the wire shape of connected email accounts (close-api.md §5.6)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from clove.contact.schemas import EMAIL
from clove.kit.dates import iso_utc
from clove.kit.schemas import Body
from clove.models import ConnectedAccount

Security = Literal["none", "starttls", "ssl"]


def _email(value: str) -> str:
    value = value.strip()
    if not EMAIL.fullmatch(value):
        raise ValueError("Enter a valid email address.")
    return value


class Identity(Body):
    email: str = Field(max_length=254)
    name: str = Field(default="", max_length=200)

    _check_email = field_validator("email")(_email)


class MailServer(Body):
    """SMTP or IMAP login details; the password is stored encrypted and never returned."""

    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    username: str = Field(default="", max_length=254)
    password: str = Field(default="", max_length=1000)
    security: Security = "starttls"


class ConnectedAccountCreate(Body):
    """Clove's extension: a custom (SMTP) email account of the caller."""

    email: str = Field(max_length=254)
    identities: list[Identity] | None = Field(default=None, min_length=1, max_length=50)
    smtp: MailServer
    imap: MailServer | None = None
    verify: bool = True

    _check_email = field_validator("email")(_email)


def server_body(server: dict[str, Any] | None) -> dict[str, Any] | None:
    """Close's `smtp`/`imap` object: where and as whom, never the password."""
    if server is None:
        return None
    return {
        "host": server.get("host"),
        "port": server.get("port"),
        "use_ssl": server.get("security") == "ssl",
        "username": server.get("username"),
    }


def serialize_connected_account(account: ConnectedAccount) -> dict[str, Any]:
    identities = [dict(i) for i in account.identities or []]
    return {
        "id": account.id,
        "_type": account.type,
        "user_id": account.user_id,
        "organization_id": account.organization_id,
        "email": account.email,
        "identities": identities,
        "default_identity": identities[0] if identities else None,
        "smtp": server_body(account.smtp),
        "imap": server_body(account.imap),
        "send_status": account.send_status,
        # Clove sends mail but does not sync mailboxes or calendars.
        "receive_status": None,
        "email_receive_status": None,
        "calendar_receive_status": None,
        "latest_send_error": account.latest_send_error,
        "latest_receive_error": None,
        "synced_calendars": [],
        "available_calendars": [],
        "sync_all_calendars": False,
        "enabled_features": [],
        "available_features": [],
        "has_meeting_creation_scopes": False,
        "is_imap_archive_sync_enabled": False,
        "lead_suggestions_updated_at": None,
        "calendly": None,
        "zoom_account_plan": None,
        "date_created": iso_utc(account.date_created),
    }
