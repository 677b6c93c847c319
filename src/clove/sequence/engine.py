"""The sequence engine: runs each active subscription's next step when it is due.

One pass (`SequenceEngine.run_once`) is three transactions and the sends between them:

1. **claim**: due subscriptions (`next_step_at <= now`, active, of an active sequence, not
   leased) get `locked_until = now + lease`, in one UPDATE (`FOR UPDATE SKIP LOCKED` on
   PostgreSQL; SQLite has one writer at a time). Two workers never hold the same subscription.
2. **prepare**: for each claimed step that is due inside the schedule window, a
   `SequenceStepRun` row (unique per subscription and step) is written with status `sending`,
   the email activity (status `outbox`) and a Message-ID derived from the two ids. Call steps
   finish here (a task is created). Committed *before* any email leaves.
3. **send** over SMTP, one reused connection per sender account.
4. **record**: runs become `sent` (or `retry` / `failed`), activities `sent` (or `error`),
   subscriptions move to their next step or end. Committed.

Never twice: a step is sent only by the worker that wrote its run as `sending` in step 2. A run
found still `sending` by a later pass means a worker died between 2 and 4: it is never sent
again; it becomes `unconfirmed` and the subscription moves on. That is the one window that
remains: a crash after the run was committed and before the SMTP server accepted the message
loses that one email (at-most-once), rather than risking a second copy. See docs/decisions.md.
"""

from __future__ import annotations

import html
import os
import re
import signal
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from typing import Any

import structlog
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from clove.auth.service import AuthContext
from clove.email.smtp import ConnectionPool, SmtpFailure
from clove.email.smtp import send as smtp_send
from clove.email_template.render import looks_like_html, render_template, template_contexts
from clove.errors import ValidationFailed
from clove.event.service import Actor, record_creation, record_event
from clove.kit.dates import utcnow
from clove.kit.ids import new_id
from clove.models import (
    ConnectedAccount,
    EmailActivity,
    EmailTemplate,
    Sequence,
    SequenceStep,
    SequenceStepRun,
    SequenceSubscription,
    Task,
    UnsubscribedEmail,
)
from clove.sequence.schedule import next_opening

log = structlog.get_logger(__name__)

# Waits after the 1st, 2nd, ... temporary failure of one step; one more failure ends it.
RETRY_DELAYS = (60, 300, 1800, 7200)

Clock = Callable[[], datetime]


