"""Contacts: their rows (emails, phones, urls), bulk loading, and changes to one contact.

Consequences for the contact's lead (its `contact_ids`, a new lead for a contact posted
without one) are the lead service's business; it builds on the functions here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.orm import Session

from clove.contact.schemas import (
    ContactFields,
    ContactUpdate,
    EmailIn,
    PhoneIn,
    UrlIn,
    phone_country,
    serialize_contact,
)
from clove.custom_field.service import apply_custom_values
from clove.errors import field_error, object_not_found
from clove.event.service import Actor, changes, record_deletion, record_event, record_update
from clove.kit.dates import iso_utc, utcnow
from clove.kit.ids import new_id
from clove.kit.rows import Listing, assign_changed, insert_rows
from clove.models import Contact, ContactEmail, ContactPhone, ContactUrl, Lead, UnsubscribedEmail
from clove.sequence.service import contact_subscriptions

ChildRow = ContactEmail | ContactPhone | ContactUrl
CHILD_MODELS: tuple[type[ChildRow], ...] = (ContactEmail, ContactPhone, ContactUrl)


# --- Building rows -------------------------------------------------------------------------------


def new_contacts(
    session: Session,
    actor: Actor,
    lead_id: str,
    bodies: Sequence[ContactFields],
    now: datetime,
) -> list[Contact]:
    """Flushes contacts of the lead, then inserts their emails, phones and urls.

    Each contact is one microsecond younger than the one before, so that the lead lists
    them in the order they were posted. One INSERT per table whatever the number.
    """
    contacts = [
        Contact(
            id=new_id("cont"),
            organization_id=actor.organization_id,
            lead_id=lead_id,
            name=body.name,
            title=body.title,
            custom=_custom_values(session, actor, body),
            created_by=actor.user_id,
            updated_by=actor.user_id,
            date_created=now + timedelta(microseconds=index),
            date_updated=now + timedelta(microseconds=index),
        )
        for index, body in enumerate(bodies)
    ]
    session.add_all(contacts)
    session.flush()  # without ORM relationships, flush order is ours: parents first
    insert_rows(
        session,
        [
            row
            for contact, body in zip(contacts, bodies, strict=True)
            for row in child_rows(contact, body.emails or [], body.phones or [], body.urls or [])
        ],
    )
    return contacts


def _custom_values(session: Session, actor: Actor, body: ContactFields) -> dict[str, Any]:
    writes = body.custom_writes()
    if not writes:
        return {}
    return apply_custom_values(session, actor.organization_id, "contact", {}, writes)


def child_rows(
    contact: Contact, emails: list[EmailIn], phones: list[PhoneIn], urls: list[UrlIn]
) -> list[ChildRow]:
    """New (transient) email, phone and url rows of `contact`, numbered in the given order."""
    owner = {
        "organization_id": contact.organization_id,
        "lead_id": contact.lead_id,
        "contact_id": contact.id,
    }
    rows: list[ChildRow] = []
    rows += [
        ContactEmail(**owner, position=i, type=e.type, email=e.email, email_lower=e.email.lower())
        for i, e in enumerate(emails)
    ]
    rows += [
        ContactPhone(
            **owner, position=i, type=p.type, phone=p.phone, country=phone_country(p.phone)
        )
        for i, p in enumerate(phones)
    ]
    rows += [ContactUrl(**owner, position=i, type=u.type, url=u.url) for i, u in enumerate(urls)]
    return rows


# --- Loading -------------------------------------------------------------------------------------


def serialized(session: Session, contacts: Sequence[Contact]) -> list[dict[str, Any]]:
    """The contacts as Close returns them, in the given order: four queries in all."""
    if not contacts:
        return []
    children = _children(session, "contact_id", [c.id for c in contacts])
    return [_serialize(c, children) for c in contacts]


def serialized_by_lead(
    session: Session, lead_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Each lead's contacts as Close returns them, oldest first: five queries in all."""
    by_lead: dict[str, list[dict[str, Any]]] = {lead_id: [] for lead_id in lead_ids}
    if not lead_ids:
        return by_lead
    contacts = session.scalars(
        select(Contact)
        .where(Contact.lead_id.in_(lead_ids))
        .order_by(Contact.date_created, Contact.id)
    ).all()
    if contacts:
        children = _children(session, "lead_id", lead_ids)
        for contact in contacts:
            by_lead[contact.lead_id].append(_serialize(contact, children))
    return by_lead


