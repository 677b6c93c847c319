"""The event log: `GET /event/` (cursor paging) and `GET /event/{event_id}/` (close-api.md §6.1)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.errors import BadRequest
from clove.event import service
from clove.event.service import Actor, DateBounds, EventCursor, serialize_event
from clove.kit.dates import utcnow
from clove.kit.http import (
    JSON,
    TransactionRoute,
    get_actor,
    get_db,
    int_param,
    respond,
)

router = APIRouter(route_class=TransactionRoute)


@router.get("/event/")
def list_events(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    params = request.query_params
    if "_skip" in params:
        raise BadRequest(
            "The event log does not support _skip: page with _cursor, passing the cursor_next "
            "(or cursor_previous) of the previous response."
        )
    limit = int_param(request, "_limit", service.MAX_LIMIT, low=1, high=service.MAX_LIMIT)
    raw_cursor = (params.get("_cursor") or "").strip()
    cursor = EventCursor.decode(raw_cursor) if raw_cursor else None
    filters = {name: params[name] for name in service.FILTERS if params.get(name)}
    bounds = DateBounds(
        **{
            op: service.parse_date_filter(f"date_updated__{op}", params[f"date_updated__{op}"])
            for op in service.DATE_FILTERS
            if params.get(f"date_updated__{op}")
        }
    )
    page = service.list_events(db, actor.organization_id, filters, bounds, cursor, limit, utcnow())
    data = [serialize_event(event) for event in page.events]
    body = {"data": data, "cursor_next": page.cursor_next, "cursor_previous": page.cursor_previous}
    return respond(body, request)


@router.get("/event/{event_id}/")
def get_event(
    event_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    event = service.get_event(db, actor.organization_id, event_id, utcnow())
    return respond(serialize_event(event), request)
