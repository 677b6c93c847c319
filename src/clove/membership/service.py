"""Memberships: roles, settings, deactivation, and invitations by OAuth apps."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clove.auth.service import AuthContext
from clove.errors import BadRequest, Forbidden, field_error, object_not_found
from clove.kit.dates import utcnow
from clove.kit.ids import new_id
from clove.membership.schemas import MembershipCreate, MembershipUpdate
from clove.models import Membership, User
from clove.organization.service import get_or_create_user
from clove.role.service import BUILTIN_ROLES


def require_admin(ctx: AuthContext) -> None:
    if not ctx.is_admin:
        raise Forbidden("You need the Manage Organization permission to manage memberships.")


def get_membership(session: Session, ctx: AuthContext, membership_id: str) -> Membership:
    membership = session.scalars(
        select(Membership).where(
            Membership.id == membership_id, Membership.organization_id == ctx.organization_id
        )
    ).first()
    if membership is None:
        raise object_not_found("Membership")
    return membership


def _check_role(role_id: str) -> None:
    if role_id not in BUILTIN_ROLES:
        raise field_error("role_id", f"Unknown role: {role_id!r}. Use one of: admin, user.")


def _ensure_an_admin_remains(session: Session, org_id: str, losing: Sequence[str]) -> None:
    """Refuse a change that would leave the organization without an active admin."""
    remaining = session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(
            Membership.organization_id == org_id,
            Membership.role_id == "admin",
            Membership.is_active,
            Membership.id.not_in(losing),
        )
    )
    if not remaining:
        raise BadRequest("An organization must keep at least one active admin.")


def update_memberships(
    session: Session, ctx: AuthContext, memberships: Sequence[Membership], changes: MembershipUpdate
) -> None:
    """Applies the same partial update to each membership (flushes)."""
    require_admin(ctx)
    values = changes.changes()
    if "role_id" in values:
        _check_role(values["role_id"])
        if values["role_id"] != "admin":
            _ensure_an_admin_remains(
                session, ctx.organization_id, [m.id for m in memberships if m.role_id == "admin"]
            )
    now = utcnow()
    for membership in memberships:
        for field, value in values.items():
            setattr(membership, field, value)
        membership.date_updated = now
    session.flush()


def memberships_by_ids(session: Session, ctx: AuthContext, ids: list[str]) -> list[Membership]:
    """The caller's organization's memberships among `ids`; foreign ids are simply not found."""
    if not ids:
        return []
    return list(
        session.scalars(
            select(Membership).where(
                Membership.id.in_(ids), Membership.organization_id == ctx.organization_id
            )
        )
    )


def deactivate(session: Session, ctx: AuthContext, membership: Membership) -> None:
    require_admin(ctx)
    if membership.role_id == "admin" and membership.is_active:
        _ensure_an_admin_remains(session, ctx.organization_id, [membership.id])
    membership.is_active = False
    membership.date_updated = utcnow()
    session.flush()


def invite(session: Session, ctx: AuthContext, body: MembershipCreate) -> Membership:
    """POST /membership/: OAuth apps only, as in Close; adds (or reactivates) a member."""
    if ctx.oauth_client_id is None:
        raise Forbidden("This endpoint is only available to OAuth applications.")
    require_admin(ctx)
    _check_role(body.role_id)
    if body.role_id == "admin":
        raise Forbidden("A role that grants Manage Organization cannot be assigned this way.")
    user = get_or_create_user(session, str(body.email))
    membership = session.scalars(
        select(Membership).where(
            Membership.organization_id == ctx.organization_id, Membership.user_id == user.id
        )
    ).first()
    if membership is not None and membership.is_active:
        raise field_error("email", "This user is already a member of the organization.")
    if membership is None:
        membership = Membership(
            id=new_id("memb"), organization_id=ctx.organization_id, user_id=user.id
        )
        session.add(membership)
    membership.role_id = body.role_id
    membership.is_active = True
    membership.date_updated = utcnow()
    session.flush()
    return membership


def set_pinned_views(
    session: Session, ctx: AuthContext, membership: Membership, ids: list[str]
) -> None:
    if membership.user_id != ctx.user_id and not ctx.is_admin:
        raise Forbidden("You can only change your own pinned views.")
    membership.pinned_views = list(dict.fromkeys(ids))
    membership.date_updated = utcnow()
    session.flush()


def active_members_by_email(
    session: Session, email: str, organization_id: str | None = None
) -> list[Membership]:
    """Active memberships of the user with this email (in one organization, if given)."""
    query = (
        select(Membership)
        .join(User, User.id == Membership.user_id)
        .where(User.email_lower == email.strip().lower(), Membership.is_active)
    )
    if organization_id:
        query = query.where(Membership.organization_id == organization_id)
    return list(session.scalars(query))
