"""`/custom_field/{lead|contact}/` definitions and `/custom_field_schema/{object_type}/` order.

Close documents one path per object type (`/custom_field/lead/{id}/`, ...), so each type gets
routes of its own rather than a `{object_type}` parameter.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.custom_field import service
from clove.custom_field.schemas import (
    OBJECT_TYPES,
    FieldCreate,
    FieldUpdate,
    SchemaUpdate,
    serialize_field,
    serialize_schema,
)
from clove.errors import Forbidden
from clove.event.service import Actor
from clove.kit.http import JSON, TransactionRoute, get_actor, get_db, page, page_params, respond

router = APIRouter(route_class=TransactionRoute)


def _require_admin(actor: Actor) -> None:
    if not actor.ctx.is_admin:
        raise Forbidden("You need the Manage Customizations permission to change custom fields.")


def _add_field_routes(object_type: str) -> None:
    """The five operations on `/custom_field/<object_type>/`."""
    base = f"/custom_field/{object_type}/"

    def list_custom_fields(
        request: Request, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
    ) -> JSON:
        skip, limit = page_params(request)
        fields = service.list_fields(db, actor.organization_id, object_type)
        return respond(page(map(serialize_field, fields[skip : skip + limit + 1]), limit), request)

    def create_custom_field(
        body: FieldCreate, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
    ) -> JSON:
        _require_admin(actor)
        return respond(serialize_field(service.create_field(db, actor, object_type, body)))

    def get_custom_field(
        field_id: str,
        request: Request,
        db: Session = Depends(get_db),
        actor: Actor = Depends(get_actor),
    ) -> JSON:
        field = service.get_field(db, actor.organization_id, object_type, field_id)
        return respond(serialize_field(field), request)

    def update_custom_field(
        field_id: str,
        body: FieldUpdate,
        db: Session = Depends(get_db),
        actor: Actor = Depends(get_actor),
    ) -> JSON:
        _require_admin(actor)
        field = service.get_field(db, actor.organization_id, object_type, field_id)
        service.update_field(db, actor, field, body)
        return respond(serialize_field(field))

    def delete_custom_field(
        field_id: str, db: Session = Depends(get_db), actor: Actor = Depends(get_actor)
    ) -> JSON:
        _require_admin(actor)
        field = service.get_field(db, actor.organization_id, object_type, field_id)
        service.delete_field(db, actor, field)
        return respond({})

    item = base + "{field_id}/"
    for path, endpoint, method in (
        (base, list_custom_fields, "GET"),
        (base, create_custom_field, "POST"),
        (item, get_custom_field, "GET"),
        (item, update_custom_field, "PUT"),
        (item, delete_custom_field, "DELETE"),
    ):
        name = f"{endpoint.__name__}_{object_type}"
        router.add_api_route(path, endpoint, methods=[method], name=name, operation_id=name)


for _object_type in OBJECT_TYPES:
    _add_field_routes(_object_type)


@router.get("/custom_field_schema/{object_type}/")
def get_custom_field_schema(
    object_type: str,
    request: Request,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    service.require_object_type(object_type)
    fields = service.list_fields(db, actor.organization_id, object_type)
    return respond(serialize_schema(fields), request)


@router.put("/custom_field_schema/{object_type}/")
def update_custom_field_schema(
    object_type: str,
    body: SchemaUpdate,
    db: Session = Depends(get_db),
    actor: Actor = Depends(get_actor),
) -> JSON:
    service.require_object_type(object_type)
    _require_admin(actor)
    ordered = service.reorder_fields(db, actor, object_type, [entry.id for entry in body.fields])
    return respond(serialize_schema(ordered))
