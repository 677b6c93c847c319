from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.errors import Forbidden
from clove.event.service import Actor
from clove.kit.http import JSON, TransactionRoute, get_actor, get_db, page, page_params, respond
from clove.lead_status import service
from clove.lead_status.schemas import StatusCreate, StatusUpdate, serialize_status

router = APIRouter(route_class=TransactionRoute)


def _require_admin(actor: Actor) -> None:
    if not actor.ctx.is_admin:
        raise Forbidden("You need the Manage Customizations permission to change lead statuses.")


@router.get("/status/lead/")
def list_lead_statuses(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    skip, limit = page_params(request)
    statuses = service.list_statuses(db, actor.organization_id)[skip : skip + limit + 1]
    return respond(page([serialize_status(s) for s in statuses], limit), request)


@router.post("/status/lead/")
def create_lead_status(
    body: StatusCreate, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    _require_admin(actor)
    return respond(serialize_status(service.create_status(db, actor, body.label)))


@router.put("/status/lead/{status_id}/")
def update_lead_status(
    status_id: str,
    body: StatusUpdate,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    _require_admin(actor)
    status = service.get_status(db, actor.organization_id, status_id)
    if body.label is not None:
        service.rename_status(db, actor, status, body.label)
    return respond(serialize_status(status))


@router.delete("/status/lead/{status_id}/")
def delete_lead_status(
    status_id: str, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    _require_admin(actor)
    service.delete_status(db, actor, service.get_status(db, actor.organization_id, status_id))
    return respond({})
