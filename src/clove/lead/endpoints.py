"""`/lead/`: list, create, get, update, delete and merge leads."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.event.service import Actor
from clove.kit.http import JSON, TransactionRoute, get_actor, get_db, page_params, respond
from clove.kit.rows import Listing
from clove.lead import service
from clove.lead.schemas import LeadCreate, LeadMerge, LeadUpdate
from clove.search import service as search_service

router = APIRouter(route_class=TransactionRoute)


def base_url(request: Request) -> str:
    """Where links handed out (`html_url`) point."""
    url: str = request.app.state.settings.public_url
    return url


def text_search(request: Request, db: Session, actor: Actor, object_type: str) -> Listing | None:
    """The condition and order of the request's `query` text, or None without one."""
    query = request.query_params.get("query", "").strip()
    if not query:
        return None
    tz = search_service.request_timezone(request, db, actor)
    search = search_service.text_search(db, actor, tz, query, object_type)
    return search.where, search_service.order_by(search.atoms)


def envelope(total: int, has_more: bool, data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": data, "has_more": has_more, "total_results": total}


@router.get("/lead/")
def list_leads(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    skip, limit = page_params(request)
    search = text_search(request, db, actor, "lead")
    result = service.list_leads(db, actor.organization_id, skip, limit, base_url(request), search)
    return respond(envelope(*result), request)


@router.post("/lead/")
def create_lead(
    body: LeadCreate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    return respond(service.create_lead(db, actor, base_url(request), body), request)


@router.post("/lead/merge/")
def merge_leads(
    body: LeadMerge,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    service.merge_leads(db, actor, base_url(request), body.source, body.destination)
    return respond({})


@router.get("/lead/{lead_id}/")
def get_lead(
    lead_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    lead = service.get_lead(db, actor.organization_id, lead_id)
    return respond(service.lead_object(db, lead, base_url(request)), request)


@router.put("/lead/{lead_id}/")
def update_lead(
    lead_id: str,
    body: LeadUpdate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    lead = service.get_lead(db, actor.organization_id, lead_id)
    return respond(service.update_lead(db, actor, base_url(request), lead, body), request)


@router.delete("/lead/{lead_id}/")
def delete_lead(
    lead_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    lead = service.get_lead(db, actor.organization_id, lead_id)
    service.delete_lead(db, actor, base_url(request), lead)
    return respond({})
