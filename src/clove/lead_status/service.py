"""Lead statuses: Close's four defaults for every new organization, ordered by position."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from clove.errors import BadRequest, field_error, object_not_found
from clove.event.service import Actor, record_deletion, record_event, record_update
from clove.kit.dates import utcnow
from clove.kit.ids import new_id
from clove.lead_status.schemas import serialize_status
from clove.models import Lead, LeadStatus

DEFAULT_STATUSES = ("Potential", "Bad Fit", "Qualified", "Customer")


def create_default_statuses(session: Session, organization_id: str) -> list[LeadStatus]:
    """Flushes Close's default statuses for a new organization."""
    statuses = [
        LeadStatus(id=new_id("stat"), organization_id=organization_id, label=label, position=i)
        for i, label in enumerate(DEFAULT_STATUSES)
    ]
    session.add_all(statuses)
    session.flush()
    return statuses


STATUSES = (
    select(LeadStatus)
    .where(LeadStatus.organization_id == bindparam("org_id"))
    .order_by(LeadStatus.position, LeadStatus.date_created, LeadStatus.id)
)


def list_statuses(session: Session, organization_id: str) -> list[LeadStatus]:
    return list(session.scalars(STATUSES, {"org_id": organization_id}))


def get_status(session: Session, organization_id: str, status_id: str) -> LeadStatus:
    status = session.scalars(
        select(LeadStatus).where(
            LeadStatus.id == status_id, LeadStatus.organization_id == organization_id
        )
    ).first()
    if status is None:
        raise object_not_found("Status")
    return status


def _check_label_free(session: Session, organization_id: str, label: str, own_id: str = "") -> None:
    taken = session.scalar(
        select(LeadStatus.id).where(
            LeadStatus.organization_id == organization_id,
            func.lower(LeadStatus.label) == label.strip().lower(),
            LeadStatus.id != own_id,
        )
    )
    if taken:
        raise field_error("label", "A lead status with this label already exists.")


def create_status(session: Session, actor: Actor, label: str) -> LeadStatus:
    """Flushes a new status at the end of the order, with its event."""
    label = label.strip()
    _check_label_free(session, actor.organization_id, label)
    last = session.scalar(
        select(func.max(LeadStatus.position)).where(
            LeadStatus.organization_id == actor.organization_id
        )
    )
    status = LeadStatus(
        id=new_id("stat"),
        organization_id=actor.organization_id,
        label=label,
        position=(last if last is not None else -1) + 1,
    )
    session.add(status)
    session.flush()
    record_event(
        session,
        actor,
        object_type="status.lead",
        action="created",
        object_id=status.id,
        lead_id=None,
        data=serialize_status(status),
    )
    return status


def rename_status(session: Session, actor: Actor, status: LeadStatus, label: str) -> None:
    label = label.strip()
    _check_label_free(session, actor.organization_id, label, status.id)
    before = serialize_status(status)
    status.label = label
    status.date_updated = utcnow()
    session.flush()
    after = serialize_status(status)
    record_update(
        session,
        actor,
        object_type="status.lead",
        before=before,
        after=after,
        lead_id=None,
    )


def delete_status(session: Session, actor: Actor, status: LeadStatus) -> None:
    in_use = session.scalar(
        select(func.count()).select_from(Lead).where(Lead.status_id == status.id)
    )
    if in_use:
        raise BadRequest(
            f"This status is used by {in_use} lead(s). Move them to another status, then delete it."
        )
    remaining = session.scalar(
        select(func.count())
        .select_from(LeadStatus)
        .where(LeadStatus.organization_id == actor.organization_id)
    )
    if remaining is not None and remaining <= 1:
        raise BadRequest("An organization needs at least one lead status.")
    data = serialize_status(status)
    session.delete(status)
    session.flush()
    record_deletion(
        session,
        actor,
        object_type="status.lead",
        previous=data,
        lead_id=None,
    )
