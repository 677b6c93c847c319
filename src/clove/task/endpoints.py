"""`/task/`: tasks on leads."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.email_template.endpoints import bool_param
from clove.errors import BadRequest
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
from clove.search.service import request_timezone
from clove.task import service
from clove.task.schemas import TaskCreate, TaskUpdate

router = APIRouter(route_class=TransactionRoute)

BOUNDED = ("date", "due_date", "date_created", "date_updated")
OPERATORS = ("gt", "gte", "lt", "lte")


def task_filters(request: Request) -> service.TaskFilters:
    """Close's task list filters: `_type` (default `lead`; `all` for every type), ids, lead,
    assignee, completion, `view` and date bounds."""
    params = request.query_params
    filters = service.TaskFilters()
    types = (id_list_param(request, "_type") or []) + (id_list_param(request, "_type__in") or [])
    if types:
        filters.types = None if "all" in types else types
    ids = (id_list_param(request, "id") or []) + (id_list_param(request, "id__in") or [])
    filters.ids = ids or None
    filters.lead_id = (params.get("lead_id") or "").strip() or None
    filters.assigned_to = (params.get("assigned_to") or "").strip() or None
    filters.is_complete = bool_param(request, "is_complete")
    view = (params.get("view") or "").strip() or None
    if view is not None and view not in service.VIEWS:
        raise BadRequest("view must be one of inbox, future, archive")
    filters.view = view
    for name in BOUNDED:
        column = "date" if name == "due_date" else name
        exact = params.get(name)
        if exact is not None and exact.strip():
            when, _ = service.parse_task_date(name, exact)
            assert when is not None
            filters.bounds += [(column, "gte", when), (column, "lte", when)]
        for op in OPERATORS:
            raw = params.get(f"{name}__{op}")
            if raw is not None and raw.strip():
                filters.bounds.append((column, op, parse_date_filter(f"{name}__{op}", raw)))
    order = (params.get("_order_by") or "").strip() or "date"
    if order.lstrip("-") not in service.ORDERS:
        raise BadRequest("_order_by must be date or date_created, optionally prefixed with -")
    filters.order_by = order
    return filters


@router.get("/task/")
def list_tasks(
    request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    skip, limit = page_params(request)
    filters = task_filters(request)
    tz = request_timezone(request, db, actor)
    tasks = service.list_tasks(db, actor.organization_id, filters, tz, skip=skip, limit=limit)
    return respond(page(service.serialize_tasks(db, tasks), limit), request)


@router.post("/task/")
def create_task(
    body: TaskCreate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    task = service.create_task(db, actor, body)
    return respond(service.task_object(db, task), request)


@router.get("/task/{task_id}/")
def get_task(
    task_id: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    task = service.get_task(db, actor.organization_id, task_id)
    return respond(service.task_object(db, task), request)


@router.put("/task/{task_id}/")
def update_task(
    task_id: str,
    body: TaskUpdate,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    task = service.get_task(db, actor.organization_id, task_id)
    service.update_task(db, actor, task, body)
    return respond(service.task_object(db, task), request)


@router.delete("/task/{task_id}/")
def delete_task(
    task_id: str, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
) -> JSON:
    task = service.get_task(db, actor.organization_id, task_id)
    service.delete_task(db, actor, task)
    return respond({})
