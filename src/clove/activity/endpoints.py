"""`/activity/email/` (and `/activity/`, whose only type in Clove is Email)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.activity import service
from clove.activity.schemas import EmailActivityCreate, EmailActivityUpdate
from clove.event.service import Actor, parse_date_filter
from clove.kit.http import (
    JSON,
    TransactionRoute,
    get_actor,
    get_db,
    id_list_param,
    page,
    page_params,
    respond,
)

router = APIRouter(route_class=TransactionRoute)

DATE_FIELDS = ("date_created", "activity_at")
DATE_OPERATORS = ("gt", "gte", "lt", "lte")


def email_filters(request: Request) -> service.EmailFilters:
    """The list filters Close documents for email activities (comma-separated id lists)."""
    dates = []
    for name in DATE_FIELDS:
        for op in DATE_OPERATORS:
            raw = request.query_params.get(f"{name}__{op}")
            if raw is not None and raw.strip():
                dates.append((name, op, parse_date_filter(f"{name}__{op}", raw)))

    def ids(name: str) -> list[str] | None:
        found = id_list_param(request, name)
        more = id_list_param(request, f"{name}__in")
        if found is None and more is None:
            return None
        return (found or []) + (more or [])

    return service.EmailFilters(
        ids=id_list_param(request, "id__in"),
        lead_ids=ids("lead_id"),
        contact_ids=ids("contact_id"),
        user_ids=ids("user_id"),
        dates=tuple(dates),
    )


def wants_emails(request: Request) -> bool:
    """False when `_type`/`_type__in` asks only for activity types Clove does not have."""
    types = (id_list_param(request, "_type") or []) + (id_list_param(request, "_type__in") or [])
    return not types or "Email" in types


def list_response(request: Request, db: Session, actor: Actor) -> JSON:
    skip, limit = page_params(request)
    filters = email_filters(request)
    if not wants_emails(request):
        return respond(page([], limit), request)
    activities = service.list_email_activities(
        db, actor.organization_id, filters, skip=skip, limit=limit
    )
    return respond(page(service.serialize_email_activities(db, activities), limit), request)


@router.get("/activity/")
def list_activities(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    """Every activity type Clove has: email activities, newest first."""
    return list_response(request, db, actor)


@router.get("/activity/email/")
def list_email_activities(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    return list_response(request, db, actor)


@router.post("/activity/email/")
def create_email_activity(
    body: EmailActivityCreate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    """Logs an email on a lead. Clove does not send a POSTed email, whatever its status: the
    record is kept as given. An incoming (`inbox`) email ends its sender's sequences on the lead."""
    activity = service.create_email_activity(db, actor, body)
    return respond(service.email_activity_object(db, activity), request)


@router.get("/activity/email/{activity_id}/")
def get_email_activity(
    activity_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    activity = service.get_email_activity(db, actor.organization_id, activity_id)
    return respond(service.email_activity_object(db, activity), request)


@router.put("/activity/email/{activity_id}/")
def update_email_activity(
    activity_id: str,
    body: EmailActivityUpdate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    activity = service.get_email_activity(db, actor.organization_id, activity_id)
    service.update_email_activity(db, actor, activity, body)
    return respond(service.email_activity_object(db, activity), request)


@router.delete("/activity/email/{activity_id}/")
def delete_email_activity(
    activity_id: str, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    activity = service.get_email_activity(db, actor.organization_id, activity_id)
    service.delete_email_activity(db, actor, activity)
    return respond({})
