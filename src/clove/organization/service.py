"""Organizations and their first admin."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from clove.api_key.service import create_api_key
from clove.auth.service import AuthContext
from clove.errors import Forbidden, object_not_found
from clove.kit.dates import utcnow
from clove.kit.ids import new_id
from clove.lead_status.schemas import serialize_status
from clove.lead_status.service import create_default_statuses, list_statuses
from clove.membership.schemas import serialize_org_membership
from clove.models import ApiKey, Membership, Organization, User
from clove.organization.schemas import OrganizationUpdate, serialize_organization


def get_or_create_user(
    session: Session, email: str, first_name: str = "", last_name: str = ""
) -> User:
    user = session.scalars(select(User).where(User.email_lower == email.strip().lower())).first()
    if user is None:
        user = User(
            id=new_id("user"),
            email=email.strip(),
            email_lower=email.strip().lower(),
            first_name=first_name,
            last_name=last_name,
        )
        session.add(user)
        session.flush()
    return user


def create_organization(
    session: Session, name: str, email: str, first_name: str = "", last_name: str = ""
) -> tuple[Organization, User, ApiKey, str]:
    """Flushes an organization, its admin user and membership, and an API key for them."""
    user = get_or_create_user(session, email, first_name, last_name)
    org = Organization(id=new_id("orga"), name=name, created_by=user.id, updated_by=user.id)
    session.add(org)
    session.flush()
    session.add(
        Membership(id=new_id("memb"), organization_id=org.id, user_id=user.id, role_id="admin")
    )
    create_default_statuses(session, org.id)
    key, secret = create_api_key(session, org.id, user.id, name="Created by clove init")
    return org, user, key, secret


# Built once: building a statement costs about as much as running it (bench/README.md).
MEMBERS = (
    select(Membership, User)
    .join(User, User.id == Membership.user_id)
    .where(Membership.organization_id == bindparam("org_id"))
    .order_by(Membership.date_created, Membership.id)
)


def organization_body(session: Session, org: Organization, *, expand_user: bool) -> dict[str, Any]:
    rows = session.execute(MEMBERS, {"org_id": org.id}).all()
    active = [
        serialize_org_membership(m, u, expand_user=expand_user) for m, u in rows if m.is_active
    ]
    inactive = [
        serialize_org_membership(m, u, expand_user=expand_user) for m, u in rows if not m.is_active
    ]
    statuses = [serialize_status(s) for s in list_statuses(session, org.id)]
    return serialize_organization(org, active, inactive, statuses)


def get_organization(session: Session, ctx: AuthContext, org_id: str) -> Organization:
    """The caller's organization; any other id is a 404, whether it exists or not."""
    if org_id != ctx.organization_id:
        raise object_not_found("Organization")
    org = session.get(Organization, org_id)
    if org is None:
        raise object_not_found("Organization")
    return org


def update_organization(
    session: Session, ctx: AuthContext, org: Organization, changes: OrganizationUpdate
) -> None:
    if not ctx.is_admin:
        raise Forbidden("You need the Manage Organization permission to change the organization.")
    for field, value in changes.changes().items():
        setattr(org, field, value)
    org.updated_by = ctx.user_id
    org.date_updated = utcnow()
    session.flush()
