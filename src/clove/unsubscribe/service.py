"""Unsubscribed addresses: kept lower-cased per organization; sequences and bulk email skip
them, and contact email entries show `is_unsubscribed`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from clove.errors import NotFound
from clove.event.service import Actor, record_event
from clove.models import UnsubscribedEmail

OBJECT_TYPE = "unsubscribed_email"


def list_unsubscribed(
    session: Session, organization_id: str, skip: int, limit: int
) -> list[UnsubscribedEmail]:
    """Up to `limit + 1` addresses, oldest first."""
    return list(
        session.scalars(
            select(UnsubscribedEmail)
            .where(UnsubscribedEmail.organization_id == organization_id)
            .order_by(UnsubscribedEmail.date_created, UnsubscribedEmail.email_lower)
            .offset(skip)
            .limit(limit + 1)
        )
    )


def unsubscribe(session: Session, actor: Actor, email: str) -> UnsubscribedEmail:
    """Adds the address (once: unsubscribing it again changes nothing), with its event."""
    found = _find(session, actor.organization_id, email)
    if found is not None:
        return found
    row = UnsubscribedEmail(
        organization_id=actor.organization_id, email=email, email_lower=email.lower()
    )
    session.add(row)
    session.flush()
    _record(session, actor, "created", {"email": email}, None)
    return row


def resubscribe(session: Session, actor: Actor, email: str) -> str:
    """Removes the address, with its event; 404 when it is not unsubscribed."""
    row = _find(session, actor.organization_id, email)
    if row is None:
        raise NotFound(f"{email} is not unsubscribed.")
    session.delete(row)
    session.flush()
    _record(session, actor, "deleted", None, {"email": row.email})
    return row.email


def _find(session: Session, organization_id: str, email: str) -> UnsubscribedEmail | None:
    return session.get(UnsubscribedEmail, (organization_id, email.lower()))


def _record(
    session: Session,
    actor: Actor,
    action: str,
    data: dict[str, str] | None,
    previous: dict[str, str] | None,
) -> None:
    record_event(
        session,
        actor,
        object_type=OBJECT_TYPE,
        action=action,
        object_id=None,
        lead_id=None,
        data=data,
        previous_data=previous,
    )
