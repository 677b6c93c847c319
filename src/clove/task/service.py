"""Tasks on leads (close-api.md §5.10): to-dos with a date, assigned to a member."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clove.errors import BadRequest, ValidationFailed, field_error, object_not_found
from clove.event.service import (
    Actor,
    changes,
    parse_date_filter,
    record_creation,
    record_deletion,
    record_event,
)
from clove.kit.dates import utcnow
from clove.kit.ids import new_id
from clove.lead.service import user_names
from clove.models import Contact, Lead, Membership, Task
from clove.task.schemas import TaskCreate, TaskUpdate, serialize_task

__all__ = ["serialize_task", "serialize_tasks"]

DOES_NOT_EXIST = "Object does not exist."
VIEWS = ("inbox", "future", "archive")
ORDERS = {"date": Task.date, "date_created": Task.date_created}


def object_type(task: Task) -> str:
    return f"task.{task.type}"


# --- Reading -------------------------------------------------------------------------------------


@dataclass
class TaskFilters:
    types: list[str] | None = field(default_factory=lambda: ["lead"])  # None: every type
    ids: list[str] | None = None
    lead_id: str | None = None
    assigned_to: str | None = None
    is_complete: bool | None = None
    view: str | None = None
    # (column name, operator, value): date / date_created / date_updated bounds.
    bounds: list[tuple[str, str, datetime]] = field(default_factory=list)
    order_by: str = "date"


_OPERATORS = {
    "gt": lambda c, v: c > v,
    "gte": lambda c, v: c >= v,
    "lt": lambda c, v: c < v,
    "lte": lambda c, v: c <= v,
}
_COLUMNS = {"date": Task.date, "date_created": Task.date_created, "date_updated": Task.date_updated}


def list_tasks(
    session: Session,
    organization_id: str,
    filters: TaskFilters,
    tz: tzinfo,
    *,
    skip: int,
    limit: int,
) -> list[Task]:
    """Up to `limit + 1` tasks, by `filters.order_by` (`-` for descending)."""
    query = select(Task).where(Task.organization_id == organization_id)
    if filters.types is not None:
        query = query.where(Task.type.in_(filters.types))
    if filters.ids is not None:
        query = query.where(Task.id.in_(filters.ids))
    if filters.lead_id is not None:
        query = query.where(Task.lead_id == filters.lead_id)
    if filters.assigned_to is not None:
        query = query.where(Task.assigned_to == filters.assigned_to)
    if filters.is_complete is not None:
        query = query.where(Task.is_complete == filters.is_complete)
    bounds = filters.bounds
    if filters.view in ("inbox", "future"):
        # The view's day boundary overrides the client's own `date` bounds (Close's rule).
        bounds = [b for b in bounds if b[0] != "date"]
        query = query.where(Task.is_complete.is_(False), *_view_condition(filters.view, tz))
    elif filters.view == "archive":
        query = query.where(Task.is_complete.is_(True))
    for name, op, value in bounds:
        query = query.where(_OPERATORS[op](_COLUMNS[name], value))
    column = ORDERS[filters.order_by.lstrip("-")]
    order = column.desc() if filters.order_by.startswith("-") else column.asc()
    if column is Task.date:
        # Dateless tasks last either way (NULLs sort differently on SQLite and PostgreSQL).
        query = query.order_by(Task.date.is_(None))
    query = query.order_by(order, Task.date_created, Task.id)
    return list(session.scalars(query.offset(skip).limit(limit + 1)))


def _view_condition(view: str, tz: tzinfo) -> list[Any]:
    """Inbox: due by the end of the caller's today (or dateless); future: due from tomorrow.
    Dates are stored as naive UTC; a day-only date is midnight of that day."""
    tomorrow = datetime.now(tz).date() + timedelta(days=1)
    boundary = datetime.combine(tomorrow, time(), tz).astimezone(UTC).replace(tzinfo=None)
    day_boundary = datetime.combine(tomorrow, time())
    if view == "inbox":
        return [
            (Task.date.is_(None))
            | (Task.date_has_time.is_(True) & (Task.date < boundary))
            | (Task.date_has_time.is_(False) & (Task.date < day_boundary))
        ]
    return [
        (Task.date_has_time.is_(True) & (Task.date >= boundary))
        | (Task.date_has_time.is_(False) & (Task.date >= day_boundary))
    ]


def get_task(session: Session, organization_id: str, task_id: str) -> Task:
    task = session.scalars(
        select(Task).where(Task.id == task_id, Task.organization_id == organization_id)
    ).first()
    if task is None:
        raise object_not_found("Task")
    return task


def serialize_tasks(session: Session, tasks: Sequence[Task]) -> list[dict[str, Any]]:
    """The tasks as Close returns them, with lead and user names in two queries."""
    lead_ids = {t.lead_id for t in tasks}
    leads: dict[str, str | None] = {}
    if lead_ids:
        rows = session.execute(select(Lead.id, Lead.name).where(Lead.id.in_(lead_ids)))
        leads = {lead_id: name for lead_id, name in rows.tuples()}
    names = user_names(session, [t.assigned_to for t in tasks])
    return [
        serialize_task(
            t, lead_name=leads.get(t.lead_id), assigned_to_name=names.get(t.assigned_to or "")
        )
        for t in tasks
    ]


def task_object(session: Session, task: Task) -> dict[str, Any]:
    return serialize_tasks(session, [task])[0]


# --- Writing -------------------------------------------------------------------------------------


def create_task(session: Session, actor: Actor, body: TaskCreate) -> Task:
    """Flushes a new lead task (assigned to the caller unless told otherwise), with its event."""
    lead = session.scalars(
        select(Lead).where(Lead.id == body.lead_id, Lead.organization_id == actor.organization_id)
    ).first()
    if lead is None:
        raise field_error("lead_id", DOES_NOT_EXIST)
    contact_id = _contact(session, lead, body.contact_id)
    assigned_to = _member(session, actor.organization_id, body.assigned_to or actor.user_id)
    raw_date = body.date if "date" in body.model_fields_set else body.due_date
    when, has_time = parse_task_date("date", raw_date)
    now = utcnow()
    task = Task(
        id=new_id("task"),
        organization_id=actor.organization_id,
        type=body.type,
        lead_id=lead.id,
        contact_id=contact_id,
        assigned_to=assigned_to,
        text=body.text,
        date=when,
        date_has_time=has_time,
        is_complete=body.is_complete,
        created_by=actor.user_id,
        updated_by=actor.user_id,
        date_created=now,
        date_updated=now,
    )
    session.add(task)
    session.flush()
    record_creation(
        session,
        actor,
        object_type=object_type(task),
        data=task_object(session, task),
        lead_id=lead.id,
    )
    return task


def update_task(session: Session, actor: Actor, task: Task, body: TaskUpdate) -> None:
    """A partial update; completing a task records a `completed` event, other changes
    `updated`, no change nothing."""
    values = body.changes()
    if "due_date" in values and "date" not in values:
        values["date"] = values["due_date"]
    values.pop("due_date", None)
    if "assigned_to" in values:
        values["assigned_to"] = _member(session, actor.organization_id, values["assigned_to"])
    if "contact_id" in values:
        lead = session.get(Lead, task.lead_id)
        assert lead is not None  # a task's lead is deleted with it
        values["contact_id"] = _contact(session, lead, values["contact_id"])
    if "date" in values:
        values["date"], values["date_has_time"] = parse_task_date("date", values["date"])

    before = task_object(session, task)
    was_complete = task.is_complete
    for key, value in values.items():
        setattr(task, key, value)
    after = task_object(session, task)
    changed, previous = changes(before, after)
    if not changed:
        return
    task.updated_by = actor.user_id
    task.date_updated = utcnow()
    session.flush()
    after = task_object(session, task)
    changed, previous = changes(before, after)
    record_event(
        session,
        actor,
        object_type=object_type(task),
        action="completed" if task.is_complete and not was_complete else "updated",
        object_id=task.id,
        lead_id=task.lead_id,
        data=after,
        previous_data=previous,
        changed_fields=changed,
    )


def delete_task(session: Session, actor: Actor, task: Task) -> None:
    data = task_object(session, task)
    session.delete(task)
    session.flush()
    record_deletion(
        session, actor, object_type=object_type(task), previous=data, lead_id=task.lead_id
    )


# --- Checks --------------------------------------------------------------------------------------


def parse_task_date(name: str, raw: str | None) -> tuple[datetime | None, bool]:
    """(value as naive UTC, whether it has a time): `2026-12-01` is a day, anything longer a
    date and time (UTC unless it carries an offset); null or empty is no date."""
    if raw is None or not raw.strip():
        return None, False
    value = raw.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time()), False
        return parse_date_filter(name, value), True
    except (ValueError, BadRequest):
        raise ValidationFailed(
            field_errors={name: "Enter a date (2026-12-01) or a date and time."}
        ) from None


def _member(session: Session, organization_id: str, user_id: str) -> str:
    found = session.scalar(
        select(Membership.user_id).where(
            Membership.organization_id == organization_id,
            Membership.user_id == user_id,
            Membership.is_active,
        )
    )
    if found is None:
        raise field_error("assigned_to", DOES_NOT_EXIST)
    return found


def _contact(session: Session, lead: Lead, contact_id: str | None) -> str | None:
    if contact_id is None:
        return None
    found = session.scalar(
        select(Contact.id).where(
            Contact.id == contact_id,
            Contact.organization_id == lead.organization_id,
            Contact.lead_id == lead.id,
        )
    )
    if found is None:
        raise field_error("contact_id", DOES_NOT_EXIST)
    return found
