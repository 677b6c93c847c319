"""Bulk actions: validation, the stored object and its job, pause and resume, events.

The work itself runs in `tasks` on a worker; this module is what a request does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Subquery, func, select
from sqlalchemy.orm import Session

from clove.bulk_action.kinds import BulkActionBody, Kind
from clove.errors import ValidationFailed, field_error, object_not_found
from clove.event.service import Actor, changes, record_event
from clove.kit.dates import iso_utc, utcnow
from clove.kit.ids import new_id
from clove.models import BulkAction
from clove.search import service as search_service
from clove.search.service import Search
from clove.search.tree import SortSpec, invalid, parse_node
from clove.worker import jobs

JOB_KIND = "bulk_action"
RESUME_WINDOW = timedelta(days=7)
RUNNING = ("created", "loading", "processing", "resuming")
DRY_RUN_SAMPLE = 10

_SORT: TypeAdapter[list[SortSpec]] = TypeAdapter(list[SortSpec])


# --- Selection -----------------------------------------------------------------------------------


def timezone_name(tz: tzinfo) -> str:
    """How a request's time zone is stored: a zone key, `UTC`, or an offset `+05:30`."""
    if isinstance(tz, ZoneInfo):
        return tz.key
    offset = tz.utcoffset(None) or timedelta(0)
    if not offset:
        return "UTC"
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def timezone_from_name(name: str) -> tzinfo:
    if name == "UTC":
        return UTC
    if name[:1] in "+-" and ":" in name:
        hours, minutes = name[1:].split(":")
        sign = -1 if name[0] == "-" else 1
        return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def compile_selection(
    session: Session, actor: Actor, action: BulkAction, object_type: str
) -> Search:
    """The search an action's `s_query` (or text `query`), `sort` and time zone describe; a
    400 naming the field when it is not a valid search over `object_type`."""
    tz = timezone_from_name(action.search_timezone)
    if action.s_query is not None:
        node = parse_node(action.s_query, "s_query")
        try:
            sort = _SORT.validate_python(action.sort, strict=True)
        except ValidationError as exc:
            raise invalid(exc, action.sort, "sort") from None
        scope = search_service.make_scope(session, actor, tz)
        try:
            search = search_service.compile_search(scope, node, sort)
        except ValidationFailed as exc:
            raise _renamed(exc) from None
        found = search.kind.name
    else:
        if action.sort:
            raise field_error("sort", "Sort a text query inside it (sort:...), or use s_query.")
        assert action.query is not None
        search = search_service.text_search(session, actor, tz, action.query, object_type)
        found = object_type
    if found != object_type:
        raise field_error("s_query", f"This bulk action works on {object_type} objects.")
    return search


def _renamed(exc: ValidationFailed) -> ValidationFailed:
    """Search errors name `query...` paths; in a bulk action that tree is `s_query`."""
    fields = {
        ("s_" + key if key == "query" or key.startswith(("query.", "query[")) else key): message
        for key, message in exc.field_errors.items()
    }
    return ValidationFailed(exc.errors, fields)


def numbered_ids(search: Search, results_limit: int | None) -> Subquery:
    """(`position`, `id`) of the matches, numbered from 0 in sort order, at most
    `results_limit` of them."""
    table = search.kind.table
    order = search_service.order_by(search.atoms)
    position = (func.row_number().over(order_by=order) - 1).label("position")
    numbered = select(position, table.c.id).where(search.where).subquery()
    if results_limit is None:
        return numbered
    return select(numbered).where(numbered.c.position < results_limit).subquery()


# --- Requests ------------------------------------------------------------------------------------


def create(
    session: Session, actor: Actor, kind: Kind, body: BulkActionBody, tz: tzinfo
) -> BulkAction | dict[str, Any]:
    """Validates the request; flushes the action, its job and its `created` event, or with
    `dry_run` returns what the action would do without writing anything."""
    if body.s_query is None and body.query is None:
        raise field_error("s_query", "This field is required.")
    params = kind.validate(session, actor, body)
    now = utcnow()
    action = BulkAction(
        id=new_id(kind.prefix),
        organization_id=actor.organization_id,
        kind=kind.name,
        status="created",
        query=body.query,
        s_query=body.s_query,
        sort=body.sort,
        results_limit=body.results_limit,
        search_timezone=timezone_name(tz),
        send_done_email=body.send_done_email,
        params=params,
        n_leads=None,
        n_leads_processed=0,
        n_objects=None,
        n_objects_processed=0,
        skipped={},
        created_by=actor.user_id,
        updated_by=actor.user_id,
        date_created=now,
        date_updated=now,
    )
    search = compile_selection(session, actor, action, kind.result_type(params))
    if body.dry_run:
        return dry_run(session, kind, action, search)
    session.add(action)
    jobs.enqueue(session, action.organization_id, JOB_KIND, action.id)
    session.flush()
    record(session, actor, kind, action, "created")
    return action


