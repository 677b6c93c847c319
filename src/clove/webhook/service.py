"""Webhook subscriptions: create, list, read, change and delete them; their delivery history
and replays (Clove extensions). Delivery itself is clove.webhook.fanout and .delivery."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clove.errors import ValidationFailed, field_error, object_not_found
from clove.event.service import Actor
from clove.kit.dates import utcnow
from clove.kit.ids import new_id
from clove.kit.secrets import encrypt, ensure_key_file
from clove.models import Event, Webhook, WebhookDelivery
from clove.webhook import outbound
from clove.webhook.fanout import drop_pending
from clove.webhook.filters import FilterError, check_filter
from clove.webhook.schemas import WebhookCreate, WebhookEvent, WebhookUpdate

# Close's limit per organization (close-api.md §6.2).
MAX_PER_ORGANIZATION = 40

_CRUD = ("created", "updated", "deleted")
# The event types Close documents (close-api.md §6.1), by object type.
ACTIONS: dict[str, tuple[str, ...]] = {
    "lead": (*_CRUD, "merged"),
    "contact": _CRUD,
    "opportunity": _CRUD,
    "activity.email": (*_CRUD, "sent"),
    "activity.email_thread": _CRUD,
    "activity.call": (*_CRUD, "answered", "completed"),
    "activity.sms": (*_CRUD, "sent"),
    "activity.whatsapp_message": _CRUD,
    "activity.note": _CRUD,
    "activity.form_submission": _CRUD,
    "activity.custom_activity": _CRUD,
    "activity.meeting": (*_CRUD, "scheduled", "started", "completed", "canceled"),
    "activity.lead_status_change": _CRUD,
    "activity.opportunity_status_change": _CRUD,
    "activity.task_completed": ("created", "deleted"),
    "unsubscribed_email": ("created", "deleted"),
    "import": ("created", "updated", "completed", "reverting", "reverted"),
    "export.lead": ("created", "updated", "completed"),
    "export.opportunity": ("created", "updated", "completed"),
    **{
        f"bulk_action.{kind}": ("created", "updated", "completed", "paused")
        for kind in ("delete", "edit", "email", "sequence_subscription")
    },
    **{
        f"custom_fields.{kind}": _CRUD
        for kind in ("lead", "contact", "opportunity", "activity", "custom_object", "shared")
    },
    "custom_activity_type": _CRUD,
    "custom_object_type": _CRUD,
    "custom_object": _CRUD,
    "status.lead": _CRUD,
    "status.opportunity": _CRUD,
    "membership": ("activated", "deactivated"),
    **{
        name: _CRUD
        for name in (
            "group",
            "saved_search",
            "phone_number",
            "email_template",
            "sms_template",
            "sequence",
            "sequence_subscription",
            "comment",
            "comment_thread",
            "lead_merge",
        )
    },
}
TASK_ACTIONS = (*_CRUD, "completed")  # `task.<type>`, e.g. `task.lead`


def create_webhook(
    session: Session, actor: Actor, body: WebhookCreate, *, allow_private: bool
) -> Webhook:
    """Flushes a new active subscription with a fresh 32-byte signature key; a 400 for a bad
    URL or event type, or past the organization's limit."""
    count = session.scalar(
        select(func.count())
        .select_from(Webhook)
        .where(Webhook.organization_id == actor.organization_id)
    )
    if (count or 0) >= MAX_PER_ORGANIZATION:
        raise ValidationFailed(
            [f"An organization may have at most {MAX_PER_ORGANIZATION} webhook subscriptions."]
        )
    ensure_key_file()  # a fresh install has no key yet; every later process reads this one
    now = utcnow()
    webhook = Webhook(
        id=new_id("whsub"),
        organization_id=actor.organization_id,
        url=_check_url(body.url, allow_private),
        events=_check_events(body.events),
        status="active",
        verify_ssl=body.verify_ssl,
        signature_key=encrypt(secrets.token_hex(32)),
        created_by=actor.user_id,
        updated_by=actor.user_id,
        date_created=now,
        date_updated=now,
    )
    session.add(webhook)
    session.flush()
    return webhook


def list_webhooks(session: Session, actor: Actor, skip: int, limit: int) -> list[Webhook]:
    """Up to `limit + 1` of the organization's subscriptions (a member who is not an admin:
    their own), oldest first."""
    query = select(Webhook).where(*_visible(actor)).order_by(Webhook.date_created, Webhook.id)
    return list(session.scalars(query.offset(skip).limit(limit + 1)))


