"""`/send_as/`: who may send email from whose accounts."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from clove.event.service import Actor
from clove.kit.http import JSON, TransactionRoute, get_actor, get_db, page, page_params, respond
from clove.send_as import service
from clove.send_as.schemas import SendAsBulk, SendAsCreate, serialize_send_as

router = APIRouter(route_class=TransactionRoute)


def _param(request: Request, name: str) -> str | None:
    return (request.query_params.get(name) or "").strip() or None


@router.get("/send_as/")
def list_send_as(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    skip, limit = page_params(request)
    associations = service.list_send_as(
        db,
        actor,
        allowing_user_id=_param(request, "allowing_user_id"),
        allowed_user_id=_param(request, "allowed_user_id"),
        skip=skip,
        limit=limit,
    )
    return respond(page(map(serialize_send_as, associations), limit), request)


@router.post("/send_as/", status_code=201)
def create_send_as(
    body: SendAsCreate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    association = service.create_send_as(db, actor, body.allowing_user_id, body.allowed_user_id)
    return respond(serialize_send_as(association), request, status_code=201)


@router.delete("/send_as/", status_code=204)
def delete_send_as_between(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> Response:
    service.delete_send_as_between(
        db, actor, _param(request, "allowing_user_id"), _param(request, "allowed_user_id")
    )
    return Response(status_code=204)


@router.post("/send_as/bulk/")
def bulk_send_as(
    body: SendAsBulk,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    associations = service.bulk_update_send_as(
        db, actor, body.allowed_user_ids, body.disallowed_user_ids
    )
    return respond({"data": [serialize_send_as(a) for a in associations]}, request)


@router.get("/send_as/{send_as_id}/")
def get_send_as(
    send_as_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    return respond(serialize_send_as(service.get_send_as(db, actor, send_as_id)), request)


@router.delete("/send_as/{send_as_id}/", status_code=204)
def delete_send_as(
    send_as_id: str, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> Response:
    service.delete_send_as(db, service.get_send_as(db, actor, send_as_id))
    return Response(status_code=204)