def _crash_point(name: str) -> None:
    """Fault injection for the crash tests: SIGKILL this process at the named point when
    CLOVE_TEST_CRASH_AT names it (never set in production)."""
    if os.environ.get("CLOVE_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Outgoing:
    """One email prepared in step 2, and what happened when it was sent."""

    subscription_id: str
    step_id: str
    position: int
    account_id: str
    sender: str
    recipient: str
    message: bytes
    message_id: str
    subject: str
    failure: SmtpFailure | None = None


@dataclass
class Batch:
    """What one pass loaded for its claimed subscriptions (one query per kind)."""

    subscriptions: list[SequenceSubscription]
    sequences: dict[str, Sequence]
    steps: dict[str, list[SequenceStep]]
    templates: dict[str, EmailTemplate] = field(default_factory=dict)
    accounts: dict[str, ConnectedAccount] = field(default_factory=dict)
    unsubscribed: set[tuple[str, str]] = field(default_factory=set)
    runs: dict[tuple[str, str], SequenceStepRun] = field(default_factory=dict)


class SequenceEngine:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        clock: Clock = utcnow,
        lease_seconds: float = 300,
        batch_size: int = 200,
        smtp_config: Callable[[ConnectedAccount], Any] | None = None,
        organization_id: str | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.clock = clock
        self.lease = timedelta(seconds=lease_seconds)
        self.batch_size = batch_size
        self.pool = ConnectionPool()
        self.organization_id = organization_id  # None: every organization's work
        if smtp_config is None:
            from clove.connected_account.service import smtp_config as default_config

            smtp_config = default_config
        self.smtp_config = smtp_config

    def close(self) -> None:
        self.pool.close_all()

    def run_once(self) -> int:
        """Claims and runs one batch of due steps; returns how many subscriptions it claimed."""
        now = self.clock()
        with self.session_factory() as session:
            ids = claim_due(session, now, now + self.lease, self.batch_size, self.organization_id)
            session.commit()
        if not ids:
            return 0
        with self.session_factory() as session:
            outgoing = self._prepare(session, ids, now)
            session.commit()
        _crash_point("before_smtp")
        self._send(outgoing)
        if outgoing:
            with self.session_factory() as session:
                self._record(session, outgoing, self.clock())
                session.commit()
            _crash_point("after_commit")
        return len(ids)

    def run_until_idle(self, max_passes: int = 10_000) -> int:
        """Runs passes until nothing is due now (tests and the benchmark); returns the total."""
        total = 0
        for _ in range(max_passes):
            claimed = self.run_once()
            if not claimed:
                break
            total += claimed
        return total

    # --- step 2 --------------------------------------------------------------------------------

    def _prepare(self, session: Session, ids: list[str], now: datetime) -> list[Outgoing]:
        batch = _load(session, ids)
        outgoing: list[Outgoing] = []
        renders: list[tuple[SequenceSubscription, SequenceStep, SequenceStepRun | None]] = []
        for sub in batch.subscriptions:
            sub.locked_until = None  # released at commit unless sending
            step = _current_step(batch, sub)
            if sub.status != "active" or batch.sequences[sub.sequence_id].status != "active":
                continue
            if step is None:
                _finish(session, sub, now, status="finished", reason=None)
                continue
            due = _due_at(batch.sequences[sub.sequence_id], step, sub)
            if due > now:
                sub.next_step_at = due
                continue
            run = batch.runs.get((sub.id, step.id))
            if run is not None and run.status == "sending":
                self._recover_unconfirmed(session, batch, sub, step, run, now)
            elif run is not None and run.status != "retry":
                _advance(session, batch, sub, now)  # already done; only the move on was lost
            elif step.step_type == "call":
                _create_call_task(session, batch, sub, step, run, now)
            else:
                problem = _cannot_email(batch, sub, step)
                if problem:
                    _finish(session, sub, now, status=problem[0], reason=problem[1])
                else:
                    renders.append((sub, step, run))
        if renders:
            outgoing = self._prepare_emails(session, batch, renders, now)
        return outgoing

    def _prepare_emails(
        self,
        session: Session,
        batch: Batch,
        renders: list[tuple[SequenceSubscription, SequenceStep, SequenceStepRun | None]],
        now: datetime,
    ) -> list[Outgoing]:
        by_org: dict[str, list[int]] = defaultdict(list)
        for i, (sub, _step, _run) in enumerate(renders):
            by_org[sub.organization_id].append(i)
        contexts: list[dict[str, Any]] = [{}] * len(renders)
        for org_id, indexes in by_org.items():
            items = [
                (
                    renders[i][0].lead_id,
                    renders[i][0].contact_id,
                    _sending_user(batch, renders[i][0]),
                )
                for i in indexes
            ]
            for i, context in zip(indexes, template_contexts(session, org_id, items), strict=True):
                contexts[i] = context
        outgoing = []
        for (sub, step, run), context in zip(renders, contexts, strict=True):
            template = batch.templates[step.email_template_id or ""]
            try:
                subject, body = render_template(template.subject, template.body, context)
            except ValidationFailed:
                _finish(session, sub, now, status="error", reason="internal-error")
                continue
            staged = _stage_email(session, batch, sub, step, run, subject, body, now)
            sub.locked_until = now + self.lease  # held until step 4 records the outcome
            outgoing.append(staged)
        return outgoing

    def _recover_unconfirmed(
        self,
        session: Session,
        batch: Batch,
        sub: SequenceSubscription,
        step: SequenceStep,
        run: SequenceStepRun,
        now: datetime,
    ) -> None:
        """A worker died after writing this run as `sending`: whether the server accepted the
        message is unknown, so it is not sent again (never twice); the subscription moves on."""
        run.status = "unconfirmed"
        run.date_updated = now
        log.warning(
            "sequence_step_unconfirmed",
            subscription_id=sub.id,
            step_id=step.id,
            message_id=run.message_id,
        )
        if run.activity_id:
            activity = session.get(EmailActivity, run.activity_id)
            if activity is not None and activity.status == "outbox":
                activity.status = "sent"
                activity.date_sent = activity.date_sent or run.date_created
                _thread_on(sub, step, activity.subject, run.message_id)
        _advance(session, batch, sub, now)

    # --- step 3 --------------------------------------------------------------------------------

    def _send(self, outgoing: list[Outgoing]) -> None:
        accounts: dict[str, Any] = {}
        for item in outgoing:
            try:
                config = accounts.get(item.account_id)
                if config is None:
                    config = accounts[item.account_id] = self._config(item.account_id)
                client = self.pool.get(item.account_id, config)
                smtp_send(client, item.sender, [item.recipient], item.message)
            except SmtpFailure as failure:
                item.failure = failure
                if failure.kind != "bounce":
                    self.pool.discard(item.account_id)  # reconnect for the next message
            else:
                _crash_point("after_smtp")

    def _config(self, account_id: str) -> Any:
        with self.session_factory() as session:
            account = session.get(ConnectedAccount, account_id)
            if account is None:
                raise SmtpFailure("account", "The sender account was deleted.")
            try:
                return self.smtp_config(account)
            except Exception as exc:  # an undecryptable password, a broken stored config
                raise SmtpFailure("account", f"Cannot use the account's settings: {exc}") from exc

    # --- step 4 --------------------------------------------------------------------------------

    def _record(self, session: Session, outgoing: list[Outgoing], now: datetime) -> None:
        batch = _load(session, sorted({o.subscription_id for o in outgoing}))
        subs = {sub.id: sub for sub in batch.subscriptions}
        activities = {
            a.id: a
            for a in session.scalars(
                select(EmailActivity).where(
                    EmailActivity.id.in_([r.activity_id for r in batch.runs.values()])
                )
            )
        }
        for item in outgoing:
            run, sub = batch.runs[(item.subscription_id, item.step_id)], subs[item.subscription_id]
            if run.status != "sending":
                continue  # another worker took it over as unconfirmed after our lease ran out
            sub.locked_until = None
            run.date_updated = now
            activity = activities.get(run.activity_id or "")
            if item.failure is None:
                self._record_sent(session, batch, sub, run, activity, item, now)
            else:
                self._record_failure(session, sub, run, activity, item.failure, now)

    def _record_sent(
        self,
        session: Session,
        batch: Batch,
        sub: SequenceSubscription,
        run: SequenceStepRun,
        activity: EmailActivity | None,
        item: Outgoing,
        now: datetime,
    ) -> None:
        run.status = "sent"
        if activity is not None:
            activity.status = "sent"
            activity.date_sent = now
            activity.date_updated = now
            _activity_event(session, sub, activity)
        if sub.next_step_position != item.position:
            return  # moved on meanwhile (step list edited): nothing more to do
        step = _current_step(batch, sub)
        if step is not None:
            _thread_on(sub, step, item.subject, item.message_id)
        _advance(session, batch, sub, now)

    def _record_failure(
        self,
        session: Session,
        sub: SequenceSubscription,
        run: SequenceStepRun,
        activity: EmailActivity | None,
        failure: SmtpFailure,
        now: datetime,
    ) -> None:
        run.error = failure.message
        if failure.kind == "temporary" and run.attempts <= len(RETRY_DELAYS):
            run.status = "retry"
            if sub.status == "active":
                sub.next_step_at = now + timedelta(seconds=RETRY_DELAYS[run.attempts - 1])
            return
        run.status = "failed"
        if activity is not None:
            activity.status = "error"
            activity.date_updated = now
        if failure.kind == "bounce":
            reason = "email-bounced"
        elif failure.kind == "account":
            reason = "account-invalid"
            _mark_account(session, sub.sender_account_id, failure.message)
        else:
            reason = "account-failures" if failure.code is None else "sending-throttled-too-long"
            _mark_account(session, sub.sender_account_id, failure.message)
        _finish(session, sub, now, status="error", reason=reason)


# --- claiming ----------------------------------------------------------------------------------


def claim_due(
    session: Session,
    now: datetime,
    lease_end: datetime,
    limit: int,
    organization_id: str | None = None,
) -> list[str]:
    """Leases up to `limit` due subscriptions to the caller; returns their ids."""
    due = (
        select(SequenceSubscription.id)
        .join(Sequence, Sequence.id == SequenceSubscription.sequence_id)
        .where(
            SequenceSubscription.next_step_at <= now,
            SequenceSubscription.status == "active",
            Sequence.status == "active",
            or_(
                SequenceSubscription.locked_until.is_(None),
                SequenceSubscription.locked_until < now,
            ),
        )
        .order_by(SequenceSubscription.next_step_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=SequenceSubscription)
    )
    if organization_id is not None:
        due = due.where(SequenceSubscription.organization_id == organization_id)
    claimed = session.execute(
        update(SequenceSubscription)
        .where(SequenceSubscription.id.in_(due.scalar_subquery()))
        .values(locked_until=lease_end)
        .returning(SequenceSubscription.id)
        .execution_options(synchronize_session=False)
    )
    return list(claimed.scalars())


# --- loading -----------------------------------------------------------------------------------


def _load(session: Session, ids: Iterable[str]) -> Batch:
    subs = list(
        session.scalars(
            select(SequenceSubscription)
            .where(SequenceSubscription.id.in_(list(ids)))
            .order_by(SequenceSubscription.next_step_at, SequenceSubscription.id)
        )
    )
    sequence_ids = {s.sequence_id for s in subs}
    sequences = {
        seq.id: seq
        for seq in session.scalars(select(Sequence).where(Sequence.id.in_(sequence_ids)))
    }
    steps: dict[str, list[SequenceStep]] = defaultdict(list)
    for step in session.scalars(
        select(SequenceStep)
        .where(SequenceStep.sequence_id.in_(sequence_ids))
        .order_by(SequenceStep.sequence_id, SequenceStep.position, SequenceStep.date_created)
    ):
        steps[step.sequence_id].append(step)
    batch = Batch(subs, sequences, steps)
    template_ids = {s.email_template_id for ss in steps.values() for s in ss if s.email_template_id}
    batch.templates = {
        t.id: t
        for t in session.scalars(select(EmailTemplate).where(EmailTemplate.id.in_(template_ids)))
    }
    account_ids = {s.sender_account_id for s in subs if s.sender_account_id}
    batch.accounts = {
        a.id: a
        for a in session.scalars(
            select(ConnectedAccount).where(ConnectedAccount.id.in_(account_ids))
        )
    }
    emails = {(s.organization_id, (s.contact_email or "").lower()) for s in subs}
    if emails:
        rows = session.execute(
            select(UnsubscribedEmail.organization_id, UnsubscribedEmail.email_lower).where(
                or_(
                    *(
                        and_(
                            UnsubscribedEmail.organization_id == org,
                            UnsubscribedEmail.email_lower == email,
                        )
                        for org, email in emails
                    )
                )
            )
        ).tuples()
        batch.unsubscribed = set(rows)
    batch.runs = {
        (run.subscription_id, run.step_id): run
        for run in session.scalars(
            select(SequenceStepRun).where(SequenceStepRun.subscription_id.in_([s.id for s in subs]))
        )
    }
    return batch


# --- the rules ---------------------------------------------------------------------------------


def _current_step(batch: Batch, sub: SequenceSubscription) -> SequenceStep | None:
    steps = batch.steps.get(sub.sequence_id, [])
    return steps[sub.next_step_position] if sub.next_step_position < len(steps) else None


def _due_at(sequence: Sequence, step: SequenceStep, sub: SequenceSubscription) -> datetime:
    """The step's delay counts from the previous step's completion (or the subscription's
    start); the result is moved to the next opening of the sequence's schedule."""
    base = sub.last_step_at or sub.date_created
    return next_opening(base + timedelta(seconds=step.delay), sequence.schedule, sequence.timezone)


def _cannot_email(
    batch: Batch, sub: SequenceSubscription, step: SequenceStep
) -> tuple[str, str] | None:
    """(status, status_reason) that ends a subscription whose email step cannot be sent."""
    if not sub.contact_email:
        return ("error", "internal-error")
    if (sub.organization_id, sub.contact_email.lower()) in batch.unsubscribed:
        # Close's reasons have no "unsubscribed"; the contact no longer qualifies for mailing.
        return ("finished", "filter-not-matched")
    account = batch.accounts.get(sub.sender_account_id or "")
    if account is None:
        return ("error", "account-invalid")
    if (step.email_template_id or "") not in batch.templates:
        return ("error", "internal-error")
    return None


def _sending_user(batch: Batch, sub: SequenceSubscription) -> str | None:
    account = batch.accounts.get(sub.sender_account_id or "")
    return account.user_id if account else sub.created_by_id


def _stage_email(
    session: Session,
    batch: Batch,
    sub: SequenceSubscription,
    step: SequenceStep,
    run: SequenceStepRun | None,
    subject: str,
    body: str,
    now: datetime,
) -> Outgoing:
    """Writes (or re-arms, on a retry) the step's run and its outbox activity."""
    sequence = batch.sequences[sub.sequence_id]
    account = batch.accounts[sub.sender_account_id or ""]
    sender_email = sub.sender_email or account.email
    domain = sender_email.rpartition("@")[2] or "clove.invalid"
    message_id = f"<{sub.id}.{step.id}@{domain}>"
    replying = step.threading != "new_thread" and bool(sub.thread_message_ids)
    if replying:
        subject = _reply_subject(sub.thread_subject or subject)
    references = list(sub.thread_message_ids) if replying else []
    sender = formataddr((sub.sender_name or "", sender_email))
    message = build_message(
        sender=sender,
        recipient=sub.contact_email or "",
        subject=subject,
        body=body,
        message_id=message_id,
        references=references,
        date=now,
    )
    activity = session.get(EmailActivity, run.activity_id) if run and run.activity_id else None
    if activity is None:
        activity = EmailActivity(
            id=new_id("acti"),
            organization_id=sub.organization_id,
            lead_id=sub.lead_id,
            contact_id=sub.contact_id,
            user_id=account.user_id,
            email_account_id=account.id,
            direction="outgoing",
            status="outbox",
            sender=sender,
            to=[sub.contact_email],
            message_id=message_id,
            template_id=step.email_template_id,
            sequence_id=sequence.id,
            sequence_name=sequence.name,
            sequence_subscription_id=sub.id,
            created_by=account.user_id,
            updated_by=account.user_id,
            date_created=now,
            date_updated=now,
        )
        session.add(activity)
    activity.subject = subject
    activity.body_html, activity.body_text = (
        (body, html_to_text(body)) if looks_like_html(body) else ("", body)
    )
    activity.in_reply_to = references[-1] if references else None
    activity.references = references
    if run is None:
        run = SequenceStepRun(
            organization_id=sub.organization_id,
            subscription_id=sub.id,
            step_id=step.id,
            message_id=message_id,
            activity_id=activity.id,
            attempts=0,
            date_created=now,
        )
        session.add(run)
    run.status = "sending"
    run.attempts += 1
    run.date_updated = now
    return Outgoing(
        subscription_id=sub.id,
        step_id=step.id,
        position=sub.next_step_position,
        account_id=account.id,
        sender=sender_email,
        recipient=sub.contact_email or "",
        message=message,
        message_id=message_id,
        subject=subject,
    )


def _create_call_task(
    session: Session,
    batch: Batch,
    sub: SequenceSubscription,
    step: SequenceStep,
    run: SequenceStepRun | None,
    now: datetime,
) -> None:
    """A call step becomes a task for the first of `calls_assigned_to`; the sequence goes on
    (the next step's delay counts from the task's creation)."""
    from clove.task.service import serialize_task

    sequence = batch.sequences[sub.sequence_id]
    assignee = next(iter(sub.calls_assigned_to or []), None) or sub.created_by_id
    task = Task(
        id=new_id("task"),
        organization_id=sub.organization_id,
        lead_id=sub.lead_id,
        contact_id=sub.contact_id,
        assigned_to=assignee,
        text=f"Call as part of sequence {sequence.name}",
        date=now,
        date_has_time=True,
        sequence_id=sequence.id,
        sequence_subscription_id=sub.id,
        created_by=sub.created_by_id,
        updated_by=sub.created_by_id,
        date_created=now,
        date_updated=now,
    )
    session.add(task)
    if run is None:
        run = SequenceStepRun(
            organization_id=sub.organization_id,
            subscription_id=sub.id,
            step_id=step.id,
            attempts=0,
            date_created=now,
        )
        session.add(run)
    run.status, run.task_id, run.attempts, run.date_updated = "sent", task.id, run.attempts + 1, now
    session.flush()
    record_creation(
        session,
        _actor(sub.organization_id, sub.created_by_id),
        object_type="task.lead",
        data=serialize_task(task),
        lead_id=sub.lead_id,
    )
    _advance(session, batch, sub, now)


def _advance(session: Session, batch: Batch, sub: SequenceSubscription, now: datetime) -> None:
    """The current step is done: schedule the next one, or finish after the last."""
    sub.next_step_position += 1
    sub.last_step_at = now
    sub.start_date = sub.start_date or now
    sub.locked_until = None
    sub.date_updated = now
    nxt = _current_step(batch, sub)
    if nxt is None:
        _finish(session, sub, now, status="finished", reason=None)
        return
    if sub.status == "active":
        sub.next_step_at = _due_at(batch.sequences[sub.sequence_id], nxt, sub)


def _finish(
    session: Session, sub: SequenceSubscription, now: datetime, *, status: str, reason: str | None
) -> None:
    """Ends the subscription, with its `updated` event."""
    previous = {"status": sub.status, "status_reason": sub.status_reason}
    sub.status, sub.status_reason = status, reason
    sub.next_step_at = None
    sub.locked_until = None
    sub.date_updated = now
    _status_event(session, sub, previous)


def _status_event(
    session: Session, sub: SequenceSubscription, previous: dict[str, str | None]
) -> None:
    from clove.sequence.service import serialize_subscription

    changed = sorted(k for k, v in previous.items() if getattr(sub, k) != v)
    if changed:
        record_event(
            session,
            _actor(sub.organization_id, sub.created_by_id),
            object_type="sequence_subscription",
            action="updated",
            object_id=sub.id,
            lead_id=sub.lead_id,
            data=serialize_subscription(sub),
            previous_data={k: previous[k] for k in changed},
            changed_fields=changed,
        )


def _thread_on(
    sub: SequenceSubscription, step: SequenceStep, subject: str, message_id: str | None
) -> None:
    """Remembers the email just sent as the thread later `old_thread` steps reply into."""
    if not message_id:
        return
    if step.threading == "new_thread" or not sub.thread_message_ids:
        sub.thread_subject = subject
        sub.thread_message_ids = [message_id]
    else:
        sub.thread_message_ids = [*sub.thread_message_ids, message_id]


def _mark_account(session: Session, account_id: str | None, error: str) -> None:
    account = session.get(ConnectedAccount, account_id) if account_id else None
    if account is not None:
        account.send_status = "error"
        account.latest_send_error = error


def _activity_event(session: Session, sub: SequenceSubscription, activity: EmailActivity) -> None:
    from clove.activity.service import serialize_email_activity

    record_creation(
        session,
        _actor(sub.organization_id, activity.user_id or sub.created_by_id),
        object_type="activity.email",
        data=serialize_email_activity(activity),
        lead_id=activity.lead_id,
    )


def _actor(organization_id: str, user_id: str | None) -> Actor:
    """Changes made by the engine are made on behalf of the subscription's user."""
    ctx = AuthContext(
        organization_id=organization_id, user_id=user_id or "", membership_id="", role_id=""
    )
    return Actor(ctx)


# --- messages ----------------------------------------------------------------------------------

# Ids and subjects stay on one header line (RFC 5322 allows 998 characters); folding a
# Message-ID makes some readers see a leading space.
MESSAGE_POLICY = SMTP.clone(max_line_length=998)
_REPLY = re.compile(r"^\s*re\s*:", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]+>")
_BREAKS = re.compile(r"<\s*(br|/p|/div|/li|/h\d)\s*/?\s*>", re.IGNORECASE)


def _reply_subject(subject: str) -> str:
    return subject if _REPLY.match(subject) else f"Re: {subject}"


def html_to_text(body: str) -> str:
    """A plain-text alternative of an HTML body (line breaks kept, tags dropped)."""
    return html.unescape(_TAGS.sub("", _BREAKS.sub("\n", body))).strip()


def build_message(
    *,
    sender: str,
    recipient: str,
    subject: str,
    body: str,
    message_id: str,
    references: list[str],
    date: datetime,
) -> bytes:
    """The RFC 5322 message; an HTML body goes with a plain-text alternative."""
    message = EmailMessage(policy=MESSAGE_POLICY)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(date.replace(tzinfo=UTC))
    message["Message-ID"] = message_id
    if references:
        message["In-Reply-To"] = references[-1]
        message["References"] = " ".join(references)
    if looks_like_html(body):
        message.set_content(html_to_text(body))
        message.add_alternative(body, subtype="html")
    else:
        message.set_content(body)
    return message.as_bytes()