R = TypeVar("R", bound=ChildRow)


@dataclass
class Children:
    """Email, phone and url rows, by contact id."""

    emails: dict[str, list[ContactEmail]]
    phones: dict[str, list[ContactPhone]]
    urls: dict[str, list[ContactUrl]]
    unsubscribed: frozenset[str]
    subscriptions: dict[str, list[dict[str, Any]]]


def _children(session: Session, column: str, ids: Sequence[str]) -> Children:
    """The email, phone and url rows whose `column` (`contact_id` or `lead_id`) is in `ids`,
    which of the emails are unsubscribed (in the same query as the emails), and the contacts'
    sequence subscriptions."""

    def rows(model: type[R]) -> dict[str, list[R]]:
        found: dict[str, list[R]] = defaultdict(list)
        for row in session.scalars(select(model).where(getattr(model, column).in_(ids))):
            found[row.contact_id].append(row)
        return found

    emails: dict[str, list[ContactEmail]] = defaultdict(list)
    unsubscribed: set[str] = set()
    query = (
        select(ContactEmail, UnsubscribedEmail.email_lower)
        .outerjoin(
            UnsubscribedEmail,
            and_(
                UnsubscribedEmail.organization_id == ContactEmail.organization_id,
                UnsubscribedEmail.email_lower == ContactEmail.email_lower,
            ),
        )
        .where(getattr(ContactEmail, column).in_(ids))
    )
    for email, unsubscribed_as in session.execute(query).tuples():
        emails[email.contact_id].append(email)
        if unsubscribed_as is not None:
            unsubscribed.add(unsubscribed_as)
    return Children(
        emails,
        rows(ContactPhone),
        rows(ContactUrl),
        frozenset(unsubscribed),
        contact_subscriptions(session, column, ids),
    )


def _serialize(contact: Contact, children: Children) -> dict[str, Any]:
    return serialize_contact(
        contact,
        children.emails.get(contact.id, []),
        children.phones.get(contact.id, []),
        children.urls.get(contact.id, []),
        children.unsubscribed,
        children.subscriptions.get(contact.id, []),
    )


def get_contact(session: Session, organization_id: str, contact_id: str) -> Contact:
    contact = session.scalars(
        select(Contact).where(Contact.id == contact_id, Contact.organization_id == organization_id)
    ).first()
    if contact is None:
        raise object_not_found("Contact")
    return contact


def list_contacts(
    session: Session,
    organization_id: str,
    lead_id: str | None,
    skip: int,
    limit: int,
    search: Listing | None = None,
) -> tuple[int, bool, list[dict[str, Any]]]:
    """(total, has_more, a page of contacts: newest first, or as a search selects and sorts
    them), in a fixed number of queries."""
    where, order = search or (
        Contact.organization_id == organization_id,
        [Contact.date_created.desc(), Contact.id.desc()],
    )
    conditions = [where]
    if lead_id is not None:
        conditions.append(Contact.lead_id == lead_id)
    total = session.scalar(select(func.count()).select_from(Contact).where(*conditions))
    contacts = session.scalars(
        select(Contact).where(*conditions).order_by(*order).offset(skip).limit(limit + 1)
    ).all()
    return total or 0, len(contacts) > limit, serialized(session, contacts[:limit])


def lead_of(session: Session, organization_id: str, lead_id: str, field: str = "lead_id") -> Lead:
    """The organization's lead named in a request body; 400 on `field` when there is none."""
    lead = session.scalars(
        select(Lead).where(Lead.id == lead_id, Lead.organization_id == organization_id)
    ).first()
    if lead is None:
        raise field_error(field, "Object does not exist.")
    return lead


