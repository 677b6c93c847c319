"""Fan-out: turning committed events into pending deliveries, one per matching subscription.

Events are written in many places, some set-based (bulk subscribe's INSERT ... SELECT), so
fan-out does not hook the writers. Every event starts with `fanned_out` false; a worker takes
a batch of those (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite), inserts a
delivery per (event, active subscription of its organization that wants it) and marks the batch,
all in one transaction. So every committed event is looked at exactly once, and a worker killed
half way leaves the batch to be done again; deliveries are unique per (webhook, event).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Table, false, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from clove.event.service import serialize_event
from clove.kit.ids import new_id
from clove.models import Event, Webhook, WebhookDelivery
from clove.webhook.filters import matches

log = structlog.get_logger(__name__)

DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[assignment]

# (organization, object_type, action) -> {webhook id: (its creation date, its filters)};
# a None filter means the subscription wants every such event.
Routes = dict[tuple[str, str, str], dict[str, tuple[datetime, list[dict[str, Any] | None]]]]


def fan_out(
    session: Session,
    now: datetime,
    *,
    limit: int = 1000,
    max_backlog: int = 100_000,
    organization_id: str | None = None,
) -> int:
    """Adds pending deliveries for up to `limit` events not yet fanned out, marks them, and
    pauses subscriptions whose backlog reached `max_backlog`; how many events it took."""
    query = (
        select(Event.id, Event.organization_id, Event.object_type, Event.action, Event.date_created)
        .where(Event.fanned_out == false())
        .order_by(Event.date_created)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if organization_id is not None:
        query = query.where(Event.organization_id == organization_id)
    events = session.execute(query).all()
    if not events:
        return 0
    routes = _routes(session, {e.organization_id for e in events})
    wanted: list[tuple[str, str, str]] = []  # (webhook id, event id, organization id)
    filtered: dict[str, list[tuple[str, list[dict[str, Any] | None]]]] = defaultdict(list)
    for event in events:
        for webhook_id, (created, filters) in routes.get(
            (event.organization_id, event.object_type, event.action), {}
        ).items():
            if event.date_created < created:  # before the subscription existed
                continue
            if None in filters:
                wanted.append((webhook_id, event.id, event.organization_id))
            else:
                filtered[event.id].append((webhook_id, filters))
    wanted += _passing_filters(session, filtered)
    if wanted:
        _insert_deliveries(session, wanted, now)
    session.execute(
        update(Event)
        .where(Event.id.in_([e.id for e in events]))
        .values(fanned_out=True)
        .execution_options(synchronize_session=False)
    )
    if wanted:
        pause_backlogged(session, {webhook_id for webhook_id, _, _ in wanted}, max_backlog, now)
    return len(events)


def _routes(session: Session, organization_ids: set[str]) -> Routes:
    routes: Routes = defaultdict(dict)
    webhooks = session.execute(
        select(Webhook.id, Webhook.organization_id, Webhook.events, Webhook.date_created).where(
            Webhook.organization_id.in_(organization_ids), Webhook.status == "active"
        )
    )
    for webhook in webhooks:
        for wanted in webhook.events or []:
            key = (webhook.organization_id, wanted["object_type"], wanted["action"])
            entry = routes[key].setdefault(webhook.id, (webhook.date_created, []))
            entry[1].append(wanted.get("extra_filter"))
    return routes


def _passing_filters(
    session: Session, filtered: dict[str, list[tuple[str, list[dict[str, Any] | None]]]]
) -> list[tuple[str, str, str]]:
    """The (webhook, event, organization) triples whose `extra_filter` the event document
    passes; only these events are loaded whole."""
    if not filtered:
        return []
    passing = []
    for event in session.scalars(select(Event).where(Event.id.in_(list(filtered)))):
        document = serialize_event(event)
        for webhook_id, filters in filtered[event.id]:
            if any(matches(f, document) for f in filters if f is not None):
                passing.append((webhook_id, event.id, event.organization_id))
    return passing


def _insert_deliveries(session: Session, wanted: list[tuple[str, str, str]], now: datetime) -> None:
    rows = [
        {
            "id": new_id("whdel"),
            "organization_id": organization_id,
            "webhook_id": webhook_id,
            "event_id": event_id,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "date_created": now,
            "date_updated": now,
        }
        for webhook_id, event_id, organization_id in wanted
    ]
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    # A batch repeated after a crash finds its deliveries already there.
    session.execute(insert(DELIVERIES).on_conflict_do_nothing(), rows)


def pause_backlogged(
    session: Session, webhook_ids: set[str], max_backlog: int, now: datetime
) -> list[str]:
    """Pauses (reason `backlog`) the subscriptions among `webhook_ids` with `max_backlog` or
    more pending deliveries, dropping those; the ids it paused."""
    paused = []
    for webhook_id in sorted(webhook_ids):
        # Counting stops at the limit, so a healthy subscription costs a short index scan.
        pending = (
            select(WebhookDelivery.id)
            .where(WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.status == "pending")
            .limit(max_backlog)
            .subquery()
        )
        if (session.scalar(select(func.count()).select_from(pending)) or 0) >= max_backlog:
            pause(session, webhook_id, "backlog", now)
            paused.append(webhook_id)
    return paused


def pause(session: Session, webhook_id: str, reason: str, now: datetime) -> None:
    """Pauses a subscription and drops its pending deliveries, as Close clears the queue."""
    session.execute(
        update(Webhook)
        .where(Webhook.id == webhook_id)
        .values(status="paused", pause_reason=reason, date_updated=now)
    )
    drop_pending(session, webhook_id, now)
    log.warning("webhook_paused", webhook_id=webhook_id, reason=reason)


def drop_pending(session: Session, webhook_id: str, now: datetime) -> None:
    """Drops the subscription's pending deliveries; a leased one keeps its lease, so the
    worker sending it can still record that it arrived."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.status == "pending")
        .values(status="dropped", date_updated=now)
        .execution_options(synchronize_session=False)
    )
