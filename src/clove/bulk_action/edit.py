"""`/bulk_action/edit/`: set the lead status, or set or clear a custom field, on every
matching lead or on the contacts of every matching lead (close-api.md §3.5).

Values are validated at POST exactly as `PUT /lead/` and `PUT /contact/` validate them
(`apply_custom_values`). A chunk loads its leads (or their contacts) in one query, changes
those whose value differs, and records one `updated` event per changed object in the shape
the PUT endpoints record, with `meta.bulk_action_id`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field
from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from clove.bulk_action.kinds import BulkActionBody, Progress
from clove.config import get_settings
from clove.contact import service as contact_service
from clove.custom_field.service import apply_custom_values
from clove.errors import ValidationFailed, field_error
from clove.event.service import Actor, record_update
from clove.lead import service as lead_service
from clove.models import BulkAction, Contact, CustomField, Lead, LeadStatus

EditType = Literal[
    "set_custom_field",
    "clear_custom_field",
    "set_lead_status",
    "set_contact_custom_field",
    "clear_contact_custom_field",
    "set_activity_custom_field",
    "clear_activity_custom_field",
    "set_global_custom_field",
    "clear_global_custom_field",
    "set_opportunity_custom_field",
    "clear_opportunity_custom_field",
    "set_custom_object_custom_field",
    "clear_custom_object_custom_field",
]
# The object type whose custom field each supported custom field type edits.
FIELD_OBJECT = {
    "set_custom_field": "lead",
    "clear_custom_field": "lead",
    "set_contact_custom_field": "contact",
    "clear_contact_custom_field": "contact",
}
# What Clove lacks for the other types, by the objects part of the type's name.
MISSING_OBJECTS = {
    "activity": "custom activities",
    "global": "shared custom fields",
    "opportunity": "opportunities",
    "custom_object": "custom objects",
}
REQUIRED = "This field is required."
DOES_NOT_EXIST = "Object does not exist."


class EditBody(BulkActionBody):
    type: EditType
    lead_status_id: str | None = Field(default=None, max_length=64)
    custom_field_id: str | None = Field(default=None, max_length=64)
    custom_field_name: str | None = Field(default=None, max_length=200)
    custom_field_value: Any = None
    custom_field_values: list[Any] | None = Field(default=None, max_length=1000)
    custom_field_operation: Literal["replace", "add", "remove"] = "replace"


class BulkEdit:
    name: ClassVar[str] = "edit"
    prefix: ClassVar[str] = "bulkedit"
    body: ClassVar[type[BulkActionBody]] = EditBody

    # --- Request --------------------------------------------------------------------------------

    def validate(self, session: Session, actor: Actor, body: Any) -> dict[str, Any]:
        assert isinstance(body, EditBody)
        if body.type == "set_lead_status":
            return _validate_status(session, actor, body)
        if body.type not in FIELD_OBJECT:
            # set_<objects>_custom_field / clear_<objects>_custom_field
            objects = body.type.split("_", 1)[1].removesuffix("_custom_field")
            missing = MISSING_OBJECTS[objects]
            raise field_error("type", f"{body.type} is not supported: Clove has no {missing} yet.")
        return _validate_field_edit(session, actor, body)

    def result_type(self, params: dict[str, Any]) -> str:
        return "lead"

    def wire(self, action: BulkAction) -> dict[str, Any]:
        p = action.params
        return {
            "type": p.get("type"),
            "custom_field_name": p.get("custom_field_name"),
            "custom_field_value": p.get("custom_field_value"),
            "lead_status_id": p.get("lead_status_id"),
        }

    # --- Work -----------------------------------------------------------------------------------

    def count_objects(self, session: Session, action: BulkAction, items: Select[Any]) -> int:
        if action.params.get("object_type") == "contact":
            return session.scalar(select(func.count()).where(Contact.lead_id.in_(items))) or 0
        return session.scalar(select(func.count()).select_from(items.subquery())) or 0

    def process(
        self, session: Session, action: BulkAction, actor: Actor, items: Select[Any], now: datetime
    ) -> Progress:
        if action.params.get("object_type") == "contact":
            return _edit_contacts(session, action, actor, items, now)
        return _edit_leads(session, action, actor, items, now)

    def preview(
        self, session: Session, action: BulkAction, items: Select[Any], limit: int
    ) -> tuple[Progress, list[dict[str, Any]]]:
        p = action.params
        progress = Progress(objects=self.count_objects(session, action, items))
        if p["type"] == "set_lead_status":
            leads = session.scalars(_leads(action, items).order_by(Lead.id).limit(limit))
            return progress, [{"lead_id": lead.id, "status_id": lead.status_id} for lead in leads]
        field_id = p["custom_field_id"]
        key = f"custom.{field_id}"
        if p["object_type"] == "contact":
            contacts = session.scalars(
                _contacts(action, items).order_by(Contact.lead_id, Contact.id).limit(limit)
            )
            return progress, [
                {"contact_id": c.id, "lead_id": c.lead_id, key: (c.custom or {}).get(field_id)}
                for c in contacts
            ]
        leads = session.scalars(_leads(action, items).order_by(Lead.id).limit(limit))
        return progress, [
            {"lead_id": lead.id, key: (lead.custom or {}).get(field_id)} for lead in leads
        ]


# --- Validation ----------------------------------------------------------------------------------


def _validate_status(session: Session, actor: Actor, body: EditBody) -> dict[str, Any]:
    if body.lead_status_id is None:
        raise field_error("lead_status_id", REQUIRED)
    found = session.scalar(
        select(LeadStatus.id).where(
            LeadStatus.id == body.lead_status_id,
            LeadStatus.organization_id == actor.organization_id,
        )
    )
    if found is None:
        raise field_error("lead_status_id", DOES_NOT_EXIST)
    return {"type": body.type, "lead_status_id": found}


def _validate_field_edit(session: Session, actor: Actor, body: EditBody) -> dict[str, Any]:
    """The field and, for `set_*`, the normalized value; a 400 naming the bad request field."""
    object_type = FIELD_OBJECT[body.type]
    field = _find_field(session, actor.organization_id, object_type, body)
    params: dict[str, Any] = {
        "type": body.type,
        "object_type": object_type,
        "custom_field_id": field.id,
        "custom_field_name": field.name,
        "operation": "replace",
        "value": None,
        "custom_field_value": None,
    }
    if body.type.startswith("clear_"):
        return params
    operation = body.custom_field_operation
    if operation != "replace" and not field.accepts_multiple_values:
        raise field_error(
            "custom_field_operation",
            f"{operation} is only for fields that accept multiple values; use replace.",
        )
    name, value = _requested_value(field, body)
    params.update(
        operation=operation,
        value=_normalized(session, actor.organization_id, field, operation, name, value),
        custom_field_value=_wire_value(value),
    )
    return params


def _find_field(
    session: Session, organization_id: str, object_type: str, body: EditBody
) -> CustomField:
    """The organization's field named by `custom_field_id` or exact `custom_field_name`; a 400
    when there is none or it belongs to the other object type."""
    key = "custom_field_id" if body.custom_field_id is not None else "custom_field_name"
    query = select(CustomField).where(CustomField.organization_id == organization_id)
    if body.custom_field_id is not None:
        query = query.where(CustomField.id == body.custom_field_id)
    elif body.custom_field_name is not None:
        query = query.where(CustomField.name == body.custom_field_name)
    else:
        raise ValidationFailed(
            field_errors={"custom_field_id": "Give custom_field_id or custom_field_name."}
        )
    found = list(session.scalars(query))
    field = next((f for f in found if f.object_type == object_type), None)
    if field is not None:
        if body.custom_field_name is not None and body.custom_field_name != field.name:
            raise field_error("custom_field_name", "This is not the name of custom_field_id.")
        return field
    if found:
        other = found[0].object_type
        raise field_error(key, f"This is a {other} custom field, not a {object_type} one.")
    raise field_error(key, DOES_NOT_EXIST)


def _requested_value(field: CustomField, body: EditBody) -> tuple[str, Any]:
    """(request field, value): `custom_field_values` (multi-value fields only) or else
    `custom_field_value`."""
    if body.custom_field_values is not None:
        if not field.accepts_multiple_values:
            raise field_error(
                "custom_field_values",
                "This field accepts a single value; use custom_field_value.",
            )
        if body.custom_field_value is not None:
            raise field_error(
                "custom_field_value", "Give custom_field_value or custom_field_values."
            )
        return "custom_field_values", body.custom_field_values
    if body.custom_field_value is None:
        raise field_error("custom_field_value", REQUIRED)
    return "custom_field_value", body.custom_field_value


def _normalized(
    session: Session,
    organization_id: str,
    field: CustomField,
    operation: str,
    name: str,
    value: Any,
) -> Any:
    """The value as stored: checked against the field as `PUT /lead/` checks `custom.<id>`
    (its `.add` / `.remove` variants for those operations); errors name the request field."""
    suffix = "" if operation == "replace" else f".{operation}"
    key = f"custom.{field.id}{suffix}"
    try:
        applied = apply_custom_values(session, organization_id, field.object_type, {}, {key: value})
    except ValidationFailed as exc:
        message = next(iter(exc.field_errors.values()), "Invalid value.")
        raise ValidationFailed(exc.errors, {name: message}) from None
    if operation == "remove":
        # Removing needs no valid value (a choice may have been dropped), only strings.
        return _unique(value if isinstance(value, list) else [value])
    normalized = applied.get(field.id)
    if normalized is None:
        raise field_error(name, "Give a value; clear a field with clear_*.")
    return normalized


def _wire_value(value: Any) -> str:
    """Close's `custom_field_value` is a string: other values are shown as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _unique(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if value not in out:
            out.append(value)
    return out


