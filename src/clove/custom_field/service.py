"""Custom fields: definitions, and validation of the values written on leads and contacts."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from clove.errors import ValidationFailed


def custom_keys(payload: dict[str, Any]) -> dict[str, Any]:
    """The `custom.*` entries of a request body (`custom.cf_X`, `custom.cf_X.add`, ...)."""
    return {k: v for k, v in payload.items() if k.startswith("custom.")}


def apply_custom_values(
    session: Session,
    organization_id: str,
    object_type: str,
    current: dict[str, Any],
    writes: dict[str, Any],
) -> dict[str, Any]:
    """The new `custom` dict (keyed by field id) after `writes` (keys `custom.cf_X[.add|.remove]`).

    Validates every value against its field's type; raises ValidationFailed with
    field-errors keyed by the request key. Does not modify `current`.
    """
    if writes:
        raise ValidationFailed(field_errors={k: "Unknown custom field." for k in writes})
    return dict(current)


def render_custom_values(values: dict[str, Any]) -> dict[str, Any]:
    """`{"custom.cf_X": value}` for an object's response body."""
    return {f"custom.{field_id}": value for field_id, value in values.items()}
