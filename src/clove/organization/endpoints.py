from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.auth.service import AuthContext
from clove.errors import BadRequest
from clove.kit.http import JSON, TransactionRoute, get_auth, get_db, respond
from clove.organization.schemas import OrganizationUpdate
from clove.organization.service import get_organization, organization_body, update_organization

router = APIRouter(route_class=TransactionRoute)

EXPANDABLE = {"memberships__user", "inactive_memberships__user"}


def _expand_user(request: Request) -> bool:
    raw = request.query_params.get("_expand", "")
    wanted = {e.strip() for e in raw.split(",") if e.strip()}
    unknown = wanted - EXPANDABLE
    if unknown:
        raise BadRequest("Cannot expand: " + ", ".join(sorted(unknown)))
    return bool(wanted)


@router.get("/organization/{org_id}/")
def get_org(
    org_id: str,
    request: Request,
    db: Session = Depends(get_db),
    ctx: AuthContext = Depends(get_auth),
) -> JSON:
    expand = _expand_user(request)
    org = get_organization(db, ctx, org_id)
    return respond(organization_body(db, org, expand_user=expand), request)


@router.put("/organization/{org_id}/")
def put_org(
    org_id: str,
    body: OrganizationUpdate,
    request: Request,
    db: Session = Depends(get_db),
    ctx: AuthContext = Depends(get_auth),
) -> JSON:
    expand = _expand_user(request)
    org = get_organization(db, ctx, org_id)
    update_organization(db, ctx, org, body)
    return respond(organization_body(db, org, expand_user=expand), request)