# --- Processing ----------------------------------------------------------------------------------


def _leads(action: BulkAction, items: Select[Any]) -> Select[tuple[Lead]]:
    return select(Lead).where(Lead.organization_id == action.organization_id, Lead.id.in_(items))


def _contacts(action: BulkAction, items: Select[Any]) -> Select[tuple[Contact]]:
    return select(Contact).where(
        Contact.organization_id == action.organization_id, Contact.lead_id.in_(items)
    )


def _new_custom(params: dict[str, Any], custom: dict[str, Any]) -> dict[str, Any]:
    """The object's `custom` dict after the edit (a new dict; `custom` is left alone)."""
    field_id, operation, value = params["custom_field_id"], params["operation"], params["value"]
    result = dict(custom)
    existing = result.get(field_id)
    if operation == "add":
        existing = (
            [] if existing is None else existing if isinstance(existing, list) else [existing]
        )
        new = existing + [v for v in value if v not in existing]
    elif operation == "remove":
        existing = (
            [] if existing is None else existing if isinstance(existing, list) else [existing]
        )
        new = [v for v in existing if v not in value]
    else:
        new = value
    # As `PUT` does: an empty value is no value.
    if new is None or new == []:
        result.pop(field_id, None)
    else:
        result[field_id] = new
    return result


