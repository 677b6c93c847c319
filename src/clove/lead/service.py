"""Leads: loading in bulk, create/update/delete, merging, and the lead side of contact changes.

A lead object embeds its contacts, so adding or removing a contact is a lead change too
(Close records a lead `updated` event when `contact_ids` changes); those operations live here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from clove.contact import service as contact_service
from clove.contact.schemas import ContactCreate, ContactFields
from clove.custom_field.service import apply_custom_values
from clove.errors import BadRequest, ValidationFailed, field_error, object_not_found
from clove.event.service import Actor, changes, record_deletion, record_event, record_update
from clove.kit.dates import utcnow
from clove.kit.ids import new_id
from clove.kit.rows import Listing, assign_changed, insert_rows
from clove.lead.schemas import (
    AddressIn,
    LeadCreate,
    LeadFields,
    LeadParts,
    LeadUpdate,
    serialize_lead,
)
from clove.lead_status.service import list_statuses
from clove.models import (
    Contact,
    ContactEmail,
    ContactPhone,
    ContactUrl,
    Lead,
    LeadAddress,
    LeadStatus,
    SequenceSubscription,
    User,
)

# --- Loading -------------------------------------------------------------------------------------


def get_lead(session: Session, organization_id: str, lead_id: str) -> Lead:
    lead = session.scalars(
        select(Lead).where(Lead.id == lead_id, Lead.organization_id == organization_id)
    ).first()
    if lead is None:
        raise object_not_found("Lead")
    return lead


def load_parts(session: Session, leads: Sequence[Lead]) -> list[LeadParts]:
    """What the leads embed, in six queries whatever their number."""
    if not leads:
        return []
    ids = [lead.id for lead in leads]
    contacts = contact_service.serialized_by_lead(session, ids)
    addresses: dict[str, list[LeadAddress]] = {lead_id: [] for lead_id in ids}
    for address in session.scalars(select(LeadAddress).where(LeadAddress.lead_id.in_(ids))):
        addresses[address.lead_id].append(address)
    status_ids = {lead.status_id for lead in leads}
    labels: dict[str, str] = {
        status_id: label
        for status_id, label in session.execute(
            select(LeadStatus.id, LeadStatus.label).where(LeadStatus.id.in_(status_ids))
        ).tuples()
    }
    return [
        LeadParts(lead, labels.get(lead.status_id, ""), contacts[lead.id], addresses[lead.id])
        for lead in leads
    ]


def user_names(session: Session, user_ids: Iterable[str | None]) -> dict[str, str]:
    """Full names of the given users, in one query."""
    wanted = {user_id for user_id in user_ids if user_id}
    if not wanted:
        return {}
    rows = session.execute(
        select(User.id, User.first_name, User.last_name).where(User.id.in_(wanted))
    ).tuples()
    return {user_id: f"{first} {last}".strip() for user_id, first, last in rows}


def serialize_all(
    session: Session, parts: Sequence[LeadParts], base_url: str
) -> list[dict[str, Any]]:
    names = user_names(session, [u for p in parts for u in (p.lead.created_by, p.lead.updated_by)])
    return [serialize_lead(p, names, base_url) for p in parts]


def lead_object(session: Session, lead: Lead, base_url: str) -> dict[str, Any]:
    """The lead as Close returns it."""
    return serialize_all(session, load_parts(session, [lead]), base_url)[0]


def list_leads(
    session: Session,
    organization_id: str,
    skip: int,
    limit: int,
    base_url: str,
    search: Listing | None = None,
) -> tuple[int, bool, list[dict[str, Any]]]:
    """(total, has_more, a page of leads: newest first, or as a search selects and sorts them),
    in a fixed number of queries."""
    where, order = search or (
        Lead.organization_id == organization_id,
        [Lead.date_created.desc(), Lead.id.desc()],
    )
    total = session.scalar(select(func.count()).select_from(Lead).where(where))
    leads = session.scalars(
        select(Lead).where(where).order_by(*order).offset(skip).limit(limit + 1)
    ).all()
    data = serialize_all(session, load_parts(session, leads[:limit]), base_url)
    return total or 0, len(leads) > limit, data


# --- Create --------------------------------------------------------------------------------------


def create_lead(session: Session, actor: Actor, base_url: str, body: LeadCreate) -> dict[str, Any]:
    """Flushes a lead with its addresses and contacts, and their `created` events."""
    status = _status_for(session, actor.organization_id, body) or _default_status(session, actor)
    return _insert_lead(session, actor, base_url, body, status, body.contacts or [])


def add_contact(
    session: Session, actor: Actor, base_url: str, body: ContactCreate
) -> dict[str, Any]:
    """Flushes a new contact with its events; returns the contact object.

    Without `lead_id` a new lead named after the contact is created (lead `created`);
    otherwise the lead gains the contact (lead `updated`, as its `contact_ids` change).
    """
    if body.lead_id is None:
        lead_body = LeadCreate(name=body.name)
        status = _default_status(session, actor)
        created = _insert_lead(session, actor, base_url, lead_body, status, [body])
        contact: dict[str, Any] = created["contacts"][0]
        return contact
    lead = contact_service.lead_of(session, actor.organization_id, body.lead_id)
    before = lead_object(session, lead, base_url)
    contact = contact_service.create_contact(session, actor, lead, body)
    _touch(lead, actor, utcnow())
    _record_lead_update(session, actor, before, lead_object(session, lead, base_url))
    session.flush()
    return contact


def _insert_lead(
    session: Session,
    actor: Actor,
    base_url: str,
    body: LeadFields,
    status: LeadStatus,
    contact_bodies: Sequence[ContactFields],
) -> dict[str, Any]:
    """Flushes the lead, its addresses and contacts with their `created` events; returns it."""
    writes = body.custom_writes()
    custom = (
        apply_custom_values(session, actor.organization_id, "lead", {}, writes) if writes else {}
    )
    now = utcnow()
    lead = Lead(
        id=new_id("lead"),
        organization_id=actor.organization_id,
        name=body.name,
        description=body.description,
        url=body.url,
        status_id=status.id,
        custom=custom,
        created_by=actor.user_id,
        updated_by=actor.user_id,
        date_created=now,
        date_updated=now,
    )
    session.add(lead)
    session.flush()  # without ORM relationships, flush order is ours: parents first
    addresses = _new_addresses(lead, body.addresses or [])
    insert_rows(session, addresses)
    contacts = contact_service.new_contacts(session, actor, lead.id, contact_bodies, now)
    session.flush()
    parts = LeadParts(lead, status.label, contact_service.serialized(session, contacts), addresses)
    data = serialize_all(session, [parts], base_url)[0]
    record_event(
        session,
        actor,
        object_type="lead",
        action="created",
        object_id=lead.id,
        lead_id=lead.id,
        data=data,
    )
    for contact in data["contacts"]:
        record_event(
            session,
            actor,
            object_type="contact",
            action="created",
            object_id=contact["id"],
            lead_id=lead.id,
            data=contact,
        )
    return data


def _new_addresses(lead: Lead, bodies: Sequence[AddressIn], first: int = 0) -> list[LeadAddress]:
    return [
        LeadAddress(
            organization_id=lead.organization_id,
            lead_id=lead.id,
            position=first + i,
            **a.model_dump(),
        )
        for i, a in enumerate(bodies)
    ]


def _default_status(session: Session, actor: Actor) -> LeadStatus:
    statuses = list_statuses(session, actor.organization_id)
    if not statuses:
        raise BadRequest("The organization has no lead status; create one first.")
    return statuses[0]


def _status_for(session: Session, organization_id: str, body: LeadFields) -> LeadStatus | None:
    """The status a body names by `status_id` or by label (`status`), or None if neither."""
    if body.status_id is not None:
        found = session.scalars(
            select(LeadStatus).where(
                LeadStatus.id == body.status_id, LeadStatus.organization_id == organization_id
            )
        ).first()
        if found is None:
            raise field_error("status_id", "Object does not exist.")
        return found
    if body.status is not None:
        label = body.status.strip().lower()
        for status in list_statuses(session, organization_id):
            if status.label.lower() == label:
                return status
        raise field_error("status", f"No lead status is labelled {body.status!r}.")
    return None


# --- Update --------------------------------------------------------------------------------------


def update_lead(
    session: Session, actor: Actor, base_url: str, lead: Lead, body: LeadUpdate
) -> dict[str, Any]:
    """Flushes a partial update (addresses given replace the stored ones) and its event.

    Nothing is recorded, and `date_updated` stays, when nothing changes.
    """
    [parts] = load_parts(session, [lead])
    names = user_names(session, [lead.created_by, lead.updated_by, actor.user_id])
    before = serialize_lead(parts, names, base_url)
    status = _status_for(session, actor.organization_id, body)
    fields = body.changes()
    values: dict[str, Any] = {k: fields[k] for k in ("name", "description", "url") if k in fields}
    writes = body.custom_writes()
    if writes:
        values["custom"] = apply_custom_values(
            session, actor.organization_id, "lead", lead.custom or {}, writes
        )
    if status is not None:
        values["status_id"], parts.status_label = status.id, status.label
    assign_changed(lead, values)
    if body.addresses is not None:
        session.execute(delete(LeadAddress).where(LeadAddress.lead_id == lead.id))
        parts.addresses = _new_addresses(lead, body.addresses)
        insert_rows(session, parts.addresses)
    after = serialize_lead(parts, names, base_url)
    if changes(before, after)[0]:
        _touch(lead, actor, utcnow())
        after = serialize_lead(parts, names, base_url)
        _record_lead_update(session, actor, before, after)
    session.flush()
    return after


def _touch(lead: Lead, actor: Actor, now: datetime) -> None:
    lead.date_updated, lead.updated_by = now, actor.user_id


def _record_lead_update(
    session: Session,
    actor: Actor,
    before: dict[str, Any],
    after: dict[str, Any],
    meta: dict[str, Any] | None = None,
) -> None:
    record_update(
        session,
        actor,
        object_type="lead",
        before=before,
        after=after,
        lead_id=after["id"],
        meta=meta,
    )


def remove_contact(session: Session, actor: Actor, base_url: str, contact: Contact) -> None:
    """Deletes a contact (contact `deleted`) and records the lead's `updated` event."""
    lead = get_lead(session, actor.organization_id, contact.lead_id)
    before = lead_object(session, lead, base_url)
    contact_service.delete_contact(session, actor, contact)
    _touch(lead, actor, utcnow())
    session.flush()
    _record_lead_update(session, actor, before, lead_object(session, lead, base_url))


