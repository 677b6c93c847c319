"""`/phone_number/`: the organization's phone numbers."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.errors import BadRequest
from clove.event.service import Actor
from clove.kit.http import JSON, TransactionRoute, get_actor, get_db, page, page_params, respond
from clove.phone_number import service
from clove.phone_number.schemas import (
    PhoneNumberCreate,
    PhoneNumberUpdate,
    serialize_phone_number,
)

router = APIRouter(route_class=TransactionRoute)


def _bool_param(request: Request, name: str) -> bool | None:
    raw = (request.query_params.get(name) or "").strip().lower()
    if not raw:
        return None
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise BadRequest(f"{name} must be true or false")


@router.get("/phone_number/")
def list_phone_numbers(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    skip, limit = page_params(request)
    params = request.query_params
    phones = service.list_phone_numbers(
        db,
        actor.organization_id,
        number=params.get("number") or None,
        user_id=params.get("user_id") or None,
        is_group_number=_bool_param(request, "is_group_number"),
        skip=skip,
        limit=limit,
    )
    return respond(page(map(serialize_phone_number, phones), limit), request)


@router.post("/phone_number/")
def create_phone_number(
    body: PhoneNumberCreate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    """Clove's extension: register a number the organization already has."""
    phone = service.create_phone_number(db, actor, body)
    return respond(serialize_phone_number(phone), request)


@router.post("/phone_number/request/internal/")
def rent_phone_number() -> JSON:
    """Close rents numbers from carriers; Clove has none to rent from."""
    raise service.RentalRefused(
        "Clove cannot rent phone numbers; add one with POST /phone_number/."
    )


@router.get("/phone_number/{phone_number_id}/")
def get_phone_number(
    phone_number_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    phone = service.get_phone_number(db, actor.organization_id, phone_number_id)
    return respond(serialize_phone_number(phone), request)


@router.put("/phone_number/{phone_number_id}/")
def update_phone_number(
    phone_number_id: str,
    body: PhoneNumberUpdate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    phone = service.get_phone_number(db, actor.organization_id, phone_number_id)
    service.update_phone_number(db, actor, phone, body)
    return respond(serialize_phone_number(phone), request)


@router.delete("/phone_number/{phone_number_id}/")
def delete_phone_number(
    phone_number_id: str, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    phone = service.get_phone_number(db, actor.organization_id, phone_number_id)
    service.delete_phone_number(db, actor, phone)
    return respond({})
