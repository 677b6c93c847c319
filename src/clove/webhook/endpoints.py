"""`/webhook/`: webhook subscriptions (close-api.md §6.2)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.event.service import Actor
from clove.kit.http import JSON, TransactionRoute, get_actor, get_db, page, page_params, respond
from clove.webhook import service
from clove.webhook.schemas import WebhookCreate, WebhookUpdate, serialize_webhook

router = APIRouter(route_class=TransactionRoute)


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
    webhook = service.create_webhook(db, actor, body)
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
    service.update_webhook(db, actor, webhook, body)
    return respond(serialize_webhook(webhook), request)


@router.delete("/webhook/{webhook_id}/")
def delete_webhook(
    webhook_id: str, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    service.delete_webhook(db, service.get_webhook(db, actor, webhook_id))
    return respond({})
