"""Request bodies and the wire shape of tasks (close-api.md §5.10)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from clove.kit.dates import iso_utc
from clove.kit.schemas import PatchBody, TolerantBody
from clove.models import Task

READ_ONLY = frozenset(
    {
        "id",
        "organization_id",
        "lead_name",
        "contact_name",
        "assigned_to_name",
        "created_by",
        "created_by_name",
        "updated_by",
        "updated_by_name",
        "date_created",
        "date_updated",
        "is_dateless",
        "object_type",
        "object_id",
        "view",
    }
)


def task_date(task: Task) -> str | None:
    """Close's task `date`: `YYYY-MM-DD` for a day, a full datetime when a time was given."""
    if task.date is None:
        return None
    return iso_utc(task.date) if task.date_has_time else task.date.date().isoformat()


def serialize_task(
    task: Task, *, lead_name: str | None = None, assigned_to_name: str | None = None
) -> dict[str, Any]:
    """Close's task object. `lead_name` and `assigned_to_name` name `lead_id` and
    `assigned_to`; the contact's and other users' names are not looked up (null)."""
    date = task_date(task)
    return {
        "_type": task.type,
        "id": task.id,
        "organization_id": task.organization_id,
        "lead_id": task.lead_id,
        "lead_name": lead_name,
        "contact_id": task.contact_id,
        "contact_name": None,
        "assigned_to": task.assigned_to,
        "assigned_to_name": assigned_to_name,
        "text": task.text,
        "date": date,
        "due_date": date,
        "is_dateless": task.date is None,
        "is_complete": task.is_complete,
        "object_type": None,
        "object_id": None,
        "created_by": task.created_by,
        "created_by_name": assigned_to_name if task.created_by == task.assigned_to else None,
        "updated_by": task.updated_by,
        "updated_by_name": assigned_to_name if task.updated_by == task.assigned_to else None,
        "date_created": iso_utc(task.date_created),
        "date_updated": iso_utc(task.date_updated),
    }


class TaskCreate(TolerantBody):
    read_only: ClassVar[frozenset[str]] = READ_ONLY

    type: Literal["lead"] = Field(default="lead", alias="_type")
    lead_id: str = Field(max_length=64)
    contact_id: str | None = Field(default=None, max_length=64)
    assigned_to: str | None = Field(default=None, max_length=64)
    text: str = Field(default="", max_length=100_000)
    # A date (`2026-12-01`) or a date and time; null for a dateless task.
    date: str | None = Field(default=None, max_length=40)
    due_date: str | None = Field(default=None, max_length=40)
    is_complete: bool = False


class TaskUpdate(TolerantBody, PatchBody):
    read_only: ClassVar[frozenset[str]] = READ_ONLY | {"_type", "lead_id"}
    nullable: ClassVar[frozenset[str]] = frozenset({"date", "due_date", "contact_id"})

    assigned_to: str | None = Field(default=None, max_length=64)
    text: str | None = Field(default=None, max_length=100_000)
    date: str | None = Field(default=None, max_length=40)
    due_date: str | None = Field(default=None, max_length=40)
    is_complete: bool | None = None
    contact_id: str | None = Field(default=None, max_length=64)
