from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from clove.auth.service import AuthContext
from clove.errors import BadRequest, object_not_found
from clove.kit.dates import iso_utc
from clove.kit.http import JSON, TransactionRoute, get_auth, get_db, page, page_params, respond
from clove.membership.schemas import serialize_membership
from clove.models import ConnectedAccount, Membership, Organization, PhoneNumber, User
from clove.organization.service import organization_body
from clove.user.schemas import serialize_user

router = APIRouter(route_class=TransactionRoute)

ORDERINGS = {
    "last_name,first_name": (User.last_name, User.first_name, User.id),
    "first_name,last_name": (User.first_name, User.last_name, User.id),
}


# Built once: building a statement costs about as much as running it (bench/README.md).
ME = (
    select(User, Membership, Organization)
    .join(Membership, Membership.user_id == User.id)
    .join(Organization, Organization.id == Membership.organization_id)
    .where(Membership.id == bindparam("membership_id"))
)


@router.get("/me/")
def get_me(
    request: Request, db: Session = Depends(get_db), ctx: AuthContext = Depends(get_auth)
) -> JSON:
    # Scoped to the organization of the credential: one organization's key
    # never reveals another organization, even the same user's.
    row = db.execute(ME, {"membership_id": ctx.membership_id}).first()
    if row is None:
        raise object_not_found("User")
    user, membership, org = row
    body = serialize_user(user, [org.id])
    body.update(
        organizations=[organization_body(db, org, expand_user=False)],
        memberships=[serialize_membership(membership)],
        email_accounts=_email_accounts(db, ctx),
        phone_numbers=_phone_numbers(db, ctx),
        last_used_timezone=user.last_used_timezone,
    )
    return respond(body, request)


def _email_accounts(db: Session, ctx: AuthContext) -> list[dict[str, Any]]:
    """The caller's connected accounts in this organization, as `/me/` summarises them."""
    accounts = db.scalars(
        select(ConnectedAccount)
        .where(
            ConnectedAccount.organization_id == ctx.organization_id,
            ConnectedAccount.user_id == ctx.user_id,
        )
        .order_by(ConnectedAccount.date_created, ConnectedAccount.id)
    )
    return [
        {
            "_type": a.type,
            "id": a.id,
            "identities": list(a.identities or []),
            "organization_id": a.organization_id,
            "user_id": a.user_id,
        }
        for a in accounts
    ]


def _phone_numbers(db: Session, ctx: AuthContext) -> list[dict[str, Any]]:
    """The caller's personal numbers in this organization."""
    phones = db.scalars(
        select(PhoneNumber)
        .where(
            PhoneNumber.organization_id == ctx.organization_id,
            PhoneNumber.user_id == ctx.user_id,
        )
        .order_by(PhoneNumber.date_created, PhoneNumber.id)
    )
    return [
        {
            "id": p.id,
            "number": p.number,
            "organization_id": p.organization_id,
            "date_created": iso_utc(p.date_created),
            "date_updated": iso_utc(p.date_updated),
        }
        for p in phones
    ]


@router.get("/user/")
def list_users(
    request: Request, db: Session = Depends(get_db), ctx: AuthContext = Depends(get_auth)
) -> JSON:
    skip, limit = page_params(request)
    order = request.query_params.get("_order_by")
    if order is not None and order not in ORDERINGS:
        raise BadRequest("_order_by must be one of: " + ", ".join(ORDERINGS))
    query = (
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.organization_id == ctx.organization_id)
        .order_by(*(ORDERINGS[order] if order else (User.date_created, User.id)))
        .offset(skip)
        .limit(limit + 1)
    )
    users = [serialize_user(u, [ctx.organization_id]) for u in db.scalars(query)]
    return respond(page(users, limit), request)


@router.get("/user/{user_id}/")
def get_user(
    user_id: str,
    request: Request,
    db: Session = Depends(get_db),
    ctx: AuthContext = Depends(get_auth),
) -> JSON:
    user = db.scalars(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(User.id == user_id, Membership.organization_id == ctx.organization_id)
    ).first()
    if user is None:
        raise object_not_found("User")
    return respond(serialize_user(user, [ctx.organization_id]), request)
