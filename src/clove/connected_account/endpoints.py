"""`/connected_account/`: the email accounts mail is sent from."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.connected_account import service
from clove.connected_account.schemas import (
    ConnectedAccountCreate,
    serialize_connected_account,
)
from clove.event.service import Actor
from clove.kit.http import JSON, TransactionRoute, get_actor, get_db, page, page_params, respond

router = APIRouter(route_class=TransactionRoute)


@router.get("/connected_account/")
def list_connected_accounts(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    skip, limit = page_params(request)
    user_id = request.query_params.get("user_id") or None
    accounts = service.list_connected_accounts(
        db, actor.organization_id, user_id=user_id, skip=skip, limit=limit
    )
    return respond(page(map(serialize_connected_account, accounts), limit), request)


@router.post("/connected_account/")
def create_connected_account(
    body: ConnectedAccountCreate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    """Clove's extension: add an SMTP account of the caller (Close connects accounts in its app)."""
    account = service.create_connected_account(db, actor.organization_id, actor.user_id, body)
    return respond(serialize_connected_account(account), request)


@router.get("/connected_account/{account_id}/")
def get_connected_account(
    account_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    account = service.get_connected_account(db, actor.organization_id, account_id)
    return respond(serialize_connected_account(account), request)


@router.delete("/connected_account/{account_id}/")
def delete_connected_account(
    account_id: str, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    account = service.get_connected_account(db, actor.organization_id, account_id)
    service.delete_connected_account(db, actor.user_id, actor.ctx.is_admin, account)
    return respond({})
