"""Email activities: the record of emails on a lead (close-api.md §5.10).

Clove logs emails here; it does not send an email because it was POSTed (the sequence engine
sends its own and records them with `serialize_email_activity`). Logging an incoming email
ends the lead's live sequence subscriptions of its sender (Close's "reply received" stop).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from clove.activity.schemas import (
    NEEDS_SENDER,
    EmailActivityCreate,
    EmailActivityUpdate,
    email_address,
    serialize_email_activity,
)
from clove.errors import BadRequest, ValidationFailed, field_error, object_not_found
from clove.event.service import (
    Actor,
    parse_date_filter,
    record_creation,
    record_deletion,
    record_update,
)
from clove.kit.dates import utcnow
from clove.kit.ids import new_id
from clove.lead.service import user_names
from clove.models import Contact, ContactEmail, EmailActivity, Lead, Membership, User
from clove.models.sequence import SequenceSubscription

__all__ = ["serialize_email_activities", "serialize_email_activity"]

OBJECT_TYPE = "activity.email"
DOES_NOT_EXIST = "Object does not exist."
# The statuses a draft may move to by PUT (Clove sends none of them itself).
DRAFT_TARGETS = frozenset({"draft", "scheduled", "outbox", "sent"})
LIVE = ("active", "paused")

# --- Reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailFilters:
    ids: list[str] | None = None
    lead_ids: list[str] | None = None
    contact_ids: list[str] | None = None
    user_ids: list[str] | None = None
    # (column name, operator, value): date_created / activity_at bounds.
    dates: tuple[tuple[str, str, datetime], ...] = ()


def _activity_at() -> Any:
    return func.coalesce(EmailActivity.date_sent, EmailActivity.date_created)


_OPERATORS = {
    "gt": lambda c, v: c > v,
    "gte": lambda c, v: c >= v,
    "lt": lambda c, v: c < v,
    "lte": lambda c, v: c <= v,
}


def list_email_activities(
    session: Session, organization_id: str, filters: EmailFilters, *, skip: int, limit: int
) -> list[EmailActivity]:
    """Up to `limit + 1` email activities, newest first."""
    query = select(EmailActivity).where(EmailActivity.organization_id == organization_id)
    for column, values in (
        (EmailActivity.id, filters.ids),
        (EmailActivity.lead_id, filters.lead_ids),
        (EmailActivity.contact_id, filters.contact_ids),
        (EmailActivity.user_id, filters.user_ids),
    ):
        if values is not None:
            query = query.where(column.in_(values))
    for name, op, value in filters.dates:
        bounded = EmailActivity.date_created if name == "date_created" else _activity_at()
        query = query.where(_OPERATORS[op](bounded, value))
    query = query.order_by(EmailActivity.date_created.desc(), EmailActivity.id.desc())
    return list(session.scalars(query.offset(skip).limit(limit + 1)))


def get_email_activity(session: Session, organization_id: str, activity_id: str) -> EmailActivity:
    activity = session.scalars(
        select(EmailActivity).where(
            EmailActivity.id == activity_id, EmailActivity.organization_id == organization_id
        )
    ).first()
    if activity is None:
        raise object_not_found("EmailActivity")
    return activity


def serialize_email_activities(
    session: Session, activities: Sequence[EmailActivity]
) -> list[dict[str, Any]]:
    """The activities as Close returns them, with their users' names in one query."""
    names = user_names(session, [a.user_id for a in activities])
    return [serialize_email_activity(a, user_name=names.get(a.user_id or "")) for a in activities]


def email_activity_object(session: Session, activity: EmailActivity) -> dict[str, Any]:
    return serialize_email_activities(session, [activity])[0]


# --- Writing -------------------------------------------------------------------------------------


