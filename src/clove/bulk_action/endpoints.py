"""`/bulk_action/<kind>/`: list, initiate, fetch, and pause or resume (PUT `status`)."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Body, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from clove.bulk_action import service
from clove.bulk_action.catalogue import KINDS
from clove.bulk_action.kinds import Kind
from clove.event.service import Actor
from clove.kit.http import JSON, TransactionRoute, get_actor, get_db, page, page_params, respond
from clove.kit.schemas import Body as BodyModel
from clove.search.service import request_timezone

router = APIRouter(route_class=TransactionRoute)

# Close documents `template_id` as the one list filter (bulk email).
LIST_FILTERS = {"email": ("template_id",)}


class StatusUpdate(BodyModel):
    status: Literal["paused", "resuming"]


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], payload: Any) -> M:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def _add_routes(kind: Kind) -> None:
    path = f"/bulk_action/{kind.name}/"

    @router.get(path, name=f"list_bulk_{kind.name}")
    def list_actions(
        request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
    ) -> JSON:
        skip, limit = page_params(request)
        filters = {
            name: request.query_params[name]
            for name in LIST_FILTERS.get(kind.name, ())
            if request.query_params.get(name)
        }
        found = service.list_actions(db, actor.organization_id, kind, skip, limit, **filters)
        return respond(page((service.serialize(kind, a) for a in found), limit), request)

    @router.post(path, name=f"create_bulk_{kind.name}")
    def create_action(
        request: Request,
        payload: Any = Body(default=None),
        db: Session = Depends(get_db),
        actor: Actor = Depends(get_actor),
    ) -> JSON:
        body = _parse(kind.body, payload)
        tz = request_timezone(request, db, actor)
        created = service.create(db, actor, kind, body, tz)
        if isinstance(created, dict):  # a dry run
            return respond(created, request)
        return respond(service.serialize(kind, created), request)

    @router.get(path + "{action_id}/", name=f"get_bulk_{kind.name}")
    def get_action(
        action_id: str,
        request: Request,
        db: Session = Depends(get_db),
        actor: Actor = Depends(get_actor),
    ) -> JSON:
        action = service.get_action(db, actor.organization_id, kind, action_id)
        return respond(service.serialize(kind, action), request)

    @router.put(path + "{action_id}/", name=f"update_bulk_{kind.name}")
    def update_action(
        action_id: str,
        request: Request,
        payload: Any = Body(default=None),
        db: Session = Depends(get_db),
        actor: Actor = Depends(get_actor),
    ) -> JSON:
        body = _parse(StatusUpdate, payload)
        action = service.get_action(db, actor.organization_id, kind, action_id, lock=True)
        service.update_status(db, actor, kind, action, body.status)
        return respond(service.serialize(kind, action), request)


for _kind in KINDS.values():
    _add_routes(_kind)
