"""Membership objects and the bodies that change them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import EmailStr, Field

from clove.kit.dates import iso_utc
from clove.kit.schemas import Body, PatchBody
from clove.models import Membership, User
from clove.role.service import role_permissions
from clove.user.schemas import full_name, serialize_user


def serialize_membership(m: Membership) -> dict[str, Any]:
    return {
        "id": m.id,
        "user_id": m.user_id,
        "organization_id": m.organization_id,
        "role_id": m.role_id,
        "role": m.role_id,  # the legacy role name; the built-in roles' ids are their names
        "permissions_granted": role_permissions(m.role_id),
        "is_active": m.is_active,
        "auto_record_calls": m.auto_record_calls,
        "track_email_opens": m.track_email_opens,
        "may_workflows_impersonate": m.may_workflows_impersonate,
        "default_caller_id": None,
        "hangup_recording_url": None,
        "primary_personal_number": None,
        "onboarding_status": None,  # Clove has no onboarding flow
        "is_free": False,
        "plan_type": "self_hosted",
        "date_created": iso_utc(m.date_created),
        "date_updated": iso_utc(m.date_updated),
    }


def serialize_org_membership(m: Membership, user: User, *, expand_user: bool) -> dict[str, Any]:
    """A membership inside an organization: user fields flattened, or nested with `_expand`."""
    body = serialize_membership(m)
    if expand_user:
        body["user"] = serialize_user(user, [m.organization_id])
    else:
        body.update(
            user_email=user.email,
            user_first_name=user.first_name,
            user_last_name=user.last_name,
            user_full_name=full_name(user),
            user_phone=None,
        )
    return body


class MembershipUpdate(PatchBody):
    """PUT /membership/{id}/ and the bulk PUT: a partial update."""

    role_id: str | None = None
    auto_record_calls: Literal["unset", "enabled", "disabled"] | None = None
    track_email_opens: bool | None = None
    may_workflows_impersonate: bool | None = None


class MembershipCreate(Body):
    email: EmailStr = Field(max_length=254)
    role_id: str = Field(max_length=64)


class PinnedViews(Body):
    saved_view_ids: list[str] = Field(max_length=100)


class BulkParams(Body):
    id__in: str | list[str] = Field(max_length=10_000)

    def ids(self) -> list[str]:
        raw = self.id__in if isinstance(self.id__in, list) else self.id__in.split(",")
        return [i.strip() for i in raw if i.strip()]


class MembershipBulkUpdate(MembershipUpdate):
    """PUT /membership/ with `{"_params": {"id__in": "memb_A,memb_B"}, ...changes}`."""

    params: BulkParams = Field(alias="_params")