def dry_run(session: Session, kind: Kind, action: BulkAction, search: Search) -> dict[str, Any]:
    """The object as it would be when done, with a sample, computed now; nothing is written."""
    items = numbered_ids(search, action.results_limit)
    ids = select(items.c.id)
    progress, sample = kind.preview(session, action, ids, DRY_RUN_SAMPLE)
    count = session.scalar(select(func.count()).select_from(items)) or 0
    action.n_leads = count if kind.result_type(action.params) == "lead" else progress.leads
    action.n_objects = kind.count_objects(session, action, ids)
    action.skipped = dict(progress.skipped)
    body = serialize(kind, action)
    body.update(id=None, dry_run=True, sample=sample)
    return body


def list_actions(
    session: Session, organization_id: str, kind: Kind, skip: int, limit: int, **filters: str
) -> list[BulkAction]:
    """Up to `limit + 1` actions of `kind`, newest first."""
    query = select(BulkAction).where(
        BulkAction.organization_id == organization_id, BulkAction.kind == kind.name
    )
    for name, value in filters.items():
        query = query.where(BulkAction.params[name].as_string() == value)
    query = query.order_by(BulkAction.date_created.desc(), BulkAction.id.desc())
    return list(session.scalars(query.offset(skip).limit(limit + 1)))


def get_action(
    session: Session, organization_id: str, kind: Kind, action_id: str, *, lock: bool = False
) -> BulkAction:
    query = select(BulkAction).where(
        BulkAction.id == action_id,
        BulkAction.organization_id == organization_id,
        BulkAction.kind == kind.name,
    )
    action = session.scalars(query.with_for_update() if lock else query).first()
    if action is None:
        raise object_not_found(type(kind).__name__)
    return action


def update_status(
    session: Session, actor: Actor, kind: Kind, action: BulkAction, status: str
) -> None:
    """`paused` parks a running action's job; `resuming` wakes a paused one (within 7 days of
    the pause). Anything else is a 400; asking for the current state changes nothing."""
    if status == action.status or (status == "resuming" and action.status in RUNNING):
        return
    before = serialize(kind, action)
    now = utcnow()
    if status == "paused":
        if action.status not in RUNNING:
            raise field_error("status", f"A bulk action that is {action.status} cannot be paused.")
        action.status, action.paused_at = "paused", now
        jobs.set_state(session, action.id, "waiting")
        event = "paused"
    elif status == "resuming":
        if action.status != "paused":
            raise field_error("status", f"A bulk action that is {action.status} cannot resume.")
        if action.paused_at is not None and now - action.paused_at > RESUME_WINDOW:
            raise field_error("status", "This bulk action was paused more than 7 days ago.")
        action.status, action.paused_at = "resuming", None
        jobs.set_state(session, action.id, "ready")
        event = "updated"
    else:
        raise field_error("status", "Must be paused or resuming.")
    action.updated_by, action.date_updated = actor.user_id, now
    session.flush()
    record(session, actor, kind, action, event, before=before)


# --- Wire shape and events -----------------------------------------------------------------------


def serialize(kind: Kind, action: BulkAction) -> dict[str, Any]:
    """Close's fields for the kind, in alphabetical order as Close's pages list them, plus
    Clove's `skipped` (objects left alone, by reason)."""
    data = {
        "created_by": action.created_by,
        "date_created": iso_utc(action.date_created),
        "date_updated": iso_utc(action.date_updated),
        "id": action.id,
        "n_leads": action.n_leads,
        "n_leads_processed": action.n_leads_processed,
        "n_objects": action.n_objects,
        "n_objects_processed": action.n_objects_processed,
        "organization_id": action.organization_id,
        "query": action.query,
        "results_limit": action.results_limit,
        "s_query": action.s_query if action.s_query is not None else {},
        "send_done_email": action.send_done_email,
        "sort": list(action.sort or []),
        "status": action.status,
        "updated_by": action.updated_by,
        **kind.wire(action),
        "skipped": dict(action.skipped or {}),
    }
    return dict(sorted(data.items()))


def record(
    session: Session,
    actor: Actor,
    kind: Kind,
    action: BulkAction,
    event: str,
    *,
    before: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """Adds a `bulk_action.<kind>` event; with `before`, only what changed is in previous_data."""
    data = serialize(kind, action)
    changed, previous = changes(before, data) if before is not None else ([], None)
    record_event(
        session,
        actor,
        object_type=f"bulk_action.{kind.name}",
        action=event,
        object_id=action.id,
        lead_id=None,
        data=data,
        previous_data=previous,
        changed_fields=changed,
    )
