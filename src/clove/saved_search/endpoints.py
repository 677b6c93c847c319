"""`/saved_search/`: Smart Views."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.errors import BadRequest
from clove.event.service import Actor
from clove.kit.http import JSON, TransactionRoute, get_actor, get_db, page, page_params, respond
from clove.saved_search import service
from clove.saved_search.schemas import (
    SAVED_SEARCH_TYPES,
    SavedSearchCreate,
    SavedSearchUpdate,
    serialize_saved_search,
)

router = APIRouter(route_class=TransactionRoute)


def type_filter(request: Request) -> list[str]:
    """The view types to list: `type`, `type__in` (comma-separated, or repeated), both (then
    a view must match each), or Close's default `lead` when neither is given."""
    params = request.query_params
    single = (params.get("type") or "").strip()
    several = [
        part.strip()
        for raw in params.getlist("type__in")
        for part in raw.split(",")
        if part.strip()
    ]
    for value in [single, *several] if single else several:
        if value not in SAVED_SEARCH_TYPES:
            expected = ", ".join(SAVED_SEARCH_TYPES)
            raise BadRequest(f"Unknown Smart View type {value!r}; expected one of {expected}.")
    if single and several:
        return [single] if single in several else []
    if single:
        return [single]
    return list(dict.fromkeys(several)) or ["lead"]


@router.get("/saved_search/")
def list_saved_searches(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    skip, limit = page_params(request)
    types = type_filter(request)
    views = service.list_saved_searches(db, actor.organization_id, types, skip, limit)
    return respond(page(map(serialize_saved_search, views), limit), request)


@router.post("/saved_search/")
def create_saved_search(
    body: SavedSearchCreate, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    return respond(serialize_saved_search(service.create_saved_search(db, actor, body)))


@router.get("/saved_search/{saved_search_id}/")
def get_saved_search(
    saved_search_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    view = service.get_saved_search(db, actor.organization_id, saved_search_id)
    return respond(serialize_saved_search(view), request)


@router.put("/saved_search/{saved_search_id}/")
def update_saved_search(
    saved_search_id: str,
    body: SavedSearchUpdate,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    view = service.get_saved_search(db, actor.organization_id, saved_search_id)
    service.update_saved_search(db, actor, view, body)
    return respond(serialize_saved_search(view))


@router.delete("/saved_search/{saved_search_id}/")
def delete_saved_search(
    saved_search_id: str, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    view = service.get_saved_search(db, actor.organization_id, saved_search_id)
    service.delete_saved_search(db, actor, view)
    return respond({})