def create_email_activity(
    session: Session, actor: Actor, body: EmailActivityCreate
) -> EmailActivity:
    """Logs an email (nothing is sent) with its event; an incoming one also ends the sender's
    live sequence subscriptions on the lead, in the same transaction."""
    status, direction = _status_and_direction(body)
    lead, contact = _lead_and_contact(session, actor.organization_id, body.lead_id, body.contact_id)
    user_id = _member(session, actor.organization_id, "user_id", body.user_id) or actor.user_id
    sender = _sender(session, status, body.sender, user_id)
    recipients = {name: _recipients(name, getattr(body, name)) for name in ("to", "cc", "bcc")}
    parent = _parent(session, actor.organization_id, lead.id, body.in_reply_to_id)
    now = utcnow()
    created = _date("date_created", body.date_created) or now
    date_sent = _date("date_sent", body.date_sent) or _date("activity_at", body.activity_at)
    if date_sent is None and status in ("sent", "inbox"):
        date_sent = created
    if contact is None and direction == "incoming" and sender:
        contact = _contact_by_email(session, lead.id, sender)
    activity = EmailActivity(
        id=new_id("acti"),
        organization_id=actor.organization_id,
        lead_id=lead.id,
        contact_id=contact.id if contact else None,
        user_id=user_id,
        direction=direction,
        status=status,
        subject=body.subject or "",
        body_text=body.body_text or "",
        body_html=body.body_html or "",
        sender=sender,
        to=recipients["to"],
        cc=recipients["cc"],
        bcc=recipients["bcc"],
        attachments=[a.model_dump() for a in body.attachments or []],
        message_id=body.message_id or None,
        in_reply_to=(parent.message_id if parent else None) or body.in_reply_to or None,
        references=_references(parent),
        thread_id=(parent.thread_id or parent.id) if parent else None,
        template_id=body.template_id,
        date_sent=date_sent,
        created_by=actor.user_id,
        updated_by=actor.user_id,
        date_created=created,
        date_updated=now,
    )
    session.add(activity)
    session.flush()
    record_creation(
        session,
        actor,
        object_type=OBJECT_TYPE,
        data=email_activity_object(session, activity),
        lead_id=lead.id,
    )
    if direction == "incoming":
        stop_sequences_on_reply(session, actor, activity)
    return activity


def update_email_activity(
    session: Session, actor: Actor, activity: EmailActivity, body: EmailActivityUpdate
) -> None:
    """A draft's content or status; a scheduled or outbox email may only go back to draft."""
    values = body.changes()
    status = values.get("status", activity.status)
    if activity.status != "draft":
        if activity.status in ("scheduled", "outbox") and set(values) == {"status"}:
            if status != "draft" and status != activity.status:
                raise field_error("status", "A scheduled email can only go back to draft.")
        elif values:
            raise BadRequest("Only drafts can be modified.")
    elif status not in DRAFT_TARGETS:
        raise field_error("status", "A draft can become sent.")
    if status != activity.status:
        _refuse_unsent(status)
    if "contact_id" in values and values["contact_id"] is not None:
        _lead_and_contact(session, actor.organization_id, activity.lead_id, values["contact_id"])
    for name in ("to", "cc", "bcc"):
        if name in values:
            values[name] = _recipients(name, values[name])
    if "attachments" in values:
        values["attachments"] = [a.model_dump() for a in body.attachments or []]
    for name in ("subject", "body_text", "body_html"):
        if name in values and values[name] is None:
            values[name] = ""
    sender = values.get("sender", activity.sender)
    values["sender"] = _sender(session, status, sender, activity.user_id)
    if status == "sent" and activity.date_sent is None:
        values["date_sent"] = utcnow()

    before = email_activity_object(session, activity)
    for key, value in values.items():
        setattr(activity, key, value)
    if email_activity_object(session, activity) == before:
        return
    activity.updated_by = actor.user_id
    activity.date_updated = utcnow()
    session.flush()
    record_update(
        session,
        actor,
        object_type=OBJECT_TYPE,
        before=before,
        after=email_activity_object(session, activity),
        lead_id=activity.lead_id,
    )


def delete_email_activity(session: Session, actor: Actor, activity: EmailActivity) -> None:
    data = email_activity_object(session, activity)
    session.delete(activity)
    session.flush()
    record_deletion(
        session, actor, object_type=OBJECT_TYPE, previous=data, lead_id=activity.lead_id
    )


# --- The reply stop ------------------------------------------------------------------------------


def stop_sequences_on_reply(session: Session, actor: Actor, activity: EmailActivity) -> int:
    """Ends (finished, reply-received) every live subscription of the activity's lead whose
    contact wrote it: the same contact, or the subscribed address is the sender's. Returns
    how many ended."""
    sender = email_address(activity.sender or "")
    matches = []
    if sender:
        matches.append(func.lower(SequenceSubscription.contact_email) == sender)
    if activity.contact_id:
        matches.append(SequenceSubscription.contact_id == activity.contact_id)
    if not matches:
        return 0
    ids = list(
        session.scalars(
            select(SequenceSubscription.id).where(
                SequenceSubscription.organization_id == activity.organization_id,
                SequenceSubscription.lead_id == activity.lead_id,
                SequenceSubscription.status.in_(LIVE),
                or_(*matches),
            )
        )
    )
    if not ids:
        return 0
    # Imported here: the sequence service imports this module's serializer for its own emails.
    from clove.sequence.service import end_subscriptions

    return end_subscriptions(
        session,
        activity.organization_id,
        ids,
        status="finished",
        reason="reply-received",
        actor=actor,
    )


# --- Checks --------------------------------------------------------------------------------------


