"""`/bulk_action/sequence_subscription/`: subscribe the contacts of matching leads to a
sequence, or pause, resume or reassign their subscriptions (close-api.md §3.3).

`subscribe` writes each chunk's subscriptions and their `created` events with two
INSERT ... SELECT statements: the ids and event documents are made by the database, so a
million leads never pass through Python. The other action types touch existing
subscriptions, far fewer, through the ORM.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field
from sqlalchemy import (
    Select,
    String,
    Table,
    and_,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    null,
    select,
)
from sqlalchemy.orm import Session, aliased

from clove.bulk_action import recipients
from clove.bulk_action.kinds import BulkActionBody, Progress
from clove.errors import ValidationFailed
from clove.event.service import Actor, record_update
from clove.kit.dates import iso_naive
from clove.kit.sql import json_object, json_value, random_id
from clove.models import (
    BulkAction,
    Contact,
    Event,
    PhoneNumber,
    Sequence,
    SequenceStep,
    SequenceSubscription,
)
from clove.sequence.schemas import serialize_subscription
from clove.sequence.service import (
    SUBSCRIPTION,
    resolve_calls_assigned_to,
    resolve_sender,
)

Sub = SequenceSubscription
SUBS: Table = Sub.__table__  # type: ignore[assignment]
EVENTS: Table = Event.__table__  # type: ignore[assignment]
REQUIRED = "This field is required."
SUBSCRIBE_REQUIRED = (
    "sequence_id",
    "sender_account_id",
    "sender_name",
    "sender_email",
    "contact_preference",
)
# The subscriptions each other action type acts on, and what it makes of them.
ACTS_ON = {
    "pause": "active",
    "resume": "paused",
    "resume_finished": "finished",
    "reassign": "active",
}


class SequenceSubscriptionBody(BulkActionBody):
    action_type: Literal["subscribe", "resume", "resume_finished", "pause", "reassign"]
    sequence_id: str | None = Field(default=None, max_length=64)
    sender_account_id: str | None = Field(default=None, max_length=64)
    sender_name: str | None = Field(default=None, max_length=200)
    sender_email: str | None = Field(default=None, max_length=254)
    contact_preference: Literal["lead", "contact"] | None = None
    calls_assigned_to: list[str] | None = Field(default=None, max_length=100)
    from_phone_number_id: str | None = Field(default=None, max_length=64)


class BulkSequenceSubscription:
    name: ClassVar[str] = "sequence_subscription"
    prefix: ClassVar[str] = "bulkseqsub"
    body: ClassVar[type[BulkActionBody]] = SequenceSubscriptionBody

    # --- Request --------------------------------------------------------------------------------

    def validate(self, session: Session, actor: Actor, body: Any) -> dict[str, Any]:
        assert isinstance(body, SequenceSubscriptionBody)
        org = actor.organization_id
        errors: dict[str, str] = {}
        if body.action_type == "subscribe":
            errors = {name: REQUIRED for name in SUBSCRIBE_REQUIRED if getattr(body, name) is None}
        elif body.action_type == "reassign" and (
            body.sender_account_id is None and body.calls_assigned_to is None
        ):
            errors["sender_account_id"] = "Give a new sender, calls_assigned_to, or both."
        if body.sequence_id is not None and not session.scalar(
            select(Sequence.id).where(
                Sequence.id == body.sequence_id, Sequence.organization_id == org
            )
        ):
            errors["sequence_id"] = "Object does not exist."
        if body.from_phone_number_id is not None and not session.scalar(
            select(PhoneNumber.id).where(
                PhoneNumber.id == body.from_phone_number_id, PhoneNumber.organization_id == org
            )
        ):
            errors["from_phone_number_id"] = "Object does not exist."
        if errors:
            raise ValidationFailed(field_errors=errors)
        sender = {"sender_account_id": None, "sender_email": None, "sender_name": None}
        if body.sender_account_id is not None or body.action_type == "subscribe":
            sender = resolve_sender(
                session,
                actor,
                body.sender_account_id,
                body.sender_email,
                body.sender_name,
                required=True,
            )
        has_calls = body.sequence_id is not None and bool(
            session.scalar(
                select(SequenceStep.id).where(
                    SequenceStep.sequence_id == body.sequence_id, SequenceStep.step_type == "call"
                )
            )
        )
        calls = body.calls_assigned_to
        if body.action_type == "subscribe" or calls is not None:
            calls = resolve_calls_assigned_to(session, actor, calls, has_calls)
        return {
            "action_type": body.action_type,
            "sequence_id": body.sequence_id,
            "contact_preference": body.contact_preference,
            "calls_assigned_to": calls if body.calls_assigned_to is not None else None,
            "subscription_calls": calls,
            "from_phone_number_id": body.from_phone_number_id,
            **sender,
        }

    def result_type(self, params: dict[str, Any]) -> str:
        return "lead"

    def wire(self, action: BulkAction) -> dict[str, Any]:
        p = action.params
        return {
            "action_type": p["action_type"],
            "calls_assigned_to": p.get("calls_assigned_to"),
            "contact_preference": p.get("contact_preference"),
            "from_phone_number_id": p.get("from_phone_number_id"),
            "sender_account_id": p.get("sender_account_id"),
            "sender_email": p.get("sender_email"),
            "sender_name": p.get("sender_name"),
            "sequence_id": p.get("sequence_id"),
        }

    # --- Work -----------------------------------------------------------------------------------

    def count_objects(self, session: Session, action: BulkAction, items: Select[Any]) -> int:
        p = action.params
        if p["action_type"] == "subscribe":
            if p["contact_preference"] == "lead":
                return session.scalar(select(func.count()).select_from(items.subquery())) or 0
            return session.scalar(select(func.count()).where(Contact.lead_id.in_(items))) or 0
        return session.scalar(select(func.count()).where(*_existing(action, items))) or 0

    def process(
        self, session: Session, action: BulkAction, actor: Actor, items: Select[Any], now: datetime
    ) -> Progress:
        if action.params["action_type"] == "subscribe":
            return _subscribe(session, action, actor, items, now)
        return _change(session, action, actor, items, now)

    def preview(
        self, session: Session, action: BulkAction, items: Select[Any], limit: int
    ) -> tuple[Progress, list[dict[str, Any]]]:
        p = action.params
        if p["action_type"] != "subscribe":
            rows = session.scalars(select(Sub).where(*_existing(action, items)).limit(limit))
            progress = Progress(objects=self.count_objects(session, action, items))
            return progress, [serialize_subscription(row) for row in rows]
        found = _candidates(action, items).subquery()
        progress = recipients.tally(session, found, items, p["contact_preference"])
        sample = session.execute(
            select(found.c.contact_id, found.c.lead_id, found.c.email)
            .where(found.c.reason.is_(None))
            .limit(limit)
        ).mappings()
        return progress, [
            {"contact_id": r["contact_id"], "lead_id": r["lead_id"], "contact_email": r["email"]}
            for r in sample
        ]


# --- subscribe -----------------------------------------------------------------------------------


def _candidates(action: BulkAction, items: Select[Any]) -> Select[Any]:
    """Per contact of the chosen leads: its first email and why it would be skipped (null
    when it is to be subscribed). `lead` preference: the lead's first contact only."""
    p = action.params
    contacts = recipients.addresses(items, p["contact_preference"])
    ever_subscribed = recipients.found(
        SUBS.c.sequence_id == p["sequence_id"], SUBS.c.contact_id == contacts.c.contact_id
    )
    reason = case(
        (contacts.c.email.is_(None), "no_email"),
        (
            recipients.is_unsubscribed(action.organization_id, contacts.c.email_lower),
            "unsubscribed",
        ),
        (ever_subscribed, "already_subscribed"),
        else_=null(),
    )
    return select(
        contacts.c.contact_id, contacts.c.lead_id, contacts.c.email, reason.label("reason")
    )


