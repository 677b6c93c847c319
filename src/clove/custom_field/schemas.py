"""Request bodies and the wire shape of custom field definitions and schemas."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from clove.kit.dates import iso_utc
from clove.kit.schemas import Body, PatchBody
from clove.models import CustomField

OBJECT_TYPES = ("lead", "contact")
FieldType = Literal["text", "number", "date", "datetime", "choices", "user", "contact", "hidden"]
# Close allows several values only where a value picks from a set (close-api.md §2.7).
MULTI_VALUE_TYPES = frozenset({"choices", "user", "contact"})


def serialize_field(field: CustomField) -> dict[str, Any]:
    return {
        "id": field.id,
        "name": field.name,
        "description": field.description,
        "type": field.type,
        "choices": list(field.choices) if field.choices is not None else None,
        "accepts_multiple_values": field.accepts_multiple_values,
        # Role restrictions are not stored yet (see FieldCreate): every field is editable by all.
        "editable_with_roles": [],
        "organization_id": field.organization_id,
        "created_by": field.created_by,
        "updated_by": field.updated_by,
        "date_created": iso_utc(field.date_created),
        "date_updated": iso_utc(field.date_updated),
    }


def serialize_schema(fields: list[CustomField]) -> dict[str, Any]:
    """`/custom_field_schema/{object_type}/`: every field in display order; none is shared yet."""
    return {"fields": [{**serialize_field(f), "is_shared": False} for f in fields]}


class FieldCreate(Body):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    type: FieldType
    choices: list[str] | None = None
    accepts_multiple_values: bool = False
    editable_with_roles: list[str] = Field(default_factory=list)


class FieldUpdate(PatchBody):
    nullable: ClassVar[frozenset[str]] = frozenset({"description", "choices"})

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    type: FieldType | None = None
    choices: list[str] | None = None
    accepts_multiple_values: bool | None = None
    editable_with_roles: list[str] | None = None


class SchemaEntry(Body):
    id: str = Field(min_length=1, max_length=64)


class SchemaUpdate(Body):
    fields: list[SchemaEntry]
