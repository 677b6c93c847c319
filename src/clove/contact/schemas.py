"""Contact bodies (also nested in a lead's POST), phone and email rules, and contact objects."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any

import phonenumbers
from pydantic import Field, field_validator

from clove.custom_field.service import render_custom_values
from clove.kit.dates import iso_utc
from clove.kit.schemas import ObjectBody, ObjectPatch, TolerantBody
from clove.models import Contact, ContactEmail, ContactPhone, ContactUrl

# --- Request bodies ------------------------------------------------------------------------------


Text1000 = Annotated[str, Field(max_length=1000)]
TypeName = Annotated[str, Field(min_length=1, max_length=50)]


class EmailIn(TolerantBody):
    read_only = frozenset({"is_unsubscribed", "email_lower"})

    email: str = Field(max_length=254)
    type: TypeName = "office"


class PhoneIn(TolerantBody):
    read_only = frozenset({"phone_formatted", "country", "tz_ids", "outbound_sms_blocked"})

    phone: str = Field(max_length=100)
    type: TypeName = "office"


class UrlIn(TolerantBody):
    url: str = Field(min_length=1, max_length=2000)
    type: TypeName = "url"


CONTACT_READ_ONLY = frozenset(
    {
        "id",
        "organization_id",
        "lead_id",  # nested in a lead, a contact belongs to that lead
        "display_name",
        "created_by",
        "updated_by",
        "date_created",
        "date_updated",
        "integration_links",
        "recent_calls",
        "subscriptions",
        "timezone",
        "timezone_source",
        "lead_suggestions_operation_id",
        "custom",  # the deprecated by-name dict of old responses; values go by `custom.cf_*`
    }
)


class ContactFields(ObjectBody):
    """The writable fields of a contact, with Close's normalisation of emails and phones."""

    read_only = CONTACT_READ_ONLY

    name: Text1000 | None = None
    title: Text1000 | None = None
    emails: list[EmailIn] | None = None
    phones: list[PhoneIn] | None = None
    urls: list[UrlIn] | None = None

    @field_validator("emails")
    @classmethod
    def _valid_emails(cls, emails: list[EmailIn] | None) -> list[EmailIn] | None:
        for item in emails or []:
            item.email = item.email.strip()
            if not EMAIL.fullmatch(item.email):
                raise ValueError(f"Invalid email address: {item.email!r}")
        return emails

    @field_validator("phones")
    @classmethod
    def _normalise_phones(cls, phones: list[PhoneIn] | None) -> list[PhoneIn] | None:
        for item in phones or []:
            item.phone = normalize_phone(item.phone)
        return phones


class ContactIn(ContactFields):
    """A contact nested in a lead's POST."""


class ContactCreate(ContactFields):
    """POST /contact/: without `lead_id`, a new lead named after the contact is created."""

    lead_id: str | None = Field(default=None, max_length=64)


class ContactUpdate(ContactFields, ObjectPatch):
    """PUT /contact/{id}/: lists given replace the stored ones; `lead_id` may only repeat."""

    nullable = frozenset({"name", "title"})

    lead_id: str | None = Field(default=None, max_length=64)


# --- Emails and phones ---------------------------------------------------------------------------

# Basic shape only: something@domain.tld without spaces.
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def normalize_phone(raw: str) -> str:
    """E.164 for a phone number given in international form or, without `+`, as a US number.

    Raises ValueError for anything that is not a valid number.
    """
    text = raw.strip()
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else "US")
    except phonenumbers.NumberParseException:
        raise ValueError(f"Invalid phone number: {raw!r}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"Invalid phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_country(e164: str) -> str | None:
    return phonenumbers.region_code_for_number(phonenumbers.parse(e164)) or None


@lru_cache(maxsize=8192)
def format_phone(e164: str) -> str:
    """Close's `phone_formatted`: the international format, e.g. `+1 650-333-4444`. Cached:
    parsing costs ~37 µs, about 15% of a page of 50 leads (bench/crud.py)."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


# --- Contact objects -----------------------------------------------------------------------------


def serialize_contact(
    contact: Contact,
    emails: list[ContactEmail],
    phones: list[ContactPhone],
    urls: list[ContactUrl],
    unsubscribed: frozenset[str] = frozenset(),
    subscriptions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A contact as Close returns it; child rows in their stored order. `unsubscribed` holds
    the lower-cased addresses the organization no longer mails; `subscriptions` its sequence
    subscriptions (BasicSubscriptionInfoForContact)."""
    email_list = [
        {"email": e.email, "type": e.type, "is_unsubscribed": e.email_lower in unsubscribed}
        for e in sorted(emails, key=_position)
    ]
    return {
        "id": contact.id,
        "organization_id": contact.organization_id,
        "lead_id": contact.lead_id,
        "name": contact.name,
        "display_name": contact.name or (email_list[0]["email"] if email_list else ""),
        "title": contact.title,
        "emails": email_list,
        "phones": [
            {
                "phone": p.phone,
                "phone_formatted": format_phone(p.phone),
                "type": p.type,
                "country": p.country,
            }
            for p in sorted(phones, key=_position)
        ],
        "urls": [{"url": u.url, "type": u.type} for u in sorted(urls, key=_position)],
        "integration_links": [],
        "recent_calls": [],
        "subscriptions": subscriptions or [],
        "timezone": None,
        "created_by": contact.created_by,
        "updated_by": contact.updated_by,
        "date_created": iso_utc(contact.date_created),
        "date_updated": iso_utc(contact.date_updated),
        **render_custom_values(contact.custom or {}),
    }


def _position(row: ContactEmail | ContactPhone | ContactUrl) -> int:
    return row.position