def _subscribe(
    session: Session, action: BulkAction, actor: Actor, items: Select[Any], now: datetime
) -> Progress:
    """Subscribes the chunk's eligible contacts, as `POST /sequence_subscription/` would, with
    one `created` event each carrying `meta.bulk_action_id`."""
    p = action.params
    found = _candidates(action, items).subquery()
    progress = recipients.tally(session, found, items, p["contact_preference"])
    if progress.objects == sum(progress.skipped.values()):
        return progress
    stamp = literal(now, SUBS.c.date_created.type)
    values = {
        "id": random_id("sub"),
        "organization_id": literal(action.organization_id),
        "sequence_id": literal(p["sequence_id"]),
        "contact_id": found.c.contact_id,
        "lead_id": found.c.lead_id,
        "contact_email": found.c.email,
        "sender_account_id": literal(p["sender_account_id"]),
        "sender_name": cast(literal(p["sender_name"]), String),
        "sender_email": literal(p["sender_email"]),
        "calls_assigned_to": json_value(p.get("subscription_calls") or []),
        "status": literal("active"),
        "created_by_id": literal(actor.user_id),
        "updated_by_id": literal(actor.user_id),
        "bulk_action_id": literal(action.id),
        "next_step_position": literal(0),
        "next_step_at": stamp,
        "attempts": literal(0),
        "thread_message_ids": json_value([]),
        "date_created": stamp,
        "date_updated": stamp,
    }
    session.execute(
        insert(SUBS).from_select(
            list(values), select(*values.values()).where(found.c.reason.is_(None))
        )
    )
    _created_events(session, action, actor, items, now)
    return progress


