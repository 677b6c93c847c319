"""Lead bodies and lead objects (with their contacts and addresses embedded)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from clove.contact.schemas import ContactIn, Text1000
from clove.custom_field.service import render_custom_values
from clove.kit.dates import iso_utc
from clove.kit.schemas import Body, ObjectBody, ObjectPatch, TolerantBody
from clove.models import Lead, LeadAddress

LEAD_READ_ONLY = frozenset(
    {
        "id",
        "organization_id",
        "display_name",
        "status_label",
        "html_url",
        "contact_ids",
        "opportunities",
        "tasks",
        "integration_links",
        "primary_email",
        "primary_phone",
        "created_by",
        "updated_by",
        "created_by_name",
        "updated_by_name",
        "date_created",
        "date_updated",
        "contacts_summary",
        "primary_address_summary",
        "localtime",
        "source",
        "recent_calls",
        "summaries",
        "custom",  # the deprecated by-name dict of old responses; values go by `custom.cf_*`
    }
)


def _opt(length: int) -> Any:
    return Field(default=None, max_length=length)


class AddressIn(TolerantBody):
    read_only = frozenset({"tz_ids"})

    label: str | None = _opt(100)
    address_1: str | None = _opt(500)
    address_2: str | None = _opt(500)
    city: str | None = _opt(200)
    state: str | None = _opt(200)
    zipcode: str | None = _opt(50)
    country: str | None = None

    @field_validator("country")
    @classmethod
    def _iso_country(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not re.fullmatch("[A-Za-z]{2}", value):
            raise ValueError("Enter a two-letter ISO 3166 country code, e.g. US")
        return value.upper()


Url = Annotated[str, Field(max_length=2000)]
Ref = Annotated[str, Field(max_length=200)]


class LeadFields(ObjectBody):
    read_only = LEAD_READ_ONLY

    name: Text1000 | None = None
    description: str | None = None
    url: Url | None = None
    status_id: Ref | None = None
    status: Ref | None = None  # the status label, instead of status_id
    addresses: list[AddressIn] | None = None

    @model_validator(mode="after")
    def _one_status(self) -> LeadFields:
        if self.status is not None and self.status_id is not None:
            raise PydanticCustomError("status", "Post either status or status_id, not both.")
        return self


class LeadCreate(LeadFields):
    contacts: list[ContactIn] | None = None


class LeadUpdate(LeadFields, ObjectPatch):
    nullable = frozenset({"name", "description", "url"})

    contacts: Any = None

    @field_validator("contacts", mode="before")
    @classmethod
    def _no_contacts(cls, _value: Any) -> Any:
        raise ValueError(
            "Contacts cannot be changed through a lead update; use the /contact/ endpoints."
        )


class LeadMerge(Body):
    source: str = Field(max_length=64)
    destination: str = Field(max_length=64)


@dataclass
class LeadParts:
    """A lead with what its object embeds, loaded in bulk for one or many leads."""

    lead: Lead
    status_label: str
    contacts: list[dict[str, Any]]
    addresses: list[LeadAddress]


def serialize_address(address: LeadAddress) -> dict[str, Any]:
    return {
        "label": address.label,
        "address_1": address.address_1,
        "address_2": address.address_2,
        "city": address.city,
        "state": address.state,
        "zipcode": address.zipcode,
        "country": address.country,
        "tz_ids": [],
    }


def serialize_lead(
    parts: LeadParts, user_names: Mapping[str, str], base_url: str
) -> dict[str, Any]:
    """A lead as Close returns it; `user_names` maps user ids to full names."""
    lead, contacts = parts.lead, parts.contacts
    emails = [e for c in contacts for e in c["emails"]]
    phones = [p for c in contacts for p in c["phones"]]
    first_contact_name = contacts[0]["name"] if contacts else None
    return {
        "id": lead.id,
        "organization_id": lead.organization_id,
        "name": lead.name,
        "display_name": lead.name or first_contact_name or "",
        "description": lead.description,
        "url": lead.url,
        "status_id": lead.status_id,
        "status_label": parts.status_label,
        "html_url": f"{base_url.rstrip('/')}/lead/{lead.id}/",
        "contact_ids": [c["id"] for c in contacts],
        "contacts": contacts,
        "addresses": [
            serialize_address(a) for a in sorted(parts.addresses, key=lambda a: a.position)
        ],
        "opportunities": [],
        "tasks": [],
        "integration_links": [],
        "primary_email": emails[0] if emails else None,
        "primary_phone": phones[0] if phones else None,
        "created_by": lead.created_by,
        "updated_by": lead.updated_by,
        "created_by_name": user_names.get(lead.created_by or ""),
        "updated_by_name": user_names.get(lead.updated_by or ""),
        "date_created": iso_utc(lead.date_created),
        "date_updated": iso_utc(lead.date_updated),
        **render_custom_values(lead.custom or {}),
    }