def _edit_leads(
    session: Session, action: BulkAction, actor: Actor, items: Select[Any], now: datetime
) -> Progress:
    """Sets the status or a custom field of the chunk's leads, each changed lead with an
    `updated` event as `PUT /lead/{id}/` records it."""
    p = action.params
    leads = session.scalars(_leads(action, items).with_for_update()).all()
    if p["type"] == "set_lead_status":
        changed = [lead for lead in leads if lead.status_id != p["lead_status_id"]]
    else:
        changed = [
            lead for lead in leads if _new_custom(p, lead.custom or {}) != (lead.custom or {})
        ]
    progress = Progress(objects=len(leads))
    progress.skipped["unchanged"] = len(leads) - len(changed)
    if not changed:
        return _without_zero(progress)
    base_url = get_settings().public_url
    parts = lead_service.load_parts(session, changed)
    before = lead_service.serialize_all(session, parts, base_url)
    label = None
    if p["type"] == "set_lead_status":
        label = session.scalar(select(LeadStatus.label).where(LeadStatus.id == p["lead_status_id"]))
    for part in parts:
        lead = part.lead
        if label is not None:
            lead.status_id, part.status_label = p["lead_status_id"], label
        else:
            lead.custom = _new_custom(p, lead.custom or {})
        lead.date_updated, lead.updated_by = now, actor.user_id
    after = lead_service.serialize_all(session, parts, base_url)
    for old, new in zip(before, after, strict=True):
        record_update(
            session,
            actor,
            object_type="lead",
            before=old,
            after=new,
            lead_id=new["id"],
            meta={"bulk_action_id": action.id},
        )
    session.flush()
    return _without_zero(progress)


def _edit_contacts(
    session: Session, action: BulkAction, actor: Actor, items: Select[Any], now: datetime
) -> Progress:
    """Sets or clears a custom field on the contacts of the chunk's leads, each changed contact
    with an `updated` event as `PUT /contact/{id}/` records it; their leads' `date_updated`
    moves too, without a lead event, as with that PUT."""
    p = action.params
    contacts = session.scalars(
        _contacts(action, items).order_by(Contact.lead_id, Contact.id).with_for_update()
    ).all()
    changed = [c for c in contacts if _new_custom(p, c.custom or {}) != (c.custom or {})]
    progress = Progress(objects=len(contacts))
    progress.skipped["unchanged"] = len(contacts) - len(changed)
    if not changed:
        return _without_zero(progress)
    before = contact_service.serialized(session, changed)
    for contact in changed:
        contact.custom = _new_custom(p, contact.custom or {})
        contact.date_updated, contact.updated_by = now, actor.user_id
    session.flush()
    after = contact_service.serialized(session, changed)
    session.execute(
        update(Lead)
        .where(Lead.id.in_({c.lead_id for c in changed}))
        .values(date_updated=now, updated_by=actor.user_id)
        .execution_options(synchronize_session=False)
    )
    for contact, old, new in zip(changed, before, after, strict=True):
        record_update(
            session,
            actor,
            object_type="contact",
            before=old,
            after=new,
            lead_id=contact.lead_id,
            meta={"bulk_action_id": action.id},
        )
    session.flush()
    return _without_zero(progress)


def _without_zero(progress: Progress) -> Progress:
    """Drops zero counts: `skipped` lists only reasons that happened."""
    progress.skipped = +progress.skipped
    return progress