def _created_events(
    session: Session, action: BulkAction, actor: Actor, items: Select[Any], now: datetime
) -> None:
    """The `created` event of each subscription this chunk wrote, its data built by the
    database in the shape of `serialize_subscription`."""
    when = iso_naive(now)
    data = json_object(
        id=SUBS.c.id,
        sequence_id=SUBS.c.sequence_id,
        contact_id=SUBS.c.contact_id,
        contact_email=SUBS.c.contact_email,
        lead_id=SUBS.c.lead_id,
        sender_account_id=SUBS.c.sender_account_id,
        sender_name=SUBS.c.sender_name,
        sender_email=SUBS.c.sender_email,
        calls_assigned_to=json_value(action.params.get("subscription_calls") or []),
        start_date=None,
        status="active",
        status_reason=None,
        organization_id=action.organization_id,
        created_by_id=actor.user_id,
        updated_by_id=actor.user_id,
        date_created=when,
        date_updated=when,
    )
    stamp = literal(now, EVENTS.c.date_created.type)
    values = {
        "id": random_id("ev"),
        "organization_id": literal(action.organization_id),
        "object_type": literal(SUBSCRIPTION),
        "object_id": SUBS.c.id,
        "lead_id": SUBS.c.lead_id,
        "action": literal("created"),
        "user_id": literal(actor.user_id),
        "data": data,
        "previous_data": json_value({}),
        "changed_fields": json_value([]),
        "meta": json_value(_meta(action, actor)),
        "date_created": stamp,
        "date_updated": stamp,
    }
    session.execute(
        insert(EVENTS).from_select(
            list(values),
            select(*values.values()).where(
                SUBS.c.bulk_action_id == action.id, SUBS.c.lead_id.in_(items)
            ),
        )
    )


def _meta(action: BulkAction, actor: Actor) -> dict[str, Any]:
    return {
        "request_method": actor.request_method,
        "request_path": actor.request_path,
        "bulk_action_id": action.id,
    }


# --- pause, resume, resume_finished, reassign ----------------------------------------------------


def _existing(action: BulkAction, items: Select[Any]) -> list[Any]:
    """The subscriptions of the chunk's leads this action type changes."""
    p = action.params
    conditions = [
        Sub.organization_id == action.organization_id,
        Sub.lead_id.in_(items),
        Sub.status == ACTS_ON[p["action_type"]],
    ]
    if p.get("sequence_id"):
        conditions.append(Sub.sequence_id == p["sequence_id"])
    if p["action_type"] == "resume_finished":
        # A contact already running the sequence again cannot have a second live copy.
        live = aliased(Sub)
        conditions.append(
            ~exists().where(
                and_(
                    live.sequence_id == Sub.sequence_id,
                    live.contact_id == Sub.contact_id,
                    live.status.in_(("active", "paused")),
                )
            )
        )
    return conditions


def _change(
    session: Session, action: BulkAction, actor: Actor, items: Select[Any], now: datetime
) -> Progress:
    """Pauses, resumes or reassigns the chunk's matching subscriptions, each with an
    `updated` event carrying `meta.bulk_action_id`."""
    p = action.params
    kind = p["action_type"]
    rows = session.scalars(select(Sub).where(*_existing(action, items)).with_for_update()).all()
    for sub in rows:
        before = serialize_subscription(sub)
        if kind == "pause":
            sub.status, sub.status_reason, sub.next_step_at = "paused", "bulk-action", None
        elif kind in ("resume", "resume_finished"):
            sub.status, sub.status_reason, sub.next_step_at = "active", None, now
        else:
            if p.get("sender_account_id"):
                sub.sender_account_id = p["sender_account_id"]
                sub.sender_email = p["sender_email"]
                sub.sender_name = p["sender_name"]
            if p.get("calls_assigned_to") is not None:
                sub.calls_assigned_to = list(p["calls_assigned_to"])
        sub.updated_by_id, sub.date_updated = actor.user_id, now
        record_update(
            session,
            actor,
            object_type=SUBSCRIPTION,
            before=before,
            after=serialize_subscription(sub),
            lead_id=sub.lead_id,
            meta={"bulk_action_id": action.id},
        )
    session.flush()
    return Progress(objects=len(rows))