def get_webhook(session: Session, actor: Actor, webhook_id: str) -> Webhook:
    webhook = session.scalars(select(Webhook).where(Webhook.id == webhook_id, *_visible(actor)))
    found = webhook.first()
    if found is None:
        raise object_not_found("WebhookSubscription")
    return found


def update_webhook(
    session: Session, actor: Actor, webhook: Webhook, body: WebhookUpdate, *, allow_private: bool
) -> None:
    """Changes what the body gives. Pausing records `pause_reason` `api` and drops pending
    deliveries; activating clears the failure record, so a fresh 3 days start."""
    if body.url is not None:
        webhook.url = _check_url(body.url, allow_private)
    if body.events is not None:
        webhook.events = _check_events(body.events)
    if body.verify_ssl is not None:
        webhook.verify_ssl = body.verify_ssl
    if body.status is not None and body.status != webhook.status:
        webhook.status = body.status
        webhook.pause_reason = "api" if body.status == "paused" else None
        webhook.failing_since = None
        if body.status == "paused":
            drop_pending(session, webhook.id, utcnow())
    webhook.updated_by, webhook.date_updated = actor.user_id, utcnow()
    session.flush()


def delete_webhook(session: Session, webhook: Webhook) -> None:
    session.delete(webhook)
    session.flush()


def _visible(actor: Actor) -> list[Any]:
    conditions = [Webhook.organization_id == actor.organization_id]
    if not actor.ctx.is_admin:
        conditions.append(Webhook.created_by == actor.user_id)
    return conditions


def _check_url(url: str, allow_private: bool) -> str:
    problem = outbound.check_url(url.strip(), allow_private=allow_private)
    if problem is not None:
        raise field_error("url", problem)
    return url.strip()


def _check_events(events: list[WebhookEvent]) -> list[dict[str, Any]]:
    if not events:
        raise field_error("events", "Subscribe to at least one event.")
    checked = []
    for i, event in enumerate(events):
        actions = ACTIONS.get(event.object_type)
        if actions is None and event.object_type.startswith("task."):
            actions = TASK_ACTIONS
        if actions is None:
            raise field_error(
                f"events[{i}].object_type", f"Unknown object type {event.object_type!r}."
            )
        if event.action not in actions:
            raise field_error(
                f"events[{i}].action",
                f"{event.object_type} events are {', '.join(actions)}; not {event.action!r}.",
            )
        if event.extra_filter is not None:
            try:
                check_filter(event.extra_filter, f"events[{i}].extra_filter")
            except FilterError as exc:
                raise field_error(exc.path, str(exc)) from exc
        checked.append(event.model_dump())
    return checked


# --- Clove extensions: delivery history and replay ----------------------------------------------


def list_deliveries(
    session: Session,
    webhook: Webhook,
    skip: int,
    limit: int,
    *,
    status: str | None = None,
    event_id: str | None = None,
) -> list[WebhookDelivery]:
    """Up to `limit + 1` of the subscription's deliveries, newest first."""
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if event_id is not None:
        query = query.where(WebhookDelivery.event_id == event_id)
    query = query.order_by(WebhookDelivery.date_created.desc(), WebhookDelivery.id.desc())
    return list(session.scalars(query.offset(skip).limit(limit + 1)))


def replay_event(
    session: Session, actor: Actor, event_id: str, webhook_id: str | None
) -> list[WebhookDelivery]:
    """Queues the event's deliveries to the caller's active subscriptions (or to
    `webhook_id` only) to be sent again now, whatever became of them; a 404 for an event or
    subscription the caller cannot see, a 400 when no active subscription had it."""
    exists = select(Event.id).where(
        Event.id == event_id, Event.organization_id == actor.organization_id
    )
    if session.scalar(exists) is None:
        raise object_not_found("Event")
    if webhook_id is not None:
        get_webhook(session, actor, webhook_id)
    query = (
        select(WebhookDelivery)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.event_id == event_id, Webhook.status == "active", *_visible(actor))
        .order_by(WebhookDelivery.date_created, WebhookDelivery.id)
    )
    if webhook_id is not None:
        query = query.where(WebhookDelivery.webhook_id == webhook_id)
    deliveries = list(session.scalars(query))
    if not deliveries:
        raise ValidationFailed(["No active webhook subscription has a delivery of this event."])
    now = utcnow()
    for delivery in deliveries:
        # A fresh 72-hour window: the replay is a new delivery of the same event.
        delivery.status, delivery.attempts = "pending", 0
        delivery.next_attempt_at, delivery.date_created, delivery.date_updated = now, now, now
        delivery.locked_by = delivery.locked_until = None
        delivery.date_delivered = None
    session.flush()
    return deliveries
