"""Recording changes in the event log, in the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from clove.auth.service import AuthContext
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
    now = utcnow()
    event = Event(
        id=new_id("ev"),
        organization_id=actor.organization_id,
        object_type=object_type,
        object_id=object_id,
        lead_id=lead_id,
        action=action,
        user_id=actor.user_id,
        request_id=actor.request_id,
        api_key_id=actor.ctx.api_key_id,
        oauth_client_id=actor.ctx.oauth_client_id,
        data=data,
        previous_data=previous_data if previous_data is not None else {},
        changed_fields=changed_fields or [],
        meta={
            "request_method": actor.request_method,
            "request_path": actor.request_path,
            **(meta or {}),
        },
        date_created=now,
        date_updated=now,
    )
    session.add(event)
    return event


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
