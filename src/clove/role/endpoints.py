from __future__ import annotations

from fastapi import APIRouter, Request

from clove.errors import object_not_found
from clove.kit.http import JSON, TransactionRoute, page, page_params, respond
from clove.role.service import BUILTIN_ROLES, serialize_role

router = APIRouter(route_class=TransactionRoute)


@router.get("/role/")
def list_roles(request: Request) -> JSON:
    skip, limit = page_params(request)
    roles = [serialize_role(r) for r in BUILTIN_ROLES][skip : skip + limit + 1]
    return respond(page(roles, limit), request)


@router.get("/role/{role_id}/")
def get_role(role_id: str, request: Request) -> JSON:
    if role_id not in BUILTIN_ROLES:
        raise object_not_found("Role")
    return respond(serialize_role(role_id), request)
