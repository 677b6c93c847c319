"""`/contact/`: list, create, get, update and delete contacts."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.contact import service
from clove.contact.schemas import ContactCreate, ContactUpdate
from clove.event.service import Actor
from clove.kit.http import JSON, TransactionRoute, get_actor, get_db, page_params, respond
from clove.lead import service as lead_service
from clove.lead.endpoints import base_url, envelope, text_search

router = APIRouter(route_class=TransactionRoute)


@router.get("/contact/")
def list_contacts(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    skip, limit = page_params(request)
    lead_id = request.query_params.get("lead_id") or None
    search = text_search(request, db, actor, "contact")
    result = service.list_contacts(db, actor.organization_id, lead_id, skip, limit, search)
    return respond(envelope(*result), request)


@router.post("/contact/")
def create_contact(
    body: ContactCreate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    return respond(lead_service.add_contact(db, actor, base_url(request), body), request)


@router.get("/contact/{contact_id}/")
def get_contact(
    contact_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    contact = service.get_contact(db, actor.organization_id, contact_id)
    return respond(service.serialized(db, [contact])[0], request)


@router.put("/contact/{contact_id}/")
def update_contact(
    contact_id: str,
    body: ContactUpdate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    contact = service.get_contact(db, actor.organization_id, contact_id)
    return respond(service.update_contact(db, actor, contact, body), request)


@router.delete("/contact/{contact_id}/")
def delete_contact(
    contact_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    contact = service.get_contact(db, actor.organization_id, contact_id)
    lead_service.remove_contact(db, actor, base_url(request), contact)
    return respond({})
