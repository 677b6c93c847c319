"""Recording changes in the event log, in the caller's transaction."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, literal, select, tuple_
from sqlalchemy.orm import Session

from clove.auth.service import AuthContext
from clove.errors import BadRequest, object_not_found
from clove.kit.dates import iso_naive, utcnow
from clove.kit.ids import new_id
from clove.models import Event


@dataclass(frozen=True)
class Actor:
    """Who changes data and through which request: the credential plus request details."""

    ctx: AuthContext
    request_id: str | None = None
    request_method: str | None = None
    request_path: str | None = None

    @property
    def organization_id(self) -> str:
        return self.ctx.organization_id

    @property
    def user_id(self) -> str:
        return self.ctx.user_id


def changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """(changed_fields, previous_data): the keys whose values differ and their old values."""
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return changed, {k: before.get(k) for k in changed}


def record_event(
    session: Session,
    actor: Actor,
    *,
    object_type: str,
    action: str,
    object_id: str | None,
    lead_id: str | None,
    data: dict[str, Any] | None,
    previous_data: dict[str, Any] | None = None,
    changed_fields: list[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> Event:
    """Adds one event row to the session (flushed with the change it describes)."""
    event = Event(
        **event_values(
            actor,
            object_type=object_type,
            action=action,
            object_id=object_id,
            lead_id=lead_id,
            data=data,
            previous_data=previous_data,
            changed_fields=changed_fields,
            meta=meta,
        )
    )
    session.add(event)
    return event


def event_values(
    actor: Actor,
    *,
    object_type: str,
    action: str,
    object_id: str | None,
    lead_id: str | None,
    data: dict[str, Any] | None,
    previous_data: dict[str, Any] | None = None,
    changed_fields: list[str] | None = None,
    meta: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The column values of one event row (for `record_event`, or a bulk INSERT of many)."""
    now = now or utcnow()
    return {
        "id": new_id("ev"),
        "organization_id": actor.organization_id,
        "object_type": object_type,
        "object_id": object_id,
        "lead_id": lead_id,
        "action": action,
        "user_id": actor.user_id,
        "request_id": actor.request_id,
        "api_key_id": actor.ctx.api_key_id,
        "oauth_client_id": actor.ctx.oauth_client_id,
        "data": data,
        "previous_data": previous_data if previous_data is not None else {},
        "changed_fields": changed_fields or [],
        "meta": {
            "request_method": actor.request_method,
            "request_path": actor.request_path,
            **(meta or {}),
        },
        "date_created": now,
        "date_updated": now,
    }


def record_update(
    session: Session,
    actor: Actor,
    *,
    object_type: str,
    before: dict[str, Any],
    after: dict[str, Any],
    lead_id: str | None,
    meta: dict[str, Any] | None = None,
) -> bool:
    """Adds an `updated` event with the changed fields and their old values; adds nothing and
    returns False when nothing changed."""
    changed, previous = changes(before, after)
    if changed:
        record_event(
            session,
            actor,
            object_type=object_type,
            action="updated",
            object_id=after["id"],
            lead_id=lead_id,
            data=after,
            previous_data=previous,
            changed_fields=changed,
            meta=meta,
        )
    return bool(changed)


def record_creation(
    session: Session, actor: Actor, *, object_type: str, data: dict[str, Any], lead_id: str | None
) -> None:
    """Adds a `created` event: the whole new object as its data."""
    record_event(
        session,
        actor,
        object_type=object_type,
        action="created",
        object_id=data["id"],
        lead_id=lead_id,
        data=data,
    )


