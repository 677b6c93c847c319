"""API key management. Close documents looking a key up; listing, creating and revoking are ours."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.api_key import service
from clove.api_key.schemas import ApiKeyCreate
from clove.auth.service import AuthContext
from clove.kit.http import (
    JSON,
    TransactionRoute,
    after_commit,
    get_auth,
    get_db,
    page,
    page_params,
    respond,
)
from clove.models import ApiKey

router = APIRouter(route_class=TransactionRoute)


@router.get("/api_key/")
def list_api_keys(
    request: Request, db: Session = Depends(get_db), ctx: AuthContext = Depends(get_auth)
) -> JSON:
    skip, limit = page_params(request)
    query = service.visible_keys(ctx).order_by(ApiKey.date_created, ApiKey.id)
    keys = db.scalars(query.offset(skip).limit(limit + 1))
    return respond(page([service.serialize_api_key(k) for k in keys], limit), request)


@router.post("/api_key/")
def create_api_key(
    body: ApiKeyCreate,
    request: Request,
    db: Session = Depends(get_db),
    ctx: AuthContext = Depends(get_auth),
) -> JSON:
    key, secret = service.create_api_key(db, ctx.organization_id, ctx.user_id, body.name)
    return respond(service.serialize_api_key(key, secret), request)


@router.get("/api_key/{key_or_id}/")
def get_api_key(
    key_or_id: str,
    request: Request,
    db: Session = Depends(get_db),
    ctx: AuthContext = Depends(get_auth),
) -> JSON:
    return respond(service.serialize_api_key(service.find_key(db, ctx, key_or_id)), request)


@router.delete("/api_key/{key_or_id}/")
def revoke_api_key(
    key_or_id: str,
    request: Request,
    db: Session = Depends(get_db),
    ctx: AuthContext = Depends(get_auth),
) -> JSON:
    service.revoke(service.find_key(db, ctx, key_or_id))
    after_commit(
        db, request.app.state.authenticator.forget
    )  # this process stops trusting it at once
    return respond({})
