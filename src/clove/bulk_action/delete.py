"""`/bulk_action/delete/`: delete the matching leads, or the matching contacts (close-api.md §3.6).

A chunk loads its objects and what they embed in a fixed number of queries, writes one
`deleted` event per object (the event `DELETE /lead/{id}/` or `DELETE /contact/{id}/` writes,
plus `meta.bulk_action_id`) in one INSERT, then removes the rows with one DELETE per table.
Tasks, email activities and sequence subscriptions go with their lead or contact through the
foreign keys' ON DELETE CASCADE, as they do for a single delete.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal

from sqlalchemy import Select, and_, delete, func, insert, select, update
from sqlalchemy.orm import Session

from clove.bulk_action.kinds import BulkActionBody, Progress
from clove.config import get_settings
from clove.contact import service as contact_service
from clove.errors import ValidationFailed
from clove.event.service import Actor, changes, event_values
from clove.lead import service as lead_service
from clove.models import BulkAction, BulkActionItem, Contact, Event, Lead, LeadAddress

ObjectType = Literal["lead", "contact", "call", "custom_activity", "form_submission"]
# Types in Close's BulkActionObjectType enum that Clove has no objects of, in plural words.
MISSING = {
    "call": "calls",
    "custom_activity": "custom activities",
    "form_submission": "form submissions",
}


class DeleteBody(BulkActionBody):
    bulk_object_type: ObjectType = "lead"


class BulkDelete:
    name: ClassVar[str] = "delete"
    prefix: ClassVar[str] = "bulkdelete"
    body: ClassVar[type[BulkActionBody]] = DeleteBody

    # --- Request --------------------------------------------------------------------------------

    def validate(self, session: Session, actor: Actor, body: Any) -> dict[str, Any]:
        assert isinstance(body, DeleteBody)
        missing = MISSING.get(body.bulk_object_type)
        if missing is not None:
            message = (
                f"Deleting {body.bulk_object_type} objects is not supported: "
                f"Clove has no {missing} yet."
            )
            raise ValidationFailed(field_errors={"bulk_object_type": message})
        return {"bulk_object_type": body.bulk_object_type}

    def result_type(self, params: dict[str, Any]) -> str:
        return str(params.get("bulk_object_type", "lead"))

    def wire(self, action: BulkAction) -> dict[str, Any]:
        return {"bulk_object_type": (action.params or {}).get("bulk_object_type", "lead")}

    # --- Work -----------------------------------------------------------------------------------

    def count_objects(self, session: Session, action: BulkAction, items: Select[Any]) -> int:
        return session.scalar(select(func.count()).select_from(items.subquery())) or 0

    def process(
        self, session: Session, action: BulkAction, actor: Actor, items: Select[Any], now: datetime
    ) -> Progress:
        # Every item counts as processed: one deleted meanwhile has nothing left to delete.
        progress = Progress(objects=self.count_objects(session, action, items))
        if self.result_type(action.params) == "lead":
            _delete_leads(session, action, actor, items, now)
        else:
            progress.leads = _leads_finished(session, action, items)
            _delete_contacts(session, action, actor, items, now)
        return progress

    def preview(
        self, session: Session, action: BulkAction, items: Select[Any], limit: int
    ) -> tuple[Progress, list[dict[str, Any]]]:
        org = action.organization_id
        progress = Progress(objects=self.count_objects(session, action, items))
        if self.result_type(action.params) == "lead":
            rows = session.execute(
                select(Lead.id, Lead.name)
                .where(Lead.id.in_(items), Lead.organization_id == org)
                .order_by(Lead.id)
                .limit(limit)
            )
            return progress, [{"id": i, "name": name} for i, name in rows]
        progress.leads = (
            session.scalar(
                select(func.count(func.distinct(Contact.lead_id))).where(
                    Contact.id.in_(items), Contact.organization_id == org
                )
            )
            or 0
        )
        rows = session.execute(
            select(Contact.id, Contact.name, Contact.lead_id)
            .where(Contact.id.in_(items), Contact.organization_id == org)
            .order_by(Contact.id)
            .limit(limit)
        )
        return progress, [{"id": i, "name": name, "lead_id": lead} for i, name, lead in rows]


# --- Leads ---------------------------------------------------------------------------------------


def _delete_leads(
    session: Session, action: BulkAction, actor: Actor, items: Select[Any], now: datetime
) -> None:
    """Deletes the chunk's leads of the action's organization with their contacts and
    addresses, writing the `deleted` events `DELETE /lead/{id}/` writes."""
    leads = _locked(session, Lead, action, items)
    if not leads:
        return
    ids = [lead.id for lead in leads]
    objects = lead_service.serialize_all(
        session, lead_service.load_parts(session, leads), get_settings().public_url
    )
    events = []
    for lead in objects:
        for contact in lead["contacts"]:
            events.append(_deleted(actor, action, "contact", contact, lead["id"], now))
        events.append(_deleted(actor, action, "lead", lead, lead["id"], now))
    session.execute(insert(Event), events)
    for model in contact_service.CHILD_MODELS:
        session.execute(delete(model).where(model.lead_id.in_(ids)))
    session.execute(delete(Contact).where(Contact.lead_id.in_(ids)))
    session.execute(delete(LeadAddress).where(LeadAddress.lead_id.in_(ids)))
    session.execute(delete(Lead).where(Lead.id.in_(ids)))
    _forget(session, leads)


# --- Contacts ------------------------------------------------------------------------------------


def _delete_contacts(
    session: Session, action: BulkAction, actor: Actor, items: Select[Any], now: datetime
) -> None:
    """Deletes the chunk's contacts of the action's organization with their emails, phones and
    urls, as `DELETE /contact/{id}/` does: a contact `deleted` event each, and their leads
    touched with one lead `updated` event each."""
    contacts = _locked(session, Contact, action, items)
    if not contacts:
        return
    ids = [contact.id for contact in contacts]
    lead_ids = sorted({contact.lead_id for contact in contacts})
    public_url = get_settings().public_url
    leads = session.scalars(select(Lead).where(Lead.id.in_(lead_ids)).order_by(Lead.id)).all()
    before = lead_service.serialize_all(
        session, lead_service.load_parts(session, leads), public_url
    )
    events = [
        _deleted(actor, action, "contact", data, data["lead_id"], now)
        for data in contact_service.serialized(session, contacts)
    ]
    for model in contact_service.CHILD_MODELS:
        session.execute(delete(model).where(model.contact_id.in_(ids)))
    session.execute(delete(Contact).where(Contact.id.in_(ids)))
    _forget(session, contacts)
    session.execute(
        update(Lead)
        .where(Lead.id.in_(lead_ids))
        .values(date_updated=now, updated_by=actor.user_id)
        .execution_options(synchronize_session=False)
    )
    _forget(session, leads)
    leads = session.scalars(select(Lead).where(Lead.id.in_(lead_ids)).order_by(Lead.id)).all()
    after = lead_service.serialize_all(session, lead_service.load_parts(session, leads), public_url)
    for old, new in zip(before, after, strict=True):
        changed, previous = changes(old, new)
        if changed:
            events.append(
                event_values(
                    actor,
                    object_type="lead",
                    action="updated",
                    object_id=new["id"],
                    lead_id=new["id"],
                    data=new,
                    previous_data=previous,
                    changed_fields=changed,
                    meta={"bulk_action_id": action.id},
                    now=now,
                )
            )
    session.execute(insert(Event), events)


def _leads_finished(session: Session, action: BulkAction, items: Select[Any]) -> int:
    """Leads of the chunk's contacts with no contact left in later chunks: summed over the
    chunks, each lead of the action counts once (earlier chunks' items are gone by now)."""
    later = (
        select(Contact.lead_id)
        .join(BulkActionItem, BulkActionItem.object_id == Contact.id)
        .where(BulkActionItem.bulk_action_id == action.id, BulkActionItem.object_id.not_in(items))
    )
    return (
        session.scalar(
            select(func.count(func.distinct(Contact.lead_id))).where(
                and_(
                    Contact.id.in_(items),
                    Contact.organization_id == action.organization_id,
                    Contact.lead_id.not_in(later),
                )
            )
        )
        or 0
    )


# --- Shared --------------------------------------------------------------------------------------


def _locked(
    session: Session, model: type[Lead] | type[Contact], action: BulkAction, items: Select[Any]
) -> Sequence[Any]:
    """The chunk's rows of `model` that still exist in the action's organization, locked
    (PostgreSQL) so that no one changes them between their events and their deletion."""
    return session.scalars(
        select(model)
        .where(model.id.in_(items), model.organization_id == action.organization_id)
        .order_by(model.id)
        .with_for_update()
    ).all()


def _deleted(
    actor: Actor,
    action: BulkAction,
    object_type: str,
    previous: dict[str, Any],
    lead_id: str,
    now: datetime,
) -> dict[str, Any]:
    """The row of a `deleted` event as `record_deletion` writes it, plus `meta.bulk_action_id`."""
    return event_values(
        actor,
        object_type=object_type,
        action="deleted",
        object_id=previous["id"],
        lead_id=lead_id,
        data=None,
        previous_data=previous,
        meta={"bulk_action_id": action.id},
        now=now,
    )


def _forget(session: Session, rows: Sequence[Any]) -> None:
    """Drops rows deleted or changed by plain SQL from the session, so it never acts on them."""
    for row in rows:
        session.expunge(row)