def record_deletion(
    session: Session,
    actor: Actor,
    *,
    object_type: str,
    previous: dict[str, Any],
    lead_id: str | None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Adds a `deleted` event: no data, the whole object as it was in previous_data."""
    record_event(
        session,
        actor,
        object_type=object_type,
        action="deleted",
        object_id=previous["id"],
        lead_id=lead_id,
        data=None,
        previous_data=previous,
        meta=meta,
    )


def serialize_event(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "organization_id": event.organization_id,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "lead_id": event.lead_id,
        "action": event.action,
        "user_id": event.user_id,
        "request_id": event.request_id,
        "api_key_id": event.api_key_id,
        "oauth_client_id": event.oauth_client_id,
        "data": event.data,
        "previous_data": event.previous_data,
        "changed_fields": event.changed_fields,
        "meta": event.meta,
        "date_created": iso_naive(event.date_created),
        "date_updated": iso_naive(event.date_updated),
    }


# --- Reading the event log (close-api.md §6.1) --------------------------------------------------

RETENTION = timedelta(days=30)
MAX_LIMIT = 50
MAX_CURSOR_LENGTH = 2000
DATE_FILTERS = ("gt", "gte", "lt", "lte")

# Close serves only these filter combinations, each optionally with date_updated__* bounds;
# the empty one is the whole log.
ALLOWED_COMBINATIONS: tuple[tuple[str, ...], ...] = (
    (),
    ("object_type", "object_id"),
    ("object_type", "action"),
    ("object_id", "action"),
    ("lead_id", "object_type"),
    ("lead_id", "object_type", "action"),
    ("lead_id", "user_id", "object_type"),
    ("lead_id", "user_id", "object_type", "action"),
    ("lead_id", "user_id"),
    ("user_id", "object_id"),
    ("user_id", "object_id", "action"),
    ("user_id", "object_type"),
    ("user_id", "object_type", "action"),
    ("lead_id",),
    ("user_id",),
    ("request_id",),
)
_ALLOWED = frozenset(frozenset(c) for c in ALLOWED_COMBINATIONS)
FILTERS = ("object_type", "object_id", "action", "lead_id", "user_id", "request_id")
_COLUMNS: dict[str, Any] = {name: getattr(Event, name) for name in FILTERS}

_TIME = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,6})?)?"
# `+0000` sent unencoded in a query string arrives as ` 0000`.
_SPACE_FOR_PLUS = re.compile(rf"({_TIME}) (\d\d(?::?\d\d)?)")
_CURSOR_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}")
_CURSOR_ID = re.compile(r"[A-Za-z0-9_]{1,64}")


def check_filter_combination(filters: dict[str, str]) -> None:
    """Raises BadRequest unless the filters are one of Close's allowed combinations."""
    if frozenset(filters) in _ALLOWED:
        return
    allowed = "; ".join(" + ".join(c) for c in ALLOWED_COMBINATIONS if c)
    given = " + ".join(name for name in FILTERS if name in filters)
    raise BadRequest(
        f"Unsupported combination of event log filters: {given}. Allowed combinations, each "
        f"optionally with date_updated__gt/__gte/__lt/__lte: {allowed}; or none."
    )


def parse_date_filter(name: str, raw: str) -> datetime:
    """A date filter value as naive UTC: ISO 8601 with or without an offset (`+00:00`,
    `+0000`, `Z`), with or without microseconds, or a plain `YYYY-MM-DD` (midnight).
    Values without an offset are UTC, like the event dates themselves."""
    value = raw.strip()
    spaced = _SPACE_FOR_PLUS.fullmatch(value)
    if spaced:
        value = f"{spaced.group(1)}+{spaced.group(2)}"
    try:
        if len(value) > 40:
            raise ValueError(value)
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise BadRequest(
            f"{name} must be an ISO 8601 date or date and time, "
            "e.g. 2024-01-31 or 2024-01-31T12:00:00 (UTC unless an offset is given)"
        ) from None
    return parsed


@dataclass(frozen=True)
class DateBounds:
    """`date_updated__gt/__gte/__lt/__lte` as naive UTC datetimes."""

    gt: datetime | None = None
    gte: datetime | None = None
    lt: datetime | None = None
    lte: datetime | None = None

    def conditions(self) -> list[Any]:
        column = Event.date_updated
        found = []
        if self.gt is not None:
            found.append(column > self.gt)
        if self.gte is not None:
            found.append(column >= self.gte)
        if self.lt is not None:
            found.append(column < self.lt)
        if self.lte is not None:
            found.append(column <= self.lte)
        return found

    def as_dict(self) -> dict[str, str]:
        return {op: iso_naive(getattr(self, op)) or "" for op in DATE_FILTERS if getattr(self, op)}


@dataclass(frozen=True)
class EventCursor:
    """A position in the log, newest first by (date_updated, id), and which way to read from it.

    `next` reads the events older than the position, `previous` the newer ones. The date bounds
    of the query that issued it travel along, so a client need not repeat them (Close's rule);
    the other filters must be repeated.
    """

    date_updated: datetime
    id: str
    direction: str  # "next" | "previous"
    bounds: DateBounds = DateBounds()

    def encode(self) -> str:
        payload = {
            "d": iso_naive(self.date_updated),
            "i": self.id,
            "r": self.direction,
            "b": self.bounds.as_dict(),
        }
        raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> EventCursor:
        """Raises BadRequest for anything that is not a cursor this server issued."""
        try:
            if len(token) > MAX_CURSOR_LENGTH or not re.fullmatch(r"[A-Za-z0-9_-]+", token):
                raise ValueError(token)
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            payload = json.loads(raw)
            if not isinstance(payload, dict) or set(payload) != {"d", "i", "r", "b"}:
                raise ValueError(token)
            date, event_id, direction, bounds = (payload[k] for k in ("d", "i", "r", "b"))
            if not (isinstance(date, str) and _CURSOR_DATE.fullmatch(date)):
                raise ValueError(token)
            if not (isinstance(event_id, str) and _CURSOR_ID.fullmatch(event_id)):
                raise ValueError(token)
            if direction not in ("next", "previous") or not isinstance(bounds, dict):
                raise ValueError(token)
            if not set(bounds) <= set(DATE_FILTERS):
                raise ValueError(token)
            parsed: dict[str, datetime] = {}
            for op, value in bounds.items():
                if not (isinstance(value, str) and _CURSOR_DATE.fullmatch(value)):
                    raise ValueError(token)
                parsed[op] = datetime.fromisoformat(value)
            return cls(datetime.fromisoformat(date), event_id, direction, DateBounds(**parsed))
        except (ValueError, TypeError, RecursionError, binascii.Error):
            raise BadRequest(
                "Invalid _cursor: pass cursor_next or cursor_previous from an earlier response "
                "unchanged, or leave _cursor empty for the newest events."
            ) from None


@dataclass
class EventPage:
    events: list[Event]
    cursor_next: str | None
    cursor_previous: str | None


def _position() -> Any:
    return tuple_(Event.date_updated, Event.id)


def _at(key: tuple[datetime, str]) -> Any:
    date_updated, event_id = key
    return tuple_(literal(date_updated, Event.date_updated.type), literal(event_id, Event.id.type))


def list_events(
    session: Session,
    organization_id: str,
    filters: dict[str, str],
    bounds: DateBounds,
    cursor: EventCursor | None,
    limit: int,
    now: datetime,
) -> EventPage:
    """One page of the organization's log, newest first; at most two queries whatever `limit`.

    Keyset paging on (date_updated, id): events written between two requests neither repeat
    nor hide older ones. Events past the retention period are never listed.
    """
    check_filter_combination(filters)
    conditions = [
        Event.organization_id == organization_id,
        Event.date_updated >= now - RETENTION,
        *(_COLUMNS[name] == value for name, value in filters.items()),
        *bounds.conditions(),
    ]
    if cursor is not None:
        conditions += cursor.bounds.conditions()
        carried = _merge(cursor.bounds, bounds)
    else:
        carried = bounds

    page = select(Event).where(*conditions)
    older = newer = False
    if cursor is None or cursor.direction == "next":
        if cursor is not None:
            page = page.where(_position() < _at(_key(cursor)))
        page = page.order_by(Event.date_updated.desc(), Event.id.desc())
        rows = list(session.scalars(page.limit(limit + 1)))
        events, older = rows[:limit], len(rows) > limit
    else:
        page = page.where(_position() > _at(_key(cursor)))
        page = page.order_by(Event.date_updated.asc(), Event.id.asc())
        rows = list(session.scalars(page.limit(limit + 1)))
        events, newer = rows[:limit][::-1], len(rows) > limit

    # The page's edges; an empty page after a cursor sits at the cursor's position.
    fallback = _key(cursor) if cursor is not None else None
    top = (events[0].date_updated, events[0].id) if events else fallback
    bottom = (events[-1].date_updated, events[-1].id) if events else fallback
    if top is None or bottom is None:  # an empty first page
        return EventPage(events, None, None)
    # One look the other way; nothing is newer than a first page.
    if cursor is not None and cursor.direction == "next":
        newer = _exists(session, conditions, _position() > _at(top))
    elif cursor is not None:
        older = _exists(session, conditions, _position() < _at(bottom))
    return EventPage(
        events,
        EventCursor(*bottom, "next", carried).encode() if older else None,
        EventCursor(*top, "previous", carried).encode() if newer else None,
    )


def _key(cursor: EventCursor) -> tuple[datetime, str]:
    return (cursor.date_updated, cursor.id)


def _merge(first: DateBounds, second: DateBounds) -> DateBounds:
    """Both sets of bounds at once: the narrower of each."""

    def pick(a: datetime | None, b: datetime | None, low: bool) -> datetime | None:
        if a is None or b is None:
            return a or b
        return max(a, b) if low else min(a, b)

    return DateBounds(
        gt=pick(first.gt, second.gt, True),
        gte=pick(first.gte, second.gte, True),
        lt=pick(first.lt, second.lt, False),
        lte=pick(first.lte, second.lte, False),
    )


def _exists(session: Session, conditions: list[Any], beyond: Any) -> bool:
    return session.scalar(select(Event.id).where(*conditions, beyond).limit(1)) is not None


def get_event(session: Session, organization_id: str, event_id: str, now: datetime) -> Event:
    """The organization's event; 404 for another organization's or an expired one."""
    event = session.scalars(
        select(Event).where(
            Event.id == event_id,
            Event.organization_id == organization_id,
            Event.date_updated >= now - RETENTION,
        )
    ).first()
    if event is None:
        raise object_not_found("Event")
    return event


def purge_old_events(session: Session, now: datetime) -> int:
    """Deletes, in one statement, every event last updated before the retention period;
    returns how many. Flushes only (the caller commits)."""
    result = session.execute(
        delete(Event)
        .where(Event.date_updated < now - RETENTION)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