def _status_and_direction(body: EmailActivityCreate) -> tuple[str, str]:
    """Close derives the direction from the status: only `inbox` is incoming."""
    status, direction = body.status, body.direction
    if status is None:
        if direction is None:
            raise field_error("status", "This field is required.")
        status = "inbox" if direction == "incoming" else "sent"
    _refuse_unsent(status)
    implied = "incoming" if status == "inbox" else "outgoing"
    if direction is not None and direction != implied:
        raise field_error("direction", f"An email with status {status} is {implied}.")
    return status, implied


# Close sends emails posted as outbox or scheduled; Clove does not send them (yet), and an email
# that stays in the outbox forever would be a silent lie, so they are refused.
NOT_SENT_HERE = (
    "Clove does not send emails posted to /activity/email/: log a sent email "
    '(status "sent"), or send it through a sequence.'
)


def _refuse_unsent(status: str) -> None:
    if status in ("scheduled", "outbox"):
        raise field_error("status", NOT_SENT_HERE)


def _lead_and_contact(
    session: Session, organization_id: str, lead_id: str | None, contact_id: str | None
) -> tuple[Lead, Contact | None]:
    """The lead (given, or the contact's) and the contact, both of this organization."""
    contact = None
    if contact_id:
        contact = session.scalars(
            select(Contact).where(
                Contact.id == contact_id, Contact.organization_id == organization_id
            )
        ).first()
        if contact is None:
            raise field_error("contact_id", DOES_NOT_EXIST)
        if lead_id and contact.lead_id != lead_id:
            raise field_error("contact_id", "The contact does not belong to this lead.")
        lead_id = lead_id or contact.lead_id
    if not lead_id:
        raise field_error("lead_id", "This field is required.")
    lead = session.scalars(
        select(Lead).where(Lead.id == lead_id, Lead.organization_id == organization_id)
    ).first()
    if lead is None:
        raise field_error("lead_id", DOES_NOT_EXIST)
    return lead, contact


def _member(session: Session, organization_id: str, field: str, user_id: str | None) -> str | None:
    """`user_id` if it is a member of the organization (400 naming `field` otherwise)."""
    if user_id is None:
        return None
    found = session.scalar(
        select(Membership.user_id).where(
            Membership.organization_id == organization_id, Membership.user_id == user_id
        )
    )
    if found is None:
        raise field_error(field, DOES_NOT_EXIST)
    return found


def _sender(session: Session, status: str, sender: str | None, user_id: str | None) -> str | None:
    if sender is not None and sender.strip():
        if email_address(sender) is None:
            raise field_error("sender", "Enter a valid email address.")
        return sender.strip()
    if status in NEEDS_SENDER:
        raise field_error("sender", f"This field is required for emails with status {status}.")
    if status == "sent" and user_id:
        # Close's default: the address of the email's user.
        return session.scalar(select(User.email).where(User.id == user_id))
    return None


def _recipients(field: str, values: Iterable[str] | None) -> list[str]:
    cleaned = []
    for value in values or []:
        if email_address(value) is None:
            raise field_error(field, f"Enter valid email addresses ({value!r} is not one).")
        cleaned.append(value.strip())
    return cleaned


def _parent(
    session: Session, organization_id: str, lead_id: str, activity_id: str | None
) -> EmailActivity | None:
    if not activity_id:
        return None
    parent = session.scalars(
        select(EmailActivity).where(
            EmailActivity.id == activity_id,
            EmailActivity.organization_id == organization_id,
            EmailActivity.lead_id == lead_id,
        )
    ).first()
    if parent is None:
        raise field_error("in_reply_to_id", DOES_NOT_EXIST)
    return parent


def _references(parent: EmailActivity | None) -> list[str]:
    """A reply's References header: its parent's, then the parent's own Message-ID."""
    if parent is None or not parent.message_id:
        return []
    return [*(parent.references or []), parent.message_id]


def _contact_by_email(session: Session, lead_id: str, sender: str) -> Contact | None:
    """The lead's contact that has the sender's address, if any."""
    address = email_address(sender)
    return session.scalars(
        select(Contact)
        .join(ContactEmail, ContactEmail.contact_id == Contact.id)
        .where(ContactEmail.lead_id == lead_id, ContactEmail.email_lower == address)
        .order_by(Contact.date_created, Contact.id)
        .limit(1)
    ).first()


def _date(field: str, raw: str | None) -> datetime | None:
    if raw is None or not raw.strip():
        return None
    try:
        return parse_date_filter(field, raw)
    except BadRequest:
        raise ValidationFailed(
            field_errors={field: "Enter an ISO 8601 date and time, e.g. 2026-01-31T12:00:00Z."}
        ) from None
