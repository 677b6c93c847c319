"""`/email_template/`: email templates and their rendering."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.email_template import service
from clove.email_template.schemas import (
    EmailTemplateCreate,
    EmailTemplateUpdate,
    serialize_email_template,
)
from clove.errors import BadRequest, ValidationFailed
from clove.event.service import Actor
from clove.kit.http import (
    JSON,
    TransactionRoute,
    get_actor,
    get_db,
    int_param,
    page,
    page_params,
    respond,
)
from clove.search.service import request_timezone

router = APIRouter(route_class=TransactionRoute)

RENDER_MODES = ("lead", "contact")


def bool_param(request: Request, name: str) -> bool | None:
    """A `true`/`false` query filter (Close's spelling; `1`/`0` also accepted), None if absent."""
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise BadRequest(f"{name} must be true or false")


@router.get("/email_template/")
def list_email_templates(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    skip, limit = page_params(request)
    templates = service.list_email_templates(
        db,
        actor.organization_id,
        is_archived=bool_param(request, "is_archived"),
        is_shared=bool_param(request, "is_shared"),
        skip=skip,
        limit=limit,
    )
    return respond(page(map(serialize_email_template, templates), limit), request)


@router.post("/email_template/")
def create_email_template(
    body: EmailTemplateCreate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    template = service.create_email_template(db, actor, body)
    return respond(serialize_email_template(template), request)


@router.get("/email_template/{template_id}/")
def get_email_template(
    template_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    template = service.get_email_template(db, actor.organization_id, template_id)
    return respond(serialize_email_template(template), request)


@router.put("/email_template/{template_id}/")
def update_email_template(
    template_id: str,
    body: EmailTemplateUpdate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    template = service.get_email_template(db, actor.organization_id, template_id)
    service.update_email_template(db, actor, template, body)
    return respond(serialize_email_template(template), request)


@router.delete("/email_template/{template_id}/")
def delete_email_template(
    template_id: str, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    template = service.get_email_template(db, actor.organization_id, template_id)
    service.delete_email_template(db, actor, template)
    return respond({})


@router.get("/email_template/{template_id}/render/")
def render_email_template(
    template_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    """Either `lead_id` + `contact_id`, or a text `query` with `entry` (0-99) and `mode`."""
    params = request.query_params
    template = service.get_email_template(db, actor.organization_id, template_id)
    lead_id = (params.get("lead_id") or "").strip()
    contact_id = (params.get("contact_id") or "").strip()
    query = params.get("query")
    if lead_id or contact_id:
        missing = "contact_id" if lead_id and not contact_id else "lead_id"
        if not (lead_id and contact_id):
            raise ValidationFailed(
                field_errors={missing: "lead_id and contact_id are required together."}
            )
        return respond(service.render_for(db, actor, template, lead_id, contact_id))
    if params.get("s_query"):
        raise BadRequest("s_query mode is not supported yet: send query (a text query).")
    if query is None or not query.strip():
        raise BadRequest("Send lead_id and contact_id, or a query to preview its entries.")
    entry = int_param(request, "entry", 0, low=0, high=99)
    mode = (params.get("mode") or "lead").strip()
    if mode not in RENDER_MODES:
        raise ValidationFailed(field_errors={"mode": "Must be one of lead, contact."})
    tz = request_timezone(request, db, actor)
    return respond(service.render_entry(db, actor, tz, template, query, entry, mode))
