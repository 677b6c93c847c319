"""Request bodies and the wire shape of email activities (close-api.md §5.10)."""

from __future__ import annotations

import re
from email.utils import getaddresses, parseaddr
from functools import lru_cache
from typing import Any, ClassVar, Literal

from pydantic import Field

from clove.kit.dates import iso_utc
from clove.kit.schemas import Body, PatchBody, TolerantBody
from clove.models import EmailActivity

STATUSES = ("inbox", "draft", "scheduled", "outbox", "sent", "error")
Status = Literal["inbox", "draft", "scheduled", "outbox", "sent", "error"]
Direction = Literal["incoming", "outgoing"]
# Statuses whose email has a sender by definition (Close refuses them without one).
NEEDS_SENDER = frozenset({"inbox", "scheduled", "outbox", "error"})
PREVIEW_LENGTH = 200
MAX_RECIPIENTS = 1000

READ_ONLY = frozenset(
    {
        "_type",
        "id",
        "organization_id",
        "created_by",
        "created_by_name",
        "updated_by",
        "updated_by_name",
        "user_name",
        "users",
        "date_updated",
        "body_preview",
        "envelope",
        "message_ids",
        "thread_id",
        "has_reply",
        "need_smtp_credentials",
        "opens_summary",
        "send_attempts",
        "send_as_id",
        "bulk_email_action_id",
        "sequence_id",
        "sequence_name",
        "sequence_subscription_id",
        "template_name",
        "agent_action_reason",
        "agent_config_id",
        "email_account_id",
        "references",
        "date_scheduled",
    }
)


def serialize_email_activity(
    activity: EmailActivity, *, user_name: str | None = None
) -> dict[str, Any]:
    """Close's EmailActivity: every field of the spec's schema, null or empty where Clove keeps
    nothing (opens, send attempts, follow-up sequences). `user_name` names `user_id`."""
    sent = iso_utc(activity.date_sent)
    created = iso_utc(activity.date_created)
    user_id = activity.user_id
    return {
        "_type": "Email",
        "id": activity.id,
        "organization_id": activity.organization_id,
        "lead_id": activity.lead_id,
        "contact_id": activity.contact_id,
        "user_id": user_id,
        "user_name": user_name,
        "users": [user_id] if user_id else [],
        "direction": activity.direction,
        "status": activity.status,
        "subject": activity.subject,
        "body_text": activity.body_text,
        "body_html": activity.body_html,
        "body_preview": _preview(activity.body_text),
        "sender": activity.sender,
        "to": list(activity.to or []),
        "cc": list(activity.cc or []),
        "bcc": list(activity.bcc or []),
        "envelope": _envelope(activity, sent or created),
        "attachments": list(activity.attachments or []),
        "message_ids": [activity.message_id] if activity.message_id else [],
        "references": list(activity.references or []),
        "in_reply_to_id": None,
        "thread_id": activity.thread_id,
        "email_account_id": activity.email_account_id,
        "send_as_id": None,
        "template_id": activity.template_id,
        "template_name": None,
        "sequence_id": activity.sequence_id,
        "sequence_name": activity.sequence_name,
        "sequence_subscription_id": activity.sequence_subscription_id,
        "bulk_email_action_id": activity.bulk_email_action_id,
        "followup_sequence_id": None,
        "followup_sequence_delay": None,
        "followup_sequence_add_cc_bcc": False,
        "agent_action_reason": None,
        "agent_config_id": None,
        "has_reply": False,
        "need_smtp_credentials": False,
        "opens": [],
        "opens_summary": None,
        "send_attempts": [],
        "date_scheduled": None,
        "date_sent": sent,
        "activity_at": sent or created,
        "created_by": activity.created_by,
        "created_by_name": user_name if activity.created_by == user_id else None,
        "updated_by": activity.updated_by,
        "updated_by_name": user_name if activity.updated_by == user_id else None,
        "date_created": created,
        "date_updated": iso_utc(activity.date_updated),
    }


def _preview(text: str | None) -> str:
    flat = " ".join((text or "").split())
    return flat[:PREVIEW_LENGTH]


def _envelope(activity: EmailActivity, date: str | None) -> dict[str, Any]:
    """The message's headers, parsed the way Close shows them."""

    def people(values: list[str]) -> list[dict[str, str]]:
        return [{"name": name, "email": addr} for value in values for name, addr in _people(value)]

    return {
        "from": people([activity.sender] if activity.sender else []),
        "sender": people([activity.sender] if activity.sender else []),
        "to": people(list(activity.to or [])),
        "cc": people(list(activity.cc or [])),
        "bcc": people(list(activity.bcc or [])),
        "reply_to": [],
        "subject": activity.subject,
        "date": date,
        "message_id": activity.message_id,
        "in_reply_to": activity.in_reply_to,
        "is_autoreply": False,
    }


