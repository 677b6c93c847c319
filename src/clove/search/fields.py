"""What can be searched: object types, their fields, and how related types join.

A field is an SQL expression over one object's table plus the kind of value it holds, which
decides the conditions it accepts. Opportunity and activity types plug in here as rows of
the catalogue once their tables exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, FromClause, Table, func, literal_column, select

from clove.models import (
    Contact,
    ContactEmail,
    ContactPhone,
    Lead,
    LeadAddress,
    LeadStatus,
    SequenceSubscription,
)

Expr = ColumnElement[Any]
Column = Callable[[FromClause], Expr]

# Value kinds, and the conditions each accepts.
TEXT = "text"  # words: text (every mode), term, exists
KEYWORD = "keyword"  # ids, types, emails, phones: text, term, reference, exists
MOMENT = "moment"  # a datetime column: moment_range, exists
NUMBER = "number"  # number_range, term, exists
CONDITIONS = {
    TEXT: {"text", "term", "exists"},
    KEYWORD: {"text", "term", "reference", "exists"},
    MOMENT: {"moment_range", "exists"},
    NUMBER: {"number_range", "term", "exists"},
}


@dataclass(frozen=True)
class Lookup:
    """A field that lives on another table reached by a foreign key (a lead's status label):
    conditions become `fk IN (SELECT id FROM other WHERE condition)`, which uses indexes."""

    fk: str
    table: Table
    column: str


@dataclass(frozen=True)
class FieldDef:
    kind: str
    column: Column
    reference_type: str | None = None
    lookup: Lookup | None = None
    # A stored lower-case copy of the value (emails), matched instead of lower(value).
    lowered: Column | None = None
    nullable: bool = True


@dataclass(frozen=True)
class ObjectKind:
    name: str
    table: Table
    fields: dict[str, FieldDef]
    custom_type: str | None = None  # CustomField.object_type of its custom fields
    # Field-less `text` searches these fields, and these related types' fields.
    text_fields: tuple[str, ...] = ()
    text_related: tuple[tuple[str, str], ...] = ()
    has_organization: bool = True


@dataclass(frozen=True)
class Relation:
    """Related rows belong to a row when `this.<this_column> = related.<related_column>`."""

    this_column: str
    related_column: str


def _col(name: str) -> Column:
    return lambda t: t.c[name]


def _count(table: Table, fk: str) -> FieldDef:
    """How many `table` rows point at this object: a correlated scalar subquery."""
    return FieldDef(
        NUMBER,
        lambda t: (
            select(func.count()).select_from(table).where(table.c[fk] == t.c.id).scalar_subquery()
        ),
        nullable=False,
    )


def _text(name: str) -> FieldDef:
    return FieldDef(TEXT, _col(name))


def _moment(name: str) -> FieldDef:
    return FieldDef(MOMENT, _col(name))


def _reference(name: str, reference_type: str) -> FieldDef:
    return FieldDef(KEYWORD, _col(name), reference_type=reference_type)


def _keyword(name: str, lowered: Column | None = None) -> FieldDef:
    return FieldDef(KEYWORD, _col(name), lowered=lowered)


LEAD: Table = Lead.__table__  # type: ignore[assignment]
CONTACT: Table = Contact.__table__  # type: ignore[assignment]
EMAIL: Table = ContactEmail.__table__  # type: ignore[assignment]
PHONE: Table = ContactPhone.__table__  # type: ignore[assignment]
ADDRESS: Table = LeadAddress.__table__  # type: ignore[assignment]
STATUS: Table = LeadStatus.__table__  # type: ignore[assignment]
SUBSCRIPTION: Table = SequenceSubscription.__table__  # type: ignore[assignment]

_ADDRESS_PARTS = ("address_1", "address_2", "city", "state", "zipcode", "country")


def _location(t: FromClause) -> Expr:
    parts: list[Expr] = [func.coalesce(t.c[p], "") for p in _ADDRESS_PARTS]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + literal_column("' '") + part
    return joined


def _lead_fields() -> dict[str, FieldDef]:
    return {
        "id": _reference("id", "lead"),
        "name": _text("name"),
        # Sorting and matching use the lead's own name; Close falls back to the first
        # contact's name for display only.
        "display_name": _text("name"),
        "description": _text("description"),
        "url": _text("url"),
        "status_id": _reference("status_id", "status.lead"),
        "status_label": FieldDef(
            TEXT, _col("status_id"), lookup=Lookup("status_id", STATUS, "label")
        ),
        "date_created": _moment("date_created"),
        "date_updated": _moment("date_updated"),
        "created_by": _reference("created_by", "user"),
        "updated_by": _reference("updated_by", "user"),
        "num_contacts": _count(CONTACT, "lead_id"),
        "num_email_addresses": _count(EMAIL, "lead_id"),
        "num_phone_numbers": _count(PHONE, "lead_id"),
        "num_addresses": _count(ADDRESS, "lead_id"),
        "organization_id": _reference("organization_id", "organization"),
    }


def _contact_fields() -> dict[str, FieldDef]:
    return {
        "id": _reference("id", "contact"),
        "lead_id": _reference("lead_id", "lead"),
        "name": _text("name"),
        "title": _text("title"),
        "date_created": _moment("date_created"),
        "date_updated": _moment("date_updated"),
        "created_by": _reference("created_by", "user"),
        "updated_by": _reference("updated_by", "user"),
        "num_emails": _count(EMAIL, "contact_id"),
        "num_phones": _count(PHONE, "contact_id"),
    }


KINDS: dict[str, ObjectKind] = {
    "lead": ObjectKind(
        "lead",
        LEAD,
        _lead_fields(),
        custom_type="lead",
        text_fields=("name", "description"),
        text_related=(
            ("contact", "name"),
            ("contact", "title"),
            ("contact_email", "email"),
            ("contact_phone", "phone"),
        ),
    ),
    "contact": ObjectKind(
        "contact",
        CONTACT,
        _contact_fields(),
        custom_type="contact",
        text_fields=("name", "title"),
        text_related=(("contact_email", "email"), ("contact_phone", "phone")),
    ),
    "contact_email": ObjectKind(
        "contact_email",
        EMAIL,
        {
            "email": _keyword("email", _col("email_lower")),
            "type": _keyword("type"),
            "contact_id": _reference("contact_id", "contact"),
            "lead_id": _reference("lead_id", "lead"),
        },
        text_fields=("email",),
    ),
    "contact_phone": ObjectKind(
        "contact_phone",
        PHONE,
        {
            "phone": _keyword("phone"),
            "type": _keyword("type"),
            "contact_id": _reference("contact_id", "contact"),
            "lead_id": _reference("lead_id", "lead"),
        },
        text_fields=("phone",),
    ),
    "address": ObjectKind(
        "address",
        ADDRESS,
        {
            **{part: _text(part) for part in (*_ADDRESS_PARTS, "label")},
            "location": FieldDef(TEXT, _location),
            "lead_id": _reference("lead_id", "lead"),
        },
        text_fields=("location",),
    ),
    # A contact's runs of sequences (close-search.md: `contact → sequence_subscription`).
    "sequence_subscription": ObjectKind(
        "sequence_subscription",
        SUBSCRIPTION,
        {
            "sequence_id": _reference("sequence_id", "sequence"),
            "status": _keyword("status"),
            "status_reason": _keyword("status_reason"),
            "sender_account_id": _keyword("sender_account_id"),
            "contact_id": _reference("contact_id", "contact"),
            "lead_id": _reference("lead_id", "lead"),
            "date_created": _moment("date_created"),
            "start_date": _moment("start_date"),
        },
    ),
}

# Lead fields real queries use that need objects Clove does not track yet (close-search B4).
NOT_TRACKED = {
    "num_emails": "email activities",
    "num_calls": "calls",
    "num_sms": "SMS messages",
    "num_notes": "notes",
    "num_tasks": "tasks",
    "num_opportunities": "opportunities",
    "num_upcoming_meetings": "meetings",
    "times_communicated": "activities",
    "last_communication_date": "activities",
    "last_call_date": "calls",
    "last_email_date": "email activities",
    "last_lead_status_change_date": "status changes",
    "last_opportunity_won_date_won": "opportunities",
    "user_id": "lead owners",
    "timezone_id": "lead time zones",
}


def _by(fk: str) -> Relation:
    """Related rows carry `fk` pointing at this row's id."""
    return Relation("id", fk)


def _up(fk: str) -> Relation:
    """This row carries `fk` pointing at the related row's id."""
    return Relation(fk, "id")


RELATIONS: dict[tuple[str, str], Relation] = {
    ("lead", "contact"): _by("lead_id"),
    ("lead", "contact_email"): _by("lead_id"),
    ("lead", "contact_phone"): _by("lead_id"),
    ("lead", "address"): _by("lead_id"),
    ("lead", "sequence_subscription"): _by("lead_id"),
    ("contact", "lead"): _up("lead_id"),
    ("contact", "contact_email"): _by("contact_id"),
    ("contact", "contact_phone"): _by("contact_id"),
    ("contact", "sequence_subscription"): _by("contact_id"),
    ("contact_email", "contact"): _up("contact_id"),
    ("contact_email", "lead"): _up("lead_id"),
    ("contact_phone", "contact"): _up("contact_id"),
    ("contact_phone", "lead"): _up("lead_id"),
    ("address", "lead"): _up("lead_id"),
    ("sequence_subscription", "contact"): _up("contact_id"),
    ("sequence_subscription", "lead"): _up("lead_id"),
}

# Types that may be searched for at the top level (the rest only under `has_related`).
TOP_LEVEL = ("lead", "contact")
