"""Phone numbers Clove knows of: registered, configured (forwarding, greeting, group members)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from clove.contact.schemas import normalize_phone, phone_country
from clove.errors import BadRequest, Forbidden, ValidationFailed, field_error, object_not_found
from clove.event.service import Actor, record_creation, record_deletion, record_update
from clove.kit.dates import utcnow
from clove.kit.ids import new_id
from clove.models import Membership, PhoneNumber
from clove.phone_number.schemas import (
    PhoneNumberCreate,
    PhoneNumberUpdate,
    serialize_phone_number,
)

OBJECT_TYPE = "phone_number"


class RentalRefused(BadRequest):
    """Close's body for a number that was not rented: a `status` beside the `error`."""

    def body(self) -> dict[str, Any]:
        return {"status": "error", "error": self.message}


# --- Reading -------------------------------------------------------------------------------------


def list_phone_numbers(
    session: Session,
    organization_id: str,
    *,
    number: str | None,
    user_id: str | None,
    is_group_number: bool | None,
    skip: int,
    limit: int,
) -> list[PhoneNumber]:
    """Up to `limit + 1` numbers, oldest first."""
    query = select(PhoneNumber).where(PhoneNumber.organization_id == organization_id)
    if number is not None:
        query = query.where(PhoneNumber.number == _e164("number", number))
    if user_id is not None:
        query = query.where(PhoneNumber.user_id == user_id)
    if is_group_number is not None:
        query = query.where(PhoneNumber.is_group_number == is_group_number)
    query = query.order_by(PhoneNumber.date_created, PhoneNumber.id)
    return list(session.scalars(query.offset(skip).limit(limit + 1)))


def get_phone_number(session: Session, organization_id: str, phone_id: str) -> PhoneNumber:
    phone = session.scalars(
        select(PhoneNumber).where(
            PhoneNumber.id == phone_id, PhoneNumber.organization_id == organization_id
        )
    ).first()
    if phone is None:
        raise object_not_found("PhoneNumber")
    return phone


# --- Writing -------------------------------------------------------------------------------------


def create_phone_number(session: Session, actor: Actor, body: PhoneNumberCreate) -> PhoneNumber:
    """Flushes a number of the caller (or, for admins, of another member or the group)."""
    number = _e164("number", body.number)
    if body.is_group_number:
        _require_admin(actor, "Only admins can add group numbers.")
        if body.user_id is not None:
            raise field_error("user_id", "A group number belongs to no user.")
        owner = None
    else:
        owner = body.user_id or actor.user_id
        if owner != actor.user_id:
            _require_admin(actor, "Only admins can add numbers of other users.")
        _check_members(session, actor, "user_id", [owner])
    taken = select(PhoneNumber.id).where(
        PhoneNumber.organization_id == actor.organization_id, PhoneNumber.number == number
    )
    if session.scalar(taken) is not None:
        raise field_error("number", "This number is already registered.")
    phone = PhoneNumber(
        id=new_id("phon"),
        organization_id=actor.organization_id,
        user_id=owner,
        number=number,
        label=body.label.strip(),
        type="external",
        is_group_number=body.is_group_number,
        participants=[],
        phone_numbers=[],
        country=phone_country(number),
    )
    session.add(phone)
    session.flush()
    record_creation(
        session, actor, object_type=OBJECT_TYPE, data=serialize_phone_number(phone), lead_id=None
    )
    return phone


def update_phone_number(
    session: Session, actor: Actor, phone: PhoneNumber, body: PhoneNumberUpdate
) -> None:
    """A partial update of Close's UpdatePhoneNumber fields; no event when nothing changed."""
    _check_may_change(actor, phone)
    values = _clean_update(session, actor, phone, body.changes())
    before = serialize_phone_number(phone)
    for key, value in values.items():
        setattr(phone, key, value)
    if serialize_phone_number(phone) == before:
        return
    phone.date_updated = utcnow()
    session.flush()
    after = serialize_phone_number(phone)
    record_update(session, actor, object_type=OBJECT_TYPE, before=before, after=after, lead_id=None)


def delete_phone_number(session: Session, actor: Actor, phone: PhoneNumber) -> None:
    _check_may_change(actor, phone)
    data = serialize_phone_number(phone)
    session.delete(phone)
    session.flush()
    record_deletion(session, actor, object_type=OBJECT_TYPE, previous=data, lead_id=None)


def _clean_update(
    session: Session, actor: Actor, phone: PhoneNumber, values: dict[str, Any]
) -> dict[str, Any]:
    """The values to store, or a 400 naming every bad field."""
    errors: dict[str, str] = {}

    def check(field: str, clean: Any) -> None:
        try:
            values[field] = clean(values[field])
        except ValidationFailed as exc:
            errors.update(exc.field_errors)

    if "label" in values:
        check("label", str.strip)
    if values.get("forward_to") is not None:
        check("forward_to", lambda v: _e164("forward_to", v))
    if values.get("voicemail_greeting_url") is not None:
        check("voicemail_greeting_url", _greeting_url)
    if "phone_numbers" in values:
        check("phone_numbers", lambda v: list(dict.fromkeys(_e164("phone_numbers", n) for n in v)))
    if "participants" in values:
        check("participants", lambda v: _participants(session, actor, v))
    for field in ("participants", "phone_numbers"):
        if field in values and not phone.is_group_number and field not in errors:
            errors[field] = "Only group numbers have participants and phone numbers."
    forward_to = values.get("forward_to", phone.forward_to)
    if values.get("forward_to_enabled", phone.forward_to_enabled) and not forward_to:
        errors.setdefault("forward_to", "Set forward_to to enable forwarding.")
    if errors:
        raise ValidationFailed(field_errors=errors)
    return values


def _participants(session: Session, actor: Actor, user_ids: list[str]) -> list[str]:
    unique = list(dict.fromkeys(user_ids))
    _check_members(session, actor, "participants", unique)
    return unique


def _check_members(session: Session, actor: Actor, field: str, user_ids: list[str]) -> None:
    """Each id must be an active member of the caller's organization."""
    if not user_ids:
        return
    found = set(
        session.scalars(
            select(Membership.user_id).where(
                Membership.organization_id == actor.organization_id,
                Membership.user_id.in_(user_ids),
                Membership.is_active,
            )
        )
    )
    missing = [u for u in user_ids if u not in found]
    if missing:
        raise field_error(field, f"Not an active member of the organization: {missing[0]}.")


def _check_may_change(actor: Actor, phone: PhoneNumber) -> None:
    """Group numbers need an admin (Close's Manage Group Phone Numbers); personal numbers are
    changed by their owner (or an admin)."""
    if phone.is_group_number:
        _require_admin(actor, "Only admins can change group numbers.")
    elif phone.user_id != actor.user_id:
        _require_admin(actor, "You can only change your own personal numbers.")


def _require_admin(actor: Actor, message: str) -> None:
    if not actor.ctx.is_admin:
        raise Forbidden(message)


def _e164(field: str, raw: str) -> str:
    try:
        return normalize_phone(raw)
    except ValueError:
        raise field_error(field, "Enter a valid phone number, e.g. +16503334444.") from None


def _greeting_url(url: str) -> str:
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        parts = urlsplit("")
    if parts.scheme != "https" or not parts.netloc:
        raise field_error("voicemail_greeting_url", "Must be a secure URL (https://...).")
    return url
