"""Send As: a user lets other members of the organization send email from their accounts.

Only the people involved see an association; only the allowing user creates one. Close does
not log events for these, so none are recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from sqlalchemy import Table, delete, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from clove.errors import BadRequest, ValidationFailed, field_error, object_not_found
from clove.event.service import Actor
from clove.kit.ids import new_id
from clove.models import ConnectedAccount, Membership, SendAs

NOT_YOURS = "allowing_user_id must be your own user id."


def can_send_from(
    session: Session, organization_id: str, user_id: str, account: ConnectedAccount
) -> bool:
    """Whether `user_id` may send from `account`: it is theirs, or its owner (still an active
    member) granted them Send As."""
    if account.organization_id != organization_id:
        return False
    if account.user_id == user_id:
        return True
    granted = select(SendAs.id).where(
        SendAs.organization_id == organization_id,
        SendAs.allowing_user_id == account.user_id,
        SendAs.allowed_user_id == user_id,
    )
    owner_active = select(Membership.id).where(
        Membership.organization_id == organization_id,
        Membership.user_id == account.user_id,
        Membership.is_active,
    )
    return bool(session.scalar(select(exists(granted) & exists(owner_active))))


# --- Reading -------------------------------------------------------------------------------------


def list_send_as(
    session: Session,
    actor: Actor,
    *,
    allowing_user_id: str | None,
    allowed_user_id: str | None,
    skip: int,
    limit: int,
) -> list[SendAs]:
    """Up to `limit + 1` associations the caller is part of; by default those they granted."""
    if allowing_user_id is None and allowed_user_id is None:
        allowing_user_id = actor.user_id
    if actor.user_id not in (allowing_user_id, allowed_user_id):
        raise BadRequest("allowing_user_id or allowed_user_id must be your own user id.")
    query = select(SendAs).where(SendAs.organization_id == actor.organization_id)
    if allowing_user_id is not None:
        query = query.where(SendAs.allowing_user_id == allowing_user_id)
    if allowed_user_id is not None:
        query = query.where(SendAs.allowed_user_id == allowed_user_id)
    query = query.order_by(SendAs.allowing_user_id, SendAs.allowed_user_id, SendAs.id)
    return list(session.scalars(query.offset(skip).limit(limit + 1)))


def get_send_as(session: Session, actor: Actor, association_id: str) -> SendAs:
    """An association of the caller's organization that the caller is part of, else 404."""
    association = session.scalars(
        select(SendAs).where(
            SendAs.id == association_id, SendAs.organization_id == actor.organization_id
        )
    ).first()
    involved = association is not None and actor.user_id in (
        association.allowing_user_id,
        association.allowed_user_id,
    )
    if association is None or not involved:
        raise object_not_found("SendAs")
    return association


def granted_by(session: Session, actor: Actor) -> list[SendAs]:
    query = (
        select(SendAs)
        .where(
            SendAs.organization_id == actor.organization_id,
            SendAs.allowing_user_id == actor.user_id,
        )
        .order_by(SendAs.allowed_user_id, SendAs.id)
    )
    return list(session.scalars(query))


# --- Writing -------------------------------------------------------------------------------------


def create_send_as(
    session: Session, actor: Actor, allowing_user_id: str, allowed_user_id: str
) -> SendAs:
    """Flushes a new association granted by the caller; 400 if it already exists."""
    if allowing_user_id != actor.user_id:
        raise BadRequest(NOT_YOURS)
    _check_allowed_users(session, actor, [allowed_user_id], "allowed_user_id")
    if _insert_missing(session, actor, [allowed_user_id]) == 0:
        raise BadRequest("This Send As association already exists.")
    created = session.scalars(
        select(SendAs).where(
            SendAs.organization_id == actor.organization_id,
            SendAs.allowing_user_id == actor.user_id,
            SendAs.allowed_user_id == allowed_user_id,
        )
    ).one()
    return created


def delete_send_as(session: Session, association: SendAs) -> None:
    session.delete(association)
    session.flush()


def delete_send_as_between(
    session: Session, actor: Actor, allowing_user_id: str | None, allowed_user_id: str | None
) -> None:
    """Removes the caller's grant to `allowed_user_id`; 404 when there is none."""
    if not allowing_user_id or not allowed_user_id:
        raise BadRequest("Send both allowing_user_id and allowed_user_id.")
    if allowing_user_id != actor.user_id:
        raise BadRequest(NOT_YOURS)
    result = session.execute(
        delete(SendAs).where(
            SendAs.organization_id == actor.organization_id,
            SendAs.allowing_user_id == allowing_user_id,
            SendAs.allowed_user_id == allowed_user_id,
        )
    )
    if not getattr(result, "rowcount", 0):
        raise object_not_found("SendAs")


def bulk_update_send_as(
    session: Session, actor: Actor, allowed_user_ids: list[str], disallowed_user_ids: list[str]
) -> list[SendAs]:
    """Grants the first list and revokes the second in one go; every association the caller
    grants afterwards. Granting twice or revoking what is not granted changes nothing."""
    allowed, disallowed = _unique(allowed_user_ids), _unique(disallowed_user_ids)
    both = sorted(set(allowed) & set(disallowed))
    if both:
        raise ValidationFailed(errors=[f"Users both allowed and disallowed: {', '.join(both)}."])
    _check_allowed_users(session, actor, allowed, "allowed_user_ids")
    if disallowed:
        session.execute(
            delete(SendAs).where(
                SendAs.organization_id == actor.organization_id,
                SendAs.allowing_user_id == actor.user_id,
                SendAs.allowed_user_id.in_(disallowed),
            )
        )
    _insert_missing(session, actor, allowed)
    session.expire_all()
    return granted_by(session, actor)


def _check_allowed_users(session: Session, actor: Actor, user_ids: list[str], field: str) -> None:
    """Each must be another active member of the caller's organization."""
    if actor.user_id in user_ids:
        raise field_error(field, "You cannot allow yourself to send as you.")
    if not user_ids:
        return
    members = set(
        session.scalars(
            select(Membership.user_id).where(
                Membership.organization_id == actor.organization_id,
                Membership.user_id.in_(user_ids),
                Membership.is_active,
            )
        )
    )
    unknown = [u for u in user_ids if u not in members]
    if unknown:
        raise field_error(field, f"Not an active member of the organization: {unknown[0]}.")


def _insert_missing(session: Session, actor: Actor, allowed_user_ids: list[str]) -> int:
    """Inserts the grants that do not exist yet; the unique constraint settles races with
    concurrent requests (ON CONFLICT DO NOTHING). Returns how many rows were inserted."""
    if not allowed_user_ids:
        return 0
    rows = [
        {
            "id": new_id("sdas"),
            "organization_id": actor.organization_id,
            "allowing_user_id": actor.user_id,
            "allowed_user_id": user_id,
        }
        for user_id in allowed_user_ids
    ]
    table = cast(Table, SendAs.__table__)  # Core: ON CONFLICT and RETURNING, no ORM bulk path
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(table).values(rows).on_conflict_do_nothing().returning(table.c.id)
    return len(session.execute(statement).all())


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(i.strip() for i in ids if i.strip()))
