"""Who a bulk action that mails or subscribes contacts reaches: the contacts of a chunk's leads
and their addresses, as set-based subqueries shared by the sequence subscription and email kinds.

The shapes are chosen for PostgreSQL's planner, which sees each chunk cold: a contact's first
email is a correlated `LIMIT 1` subquery on (contact_id, position), not a join (a join let it
hash the whole email table on every chunk), and "is there such a row" is `(SELECT 1 ... LIMIT 1)
IS NOT NULL`, not EXISTS (which it may run as a hash of every row of the subquery). The items are
the organization's leads, so contacts need no organization filter of their own: that filter could
steer the plan to a scan of all the organization's contacts.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from sqlalchemy import Select, Subquery, func, literal, select
from sqlalchemy.orm import Session, aliased

from clove.bulk_action.kinds import Progress
from clove.models import Contact, ContactEmail, UnsubscribedEmail

Preference = Literal["lead", "contact", "all"]


def found(*conditions: Any) -> Any:
    """True when some row matches `conditions`, probed by index."""
    return select(literal(1)).where(*conditions).limit(1).scalar_subquery().is_not(None)


def is_unsubscribed(organization_id: str, email_lower: Any) -> Any:
    return found(
        UnsubscribedEmail.organization_id == organization_id,
        UnsubscribedEmail.email_lower == email_lower,
    )


def addresses(items: Select[Any], preference: Preference) -> Subquery:
    """(contact_id, lead_id, email, email_lower) for the leads in `items`: `lead`, the lead's
    first contact (oldest) with its first email; `contact`, every contact with its first email;
    `all`, every email of every contact. A contact without email has one row with nulls."""
    if preference == "all":
        query = (
            select(
                Contact.id.label("contact_id"),
                Contact.lead_id.label("lead_id"),
                ContactEmail.email.label("email"),
                ContactEmail.email_lower.label("email_lower"),
            )
            .select_from(Contact)
            .outerjoin(ContactEmail, ContactEmail.contact_id == Contact.id)
        )
    else:
        query = select(
            Contact.id.label("contact_id"),
            Contact.lead_id.label("lead_id"),
            _first_email("email").label("email"),
            _first_email("email_lower").label("email_lower"),
        )
    query = query.where(Contact.lead_id.in_(items))
    if preference == "lead":
        other = aliased(Contact)
        first_contact = (
            select(other.id)
            .where(other.lead_id == Contact.lead_id)
            .order_by(other.date_created, other.id)
            .limit(1)
            .scalar_subquery()
        )
        query = query.where(Contact.id == first_contact)
    return query.subquery("addresses")


def _first_email(column: str) -> Any:
    email = aliased(ContactEmail)
    return (
        select(getattr(email, column))
        .where(email.contact_id == Contact.id)
        .order_by(email.position, email.id)
        .limit(1)
        .scalar_subquery()
    )


def tally(
    session: Session, candidates: Subquery, items: Select[Any], preference: Preference
) -> Progress:
    """How many candidates a chunk has and how many are skipped, by `candidates.c.reason`
    (one GROUP BY). With the `lead` preference the objects are the leads: one without any
    contact counts as skipped for want of an email."""
    progress = Progress(skipped=Counter())
    for reason, count in session.execute(
        select(candidates.c.reason, func.count()).group_by(candidates.c.reason)
    ):
        progress.objects += count
        if reason is not None:
            progress.skipped[reason] = count
    if preference == "lead":
        leads = session.scalar(select(func.count()).select_from(items.subquery())) or 0
        if leads > progress.objects:
            progress.skipped["no_email"] += leads - progress.objects
        progress.objects = leads
    return progress