_BARE_ADDRESS = re.compile(r"[^\s<>\"(),;:@]+@[^\s<>\"(),;:@]+")


@lru_cache(maxsize=4096)
def _people(value: str) -> tuple[tuple[str, str], ...]:
    """(name, address) pairs of one header value; a bare address skips the full parser, which
    costs about 100 µs (a sequence engine serializes thousands of emails a second)."""
    if _BARE_ADDRESS.fullmatch(value):
        return (("", value),)
    return tuple((name, addr) for name, addr in getaddresses([value]) if addr)


def email_address(raw: str) -> str | None:
    """The bare, lower-cased address of `"Name" <addr>` or `addr`; None if there is none."""
    _name, addr = parseaddr(raw)
    addr = addr.strip()
    if "@" not in addr or addr.startswith("@") or addr.endswith("@"):
        return None
    return addr.lower()


class Attachment(Body):
    """An attachment as Close's create body has it: a file uploaded elsewhere, never fetched."""

    url: str = Field(min_length=1, max_length=2000)
    filename: str = Field(min_length=1, max_length=1000)
    size: int = Field(ge=0)
    content_type: str | None = Field(default=None, max_length=255)
    content_id: str | None = Field(default=None, max_length=255)
    inline_only: bool = False


Recipients = list[str]


class EmailActivityCreate(TolerantBody):
    """CreateEmailActivity, plus what logging an email needs that the spec leaves out
    (`direction`, `message_id`, `date_sent`, `in_reply_to`)."""

    read_only: ClassVar[frozenset[str]] = READ_ONLY

    lead_id: str | None = Field(default=None, max_length=64)
    contact_id: str | None = Field(default=None, max_length=64)
    user_id: str | None = Field(default=None, max_length=64)
    status: Status | None = None
    direction: Direction | None = None
    subject: str | None = Field(default=None, max_length=10_000)
    body_text: str | None = None
    body_html: str | None = None
    sender: str | None = Field(default=None, max_length=600)
    to: Recipients | None = Field(default=None, max_length=MAX_RECIPIENTS)
    cc: Recipients | None = Field(default=None, max_length=MAX_RECIPIENTS)
    bcc: Recipients | None = Field(default=None, max_length=MAX_RECIPIENTS)
    attachments: list[Attachment] | None = Field(default=None, max_length=100)
    template_id: str | None = Field(default=None, max_length=64)
    in_reply_to_id: str | None = Field(default=None, max_length=64)
    message_id: str | None = Field(default=None, max_length=300)
    in_reply_to: str | None = Field(default=None, max_length=300)
    date_sent: str | None = Field(default=None, max_length=40)
    date_created: str | None = Field(default=None, max_length=40)
    activity_at: str | None = Field(default=None, max_length=40)
    # Accepted for compatibility; Clove sends no follow-ups and tracks no opens.
    account_id: str | None = Field(default=None, max_length=64)
    created_by_id: str | None = Field(default=None, max_length=64)
    followup_date: str | None = Field(default=None, max_length=40)
    followup_sequence_id: str | None = Field(default=None, max_length=64)
    followup_sequence_delay: int | None = None
    followup_sequence_add_cc_bcc: bool | None = None
    opens: list[dict[str, Any]] | None = None


class EmailActivityUpdate(TolerantBody, PatchBody):
    """UpdateEmailActivity: a draft's content, or its status."""

    read_only: ClassVar[frozenset[str]] = READ_ONLY | {"lead_id", "direction", "date_created"}
    nullable: ClassVar[frozenset[str]] = frozenset(
        {"sender", "contact_id", "template_id", "body_text", "body_html", "subject"}
    )

    status: Status | None = None
    subject: str | None = Field(default=None, max_length=10_000)
    body_text: str | None = None
    body_html: str | None = None
    sender: str | None = Field(default=None, max_length=600)
    to: Recipients | None = Field(default=None, max_length=MAX_RECIPIENTS)
    cc: Recipients | None = Field(default=None, max_length=MAX_RECIPIENTS)
    bcc: Recipients | None = Field(default=None, max_length=MAX_RECIPIENTS)
    attachments: list[Attachment] | None = Field(default=None, max_length=100)
    contact_id: str | None = Field(default=None, max_length=64)
    template_id: str | None = Field(default=None, max_length=64)