# --- Delete and merge ----------------------------------------------------------------------------


def delete_lead(session: Session, actor: Actor, base_url: str, lead: Lead) -> None:
    """Deletes the lead with its contacts and addresses: a `deleted` event for each."""
    data = lead_object(session, lead, base_url)
    for contact in data["contacts"]:
        record_deletion(
            session,
            actor,
            object_type="contact",
            previous=contact,
            lead_id=lead.id,
        )
    _delete_lead_rows(session, lead)
    record_deletion(
        session,
        actor,
        object_type="lead",
        previous=data,
        lead_id=lead.id,
    )


def _delete_lead_rows(session: Session, lead: Lead) -> None:
    contact_service.delete_lead_contacts(session, lead.id)
    session.execute(delete(LeadAddress).where(LeadAddress.lead_id == lead.id))
    session.delete(lead)
    session.flush()


def merge_leads(
    session: Session, actor: Actor, base_url: str, source_id: str, destination_id: str
) -> None:
    """Moves everything of the source lead to the destination and deletes the source.

    The source's custom values fill only the destination's empty fields. Records contact
    `updated` events for the moved contacts, lead `updated` (destination), lead `deleted`
    (source) and lead `merged` (destination), all with the merge ids in `meta`.
    """
    if source_id == destination_id:
        raise ValidationFailed(["The source and the destination must be different leads."])
    source = contact_service.lead_of(session, actor.organization_id, source_id, "source")
    destination = contact_service.lead_of(
        session, actor.organization_id, destination_id, "destination"
    )
    source_before, destination_before = serialize_all(
        session, load_parts(session, [source, destination]), base_url
    )
    now = utcnow()
    _move_children(session, actor, source, destination, now)
    destination.custom = _fill_empty(destination.custom or {}, source.custom or {})
    _touch(destination, actor, now)
    session.delete(source)
    session.flush()

    meta = {"merge_source_lead_id": source.id, "merge_destination_lead_id": destination.id}
    after = lead_object(session, destination, base_url)
    moved = {c["id"]: c for c in after["contacts"]}
    for contact in source_before["contacts"]:
        record_update(
            session,
            actor,
            object_type="contact",
            before=contact,
            after=moved[contact["id"]],
            lead_id=destination.id,
            meta=meta,
        )
    _record_lead_update(session, actor, destination_before, after, meta)
    record_deletion(
        session,
        actor,
        object_type="lead",
        previous=source_before,
        lead_id=source.id,
        meta=meta,
    )
    record_event(
        session,
        actor,
        object_type="lead",
        action="merged",
        object_id=destination.id,
        lead_id=destination.id,
        data=after,
        meta=meta,
    )


def _move_children(
    session: Session, actor: Actor, source: Lead, destination: Lead, now: datetime
) -> None:
    """Set-based: the source's contacts (with their rows) and addresses join the destination."""
    session.execute(
        update(Contact)
        .where(Contact.lead_id == source.id)
        .values(lead_id=destination.id, date_updated=now, updated_by=actor.user_id)
    )
    for model in (ContactEmail, ContactPhone, ContactUrl, SequenceSubscription):
        session.execute(
            update(model).where(model.lead_id == source.id).values(lead_id=destination.id)
        )
    last = session.scalar(
        select(func.max(LeadAddress.position)).where(LeadAddress.lead_id == destination.id)
    )
    offset = 0 if last is None else last + 1
    session.execute(
        update(LeadAddress)
        .where(LeadAddress.lead_id == source.id)
        .values(lead_id=destination.id, position=LeadAddress.position + offset)
    )


def _fill_empty(destination: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """The destination's custom values, with the source's where the destination has none."""
    merged = dict(destination)
    for field_id, value in source.items():
        if merged.get(field_id) in (None, "", []):
            merged[field_id] = value
    return merged
