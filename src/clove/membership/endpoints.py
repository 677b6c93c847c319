from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from clove.auth.service import AuthContext
from clove.kit.http import JSON, TransactionRoute, after_commit, get_auth, get_db, respond
from clove.membership import service
from clove.membership.schemas import (
    MembershipBulkUpdate,
    MembershipCreate,
    MembershipUpdate,
    PinnedViews,
    serialize_membership,
)

router = APIRouter(route_class=TransactionRoute)


@router.post("/membership/")
def create_membership(
    body: MembershipCreate,
    request: Request,
    db: Session = Depends(get_db),
    ctx: AuthContext = Depends(get_auth),
) -> JSON:
    return respond(serialize_membership(service.invite(db, ctx, body)), request)


@router.put("/membership/")
def bulk_update_memberships(
    body: MembershipBulkUpdate,
    request: Request,
    db: Session = Depends(get_db),
    ctx: AuthContext = Depends(get_auth),
) -> JSON:
    memberships = service.memberships_by_ids(db, ctx, body.params.ids())
    changes = MembershipUpdate(**{k: v for k, v in body.changes().items() if k != "params"})
    service.update_memberships(db, ctx, memberships, changes)
    # Roles are cached with credentials.
    after_commit(db, request.app.state.authenticator.forget)
    return respond({"count": len(memberships)})


@router.put("/membership/{membership_id}/")
def update_membership(
    membership_id: str,
    body: MembershipUpdate,
    request: Request,
    db: Session = Depends(get_db),
    ctx: AuthContext = Depends(get_auth),
) -> JSON:
    membership = service.get_membership(db, ctx, membership_id)
    service.update_memberships(db, ctx, [membership], body)
    # Roles are cached with credentials.
    after_commit(db, request.app.state.authenticator.forget)
    return respond(serialize_membership(membership), request)


@router.delete("/membership/{membership_id}/")
def deactivate_membership(
    membership_id: str,
    request: Request,
    db: Session = Depends(get_db),
    ctx: AuthContext = Depends(get_auth),
) -> JSON:
    service.deactivate(db, ctx, service.get_membership(db, ctx, membership_id))
    after_commit(
        db, request.app.state.authenticator.forget
    )  # the member's keys stop working at once here
    return respond({})


@router.get("/membership/{membership_id}/pinned_views/")
def get_pinned_views(
    membership_id: str, db: Session = Depends(get_db), ctx: AuthContext = Depends(get_auth)
) -> JSON:
    membership = service.get_membership(db, ctx, membership_id)
    return respond({"saved_view_ids": list(membership.pinned_views or [])})


@router.put("/membership/{membership_id}/pinned_views/")
def put_pinned_views(
    membership_id: str,
    body: PinnedViews,
    db: Session = Depends(get_db),
    ctx: AuthContext = Depends(get_auth),
) -> JSON:
    membership = service.get_membership(db, ctx, membership_id)
    service.set_pinned_views(db, ctx, membership, body.saved_view_ids)
    return respond({"saved_view_ids": list(membership.pinned_views)})
