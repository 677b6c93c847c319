"""`/webhook/`: webhook subscriptions (close-api.md §6.2), plus Clove's delivery history
(`GET /webhook/{id}/delivery/`) and replay (`POST /event/{id}/replay/`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.errors import field_error
from clove.event.service import Actor
from clove.kit.http import JSON, TransactionRoute, get_actor, get_db, page, page_params, respond
from clove.webhook import service
from clove.webhook.schemas import (
    ReplayBody,
    WebhookCreate,
    WebhookUpdate,
    serialize_delivery,
    serialize_webhook,
)

router = APIRouter(route_class=TransactionRoute)

DELIVERY_STATUSES = ("pending", "delivered", "failed", "dropped")


@router.get("/webhook/")
def list_webhooks(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    skip, limit = page_params(request)
    webhooks = service.list_webhooks(db, actor, skip, limit)
    return respond(page((serialize_webhook(w) for w in webhooks), limit), request)


@router.post("/webhook/", status_code=201)
def create_webhook(
    body: WebhookCreate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    allow_private = request.app.state.settings.webhooks_allow_private_targets
    webhook = service.create_webhook(db, actor, body, allow_private=allow_private)
    return respond(serialize_webhook(webhook), request, status_code=201)


@router.get("/webhook/{webhook_id}/")
def get_webhook(
    webhook_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    return respond(serialize_webhook(service.get_webhook(db, actor, webhook_id)), request)


@router.put("/webhook/{webhook_id}/")
def update_webhook(
    webhook_id: str,
    body: WebhookUpdate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    webhook = service.get_webhook(db, actor, webhook_id)
    allow_private = request.app.state.settings.webhooks_allow_private_targets
    service.update_webhook(db, actor, webhook, body, allow_private=allow_private)
    return respond(serialize_webhook(webhook), request)


@router.delete("/webhook/{webhook_id}/")
def delete_webhook(
    webhook_id: str, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    service.delete_webhook(db, service.get_webhook(db, actor, webhook_id))
    return respond({})


@router.get("/webhook/{webhook_id}/delivery/")
def list_deliveries(
    webhook_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    webhook = service.get_webhook(db, actor, webhook_id)
    skip, limit = page_params(request)
    status = request.query_params.get("status")
    if status is not None and status not in DELIVERY_STATUSES:
        raise field_error("status", f"One of {', '.join(DELIVERY_STATUSES)}.")
    deliveries = service.list_deliveries(
        db, webhook, skip, limit, status=status, event_id=request.query_params.get("event_id")
    )
    return respond(page((serialize_delivery(d) for d in deliveries), limit), request)


@router.post("/event/{event_id}/replay/")
def replay_event(
    event_id: str,
    request: Request,
    body: ReplayBody | None = None,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    webhook_id = body.webhook_id if body is not None else None
    deliveries = service.replay_event(db, actor, event_id, webhook_id)
    return respond({"data": [serialize_delivery(d) for d in deliveries]}, request)
