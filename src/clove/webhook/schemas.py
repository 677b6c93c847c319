"""Webhook request bodies and Close's webhook object (close-api.md §6.2)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from clove.kit.dates import iso_naive
from clove.kit.schemas import Body, PatchBody
from clove.kit.secrets import decrypt
from clove.models import Webhook, WebhookDelivery

MAX_EVENTS = 200


class WebhookEvent(Body):
    object_type: str = Field(max_length=100)
    action: str = Field(max_length=40)
    extra_filter: dict[str, Any] | None = None


class WebhookCreate(Body):
    url: str = Field(max_length=2000)
    events: list[WebhookEvent] = Field(max_length=MAX_EVENTS)
    verify_ssl: bool = True


class WebhookUpdate(PatchBody):
    url: str | None = Field(default=None, max_length=2000)
    events: list[WebhookEvent] | None = Field(default=None, max_length=MAX_EVENTS)
    status: Literal["active", "paused"] | None = None
    verify_ssl: bool | None = None


class ReplayBody(PatchBody):
    webhook_id: str | None = Field(default=None, max_length=64)


def serialize_webhook(webhook: Webhook) -> dict[str, Any]:
    """Close's fields. `health_status` is `unhealthy` while every recent delivery has failed
    (Clove's value: Close documents only `healthy`)."""
    return {
        "id": webhook.id,
        "url": webhook.url,
        "events": list(webhook.events or []),
        "status": webhook.status,
        "verify_ssl": webhook.verify_ssl,
        "signature_key": decrypt(webhook.signature_key),
        "created_by": webhook.created_by,
        "updated_by": webhook.updated_by,
        "date_created": iso_naive(webhook.date_created),
        "date_updated": iso_naive(webhook.date_updated),
        "counters": {},
        "health_status": "healthy" if webhook.failing_since is None else "unhealthy",
        "latest_error": webhook.latest_error,
        "pause_reason": webhook.pause_reason,
        "recent_consecutive_fail_buckets_cnt": 0,
    }


def serialize_delivery(delivery: WebhookDelivery) -> dict[str, Any]:
    """Clove's delivery record (an extension; Close has no such object)."""
    return {
        "id": delivery.id,
        "webhook_id": delivery.webhook_id,
        "event_id": delivery.event_id,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": (
            iso_naive(delivery.next_attempt_at) if delivery.status == "pending" else None
        ),
        "last_attempt_at": iso_naive(delivery.last_attempt_at),
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "date_delivered": iso_naive(delivery.date_delivered),
        "date_created": iso_naive(delivery.date_created),
        "date_updated": iso_naive(delivery.date_updated),
    }
