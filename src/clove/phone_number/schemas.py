"""Request bodies and the wire shape of phone numbers (close-api.md §5.7)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from clove.contact.schemas import format_phone
from clove.kit.dates import iso_utc
from clove.kit.schemas import Body, PatchBody
from clove.models import PhoneNumber

MAX_MEMBERS = 100


def serialize_phone_number(phone: PhoneNumber) -> dict[str, Any]:
    phone_numbers = list(phone.phone_numbers or [])
    return {
        "id": phone.id,
        "organization_id": phone.organization_id,
        "number": phone.number,
        "number_formatted": format_phone(phone.number),
        "label": phone.label or "",
        "type": phone.type,
        "is_group_number": phone.is_group_number,
        "user_id": phone.user_id,
        "participants": list(phone.participants or []),
        "phone_numbers": phone_numbers,
        "phone_numbers_formatted": [format_phone(n) for n in phone_numbers],
        "forward_to": phone.forward_to,
        "forward_to_enabled": phone.forward_to_enabled,
        "forward_to_formatted": format_phone(phone.forward_to) if phone.forward_to else None,
        "voicemail_greeting_url": phone.voicemail_greeting_url,
        "press_1_to_accept": phone.press_1_to_accept,
        # A number registered in Clove is the user's own line: no carrier, texting or billing.
        "sms_enabled": False,
        "mms_enabled": False,
        "supports_sms_to_countries": [],
        "supports_mms_to_countries": [],
        "country": phone.country,
        "carrier": None,
        "carrier_type": None,
        "is_premium": False,
        "is_verified": False,
        "was_ported": False,
        "address_id": None,
        "bundle_id": None,
        "last_billed_price": None,
        "next_billing_on": None,
        "date_created": iso_utc(phone.date_created),
        "date_updated": iso_utc(phone.date_updated),
    }


class PhoneNumberCreate(Body):
    """Clove's extension: register a number the organization already has."""

    number: str = Field(min_length=1, max_length=40)
    label: str = Field(default="", max_length=200)
    user_id: str | None = Field(default=None, max_length=64)
    is_group_number: bool = False


class PhoneNumberUpdate(PatchBody):
    """Close's UpdatePhoneNumber; `forward_to` and the greeting may be cleared with null."""

    nullable: ClassVar[frozenset[str]] = frozenset({"forward_to", "voicemail_greeting_url"})

    label: str | None = Field(default=None, max_length=200)
    forward_to: str | None = Field(default=None, max_length=40)
    forward_to_enabled: bool | None = None
    voicemail_greeting_url: str | None = Field(default=None, max_length=2000)
    participants: list[str] | None = Field(default=None, max_length=MAX_MEMBERS)
    phone_numbers: list[str] | None = Field(default=None, max_length=MAX_MEMBERS)
    press_1_to_accept: bool | None = None
