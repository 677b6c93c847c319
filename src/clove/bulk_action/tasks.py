"""The bulk action job: resolve the query once, then act on it chunk by chunk.

Phases, each chunk one transaction (see `clove.worker.jobs`):
`load` shows `loading`; `resolve` numbers the matching ids into `bulk_action_item` in sort
order and counts `n_leads`/`n_objects`; `process` acts on the next `chunk_size` items, deletes
them and adds to the counters; `finish` marks the action `done`. The done email goes out after
the last commit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Table, delete, func, insert, literal, select
from sqlalchemy.orm import Session

from clove.auth.service import AuthContext
from clove.bulk_action import service
from clove.bulk_action.catalogue import KINDS
from clove.bulk_action.kinds import Kind
from clove.config import Settings
from clove.email import system_mail
from clove.errors import APIError
from clove.event.service import Actor
from clove.models import BulkAction, BulkActionItem, Contact, Membership, User
from clove.worker.jobs import JobState, PermanentError

log = structlog.get_logger(__name__)

ITEMS: Table = BulkActionItem.__table__  # type: ignore[assignment]


class BulkActionJob:
    """The job handler for every kind of bulk action."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.chunk_size = settings.bulk_chunk_size

    def run_chunk(self, session: Session, job: JobState, now: datetime) -> None:
        action = session.scalars(
            select(BulkAction).where(BulkAction.id == job.subject_id).with_for_update()
        ).first()
        if action is None:  # the organization was deleted
            job.state = "done"
            return
        if action.status == "paused":
            job.state = "waiting"
            return
        kind = KINDS[action.kind]
        actor = _actor(session, action)
        if action.status == "resuming":
            self._set_status(session, actor, kind, action, "processing", now)
        if job.phase == "load":
            self._set_status(session, actor, kind, action, "loading", now)
            job.phase = "resolve"
        elif job.phase == "resolve":
            self._resolve(session, actor, kind, action, now)
            job.phase = "process"
        elif job.phase == "process":
            if self._process(session, actor, kind, action, job, now):
                job.position += self.chunk_size
            else:
                job.phase = "finish"
        else:
            self._finish(session, actor, kind, action, job, now)

    def fail(self, session: Session, job: JobState, error: str, now: datetime) -> None:
        action = session.get(BulkAction, job.subject_id)
        if action is None:
            return
        kind = KINDS[action.kind]
        action.error = error
        self._set_status(session, _actor(session, action), kind, action, "error", now)
        session.execute(delete(ITEMS).where(ITEMS.c.bulk_action_id == action.id))

    def _resolve(
        self, session: Session, actor: Actor, kind: Kind, action: BulkAction, now: datetime
    ) -> None:
        """Numbers every matching id once (one INSERT ... SELECT), so later chunks see the
        query as it was now, however the data changes meanwhile."""
        try:
            search = service.compile_selection(
                session, actor, action, kind.result_type(action.params)
            )
        except APIError as exc:  # e.g. a custom field the query names was deleted since
            raise PermanentError(f"The query is no longer valid: {exc.message}") from exc
        numbered = service.numbered_ids(search, action.results_limit)
        session.execute(
            insert(ITEMS).from_select(
                ["bulk_action_id", "position", "object_id"],
                select(literal(action.id), numbered.c.position, numbered.c.id),
            )
        )
        count = session.scalar(
            select(func.count()).select_from(ITEMS).where(ITEMS.c.bulk_action_id == action.id)
        )
        items = select(ITEMS.c.object_id).where(ITEMS.c.bulk_action_id == action.id)
        action.n_objects = kind.count_objects(session, action, items)
        leads = kind.result_type(action.params) == "lead"
        action.n_leads = count if leads else _leads_of(session, action, items)
        self._set_status(session, actor, kind, action, "processing", now)

    def _process(
        self,
        session: Session,
        actor: Actor,
        kind: Kind,
        action: BulkAction,
        job: JobState,
        now: datetime,
    ) -> bool:
        """Acts on the next `chunk_size` items; False when there were none left."""
        start = job.position
        in_chunk = (
            ITEMS.c.bulk_action_id == action.id,
            ITEMS.c.position >= start,
            ITEMS.c.position < start + self.chunk_size,
        )
        items = select(ITEMS.c.object_id).where(*in_chunk)
        progress = kind.process(session, action, actor, items, now)
        job.after_commit += progress.after_commit
        done = getattr(session.execute(delete(ITEMS).where(*in_chunk)), "rowcount", 0)
        if not (done or progress.objects or progress.skipped):
            return False
        before = service.serialize(kind, action)
        action.n_leads_processed += progress.leads if progress.leads is not None else done
        action.n_objects_processed += progress.objects
        action.skipped = dict(Counter(action.skipped or {}) + progress.skipped)
        action.date_updated = now
        session.flush()
        service.record(session, actor, kind, action, "updated", before=before)
        return bool(done)

    def _finish(
        self,
        session: Session,
        actor: Actor,
        kind: Kind,
        action: BulkAction,
        job: JobState,
        now: datetime,
    ) -> None:
        self._set_status(session, actor, kind, action, "done", now, event="completed")
        job.state = "done"
        if action.send_done_email and action.created_by:
            job.after_commit.append(self._done_email(session, kind, action))

    def _done_email(self, session: Session, kind: Kind, action: BulkAction) -> Callable[[], None]:
        """Sends the done email to the creator; run after the last commit (at most once)."""
        email = session.scalar(select(User.email).where(User.id == action.created_by))
        data = service.serialize(kind, action)

        def send() -> None:
            if email:
                system_mail.send_bulk_action_done(self.settings, email, kind.name, data)

        return send

    def _set_status(
        self,
        session: Session,
        actor: Actor,
        kind: Kind,
        action: BulkAction,
        status: str,
        now: datetime,
        *,
        event: str = "updated",
    ) -> None:
        before = service.serialize(kind, action)
        action.status, action.date_updated = status, now
        session.flush()
        service.record(session, actor, kind, action, event, before=before)


def _actor(session: Session, action: BulkAction) -> Actor:
    """The user who asked for the action: its events and objects are theirs."""
    membership = session.execute(
        select(Membership.id, Membership.role_id).where(
            Membership.organization_id == action.organization_id,
            Membership.user_id == action.created_by,
        )
    ).first()
    ctx = AuthContext(
        organization_id=action.organization_id,
        user_id=action.created_by or "",
        membership_id=membership.id if membership else "",
        role_id=membership.role_id if membership else "",
    )
    return Actor(ctx, request_id=None, request_method=None, request_path=None)


def _leads_of(session: Session, action: BulkAction, items: Any) -> int:
    """`n_leads` of an action whose items are not leads: the distinct leads they belong to."""
    return (
        session.scalar(
            select(func.count(func.distinct(Contact.lead_id))).where(Contact.id.in_(items))
        )
        or 0
    )
