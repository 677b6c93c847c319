"""`POST /data/search/`: Advanced Filtering."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Body, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from clove.event.service import Actor
from clove.kit.http import JSON, TransactionRoute, get_actor, get_db, respond
from clove.lead.endpoints import base_url
from clove.models import User
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
    tz = request_timezone(request, db, actor)
    return respond(service.run_search(db, actor, body, tz, base_url(request)))


def request_timezone(request: Request, session: Session, actor: Actor) -> tzinfo:
    """Where "today" is: the `X-TZ-Offset` header, else the user's last used time zone, else UTC."""
    if request.headers.get("x-tz-offset", "").strip():
        return timezone(timedelta(hours=request.state.tz_offset))
    if actor.user_id:
        name = session.scalar(select(User.last_used_timezone).where(User.id == actor.user_id))
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                pass
    return UTC
