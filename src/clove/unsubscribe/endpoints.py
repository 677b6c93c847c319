"""`/unsubscribe/email/`: addresses never mailed by sequences or bulk email."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.event.service import Actor
from clove.kit.http import JSON, TransactionRoute, get_actor, get_db, page, page_params, respond
from clove.unsubscribe import service
from clove.unsubscribe.schemas import Unsubscribe

router = APIRouter(route_class=TransactionRoute)


@router.get("/unsubscribe/email/")
def list_unsubscribed(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    skip, limit = page_params(request)
    rows = service.list_unsubscribed(db, actor.organization_id, skip, limit)
    return respond(page(({"email": r.email} for r in rows), limit), request)


@router.post("/unsubscribe/email/", status_code=201)
def unsubscribe(
    body: Unsubscribe, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    row = service.unsubscribe(db, actor, body.email)
    return respond({"email": row.email}, status_code=201)


@router.delete("/unsubscribe/email/{email_address}/")
def resubscribe(
    email_address: str, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    return respond({"email": service.resubscribe(db, actor, email_address)})
