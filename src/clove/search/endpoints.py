"""`POST /data/search/`: Advanced Filtering."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from sqlalchemy.orm import Session

from clove.event.service import Actor
from clove.kit.http import JSON, TransactionRoute, get_actor, get_db, respond
from clove.lead.endpoints import base_url
from clove.search import service
from clove.search.tree import parse_search_request

router = APIRouter(route_class=TransactionRoute)


@router.post("/data/search/")
def search(
    request: Request,
    payload: Any = Body(default=None),
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    body = parse_search_request(payload)
    tz = service.request_timezone(request, db, actor)
    return respond(service.run_search(db, actor, body, tz, base_url(request)))
