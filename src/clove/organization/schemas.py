"""Organization objects and the fields a PUT may change."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from clove.kit.dates import iso_utc
from clove.kit.schemas import PatchBody
from clove.models import Organization

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CAD": "$", "AUD": "$"}


def serialize_organization(
    org: Organization,
    memberships: list[dict[str, Any]],
    inactive: list[dict[str, Any]],
    lead_statuses: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "id": org.id,
        "name": org.name,
        "created_by": org.created_by,
        "updated_by": org.updated_by,
        "date_created": iso_utc(org.date_created),
        "date_updated": iso_utc(org.date_updated),
        "currency": org.currency,
        "currency_symbol": CURRENCY_SYMBOLS.get(org.currency, org.currency),
        "plan_type": "self_hosted",
        "enable_unsubscribe_link": org.enable_unsubscribe_link,
        "require_unsubscribe_link": org.require_unsubscribe_link,
        "lead_statuses": lead_statuses,
        "pipelines": [],  # opportunities and pipelines are not implemented yet
        "memberships": memberships,
        "inactive_memberships": inactive,
    }


class OrganizationUpdate(PatchBody):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    currency: str | None = None
    enable_unsubscribe_link: bool | None = None
    require_unsubscribe_link: bool | None = None

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is not None and re.fullmatch("[A-Z]{3}", value) is None:
            raise ValueError("Enter a three-letter ISO 4217 currency code, e.g. USD")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("This field may not be blank.")
        return value