# --- Changes -------------------------------------------------------------------------------------


def create_contact(
    session: Session, actor: Actor, lead: Lead, body: ContactFields
) -> dict[str, Any]:
    """Flushes a new contact of `lead` with its contact `created` event; returns the object."""
    [contact] = new_contacts(session, actor, lead.id, [body], utcnow())
    session.flush()
    data = serialized(session, [contact])[0]
    record_event(
        session,
        actor,
        object_type="contact",
        action="created",
        object_id=contact.id,
        lead_id=lead.id,
        data=data,
    )
    return data


def update_contact(
    session: Session, actor: Actor, contact: Contact, body: ContactUpdate
) -> dict[str, Any]:
    """Flushes a partial update (lists given replace the stored ones) with its `updated` event.

    Nothing is recorded, and no date moves, when nothing changes. Otherwise the lead's
    `date_updated` moves too (it embeds the contact), without a lead event, as in Close.
    """
    fields = body.changes()
    if fields.get("lead_id", contact.lead_id) != contact.lead_id:
        raise field_error("lead_id", "A contact cannot move to another lead; merge the leads.")
    before = serialized(session, [contact])[0]
    writes = body.custom_writes()
    values: dict[str, Any] = {k: fields[k] for k in ("name", "title") if k in fields}
    if writes:
        values["custom"] = apply_custom_values(
            session, actor.organization_id, "contact", contact.custom or {}, writes
        )
    assign_changed(contact, values)
    _replace_children(session, contact, body)
    session.flush()
    after = serialized(session, [contact])[0]
    if not changes(before, after)[0]:
        return after
    now = utcnow()
    contact.date_updated, contact.updated_by = now, actor.user_id
    touch_lead(session, actor, contact.lead_id, now)
    after |= {"date_updated": iso_utc(now), "updated_by": actor.user_id}
    record_update(
        session,
        actor,
        object_type="contact",
        before=before,
        after=after,
        lead_id=contact.lead_id,
    )
    session.flush()
    return after


def _replace_children(session: Session, contact: Contact, body: ContactUpdate) -> None:
    """Replaces each of the contact's emails, phones and urls lists that the body gives."""
    if body.emails is not None:
        session.execute(delete(ContactEmail).where(ContactEmail.contact_id == contact.id))
        insert_rows(session, child_rows(contact, body.emails, [], []))
    if body.phones is not None:
        session.execute(delete(ContactPhone).where(ContactPhone.contact_id == contact.id))
        insert_rows(session, child_rows(contact, [], body.phones, []))
    if body.urls is not None:
        session.execute(delete(ContactUrl).where(ContactUrl.contact_id == contact.id))
        insert_rows(session, child_rows(contact, [], [], body.urls))


def delete_contact(session: Session, actor: Actor, contact: Contact) -> None:
    """Deletes the contact and its rows, with its `deleted` event."""
    data = serialized(session, [contact])[0]
    for model in CHILD_MODELS:
        session.execute(delete(model).where(model.contact_id == contact.id))
    session.delete(contact)
    session.flush()
    record_deletion(
        session,
        actor,
        object_type="contact",
        previous=data,
        lead_id=contact.lead_id,
    )


def delete_lead_contacts(session: Session, lead_id: str) -> None:
    """Set-based delete of every contact of the lead with their emails, phones and urls."""
    for model in CHILD_MODELS:
        session.execute(delete(model).where(model.lead_id == lead_id))
    session.execute(delete(Contact).where(Contact.lead_id == lead_id))


def touch_lead(session: Session, actor: Actor, lead_id: str, now: datetime) -> None:
    """Moves the lead's `date_updated`: a change to a contact changes the lead object."""
    session.execute(
        update(Lead).where(Lead.id == lead_id).values(date_updated=now, updated_by=actor.user_id)
    )
