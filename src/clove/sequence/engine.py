"""The sequence engine: runs each active subscription's next step when it is due.

One pass (`SequenceEngine.run_once`) is three transactions and the sends between them:

1. **claim**: due subscriptions (`next_step_at <= now`, active, of an active sequence, not
   leased) get `locked_until = now + lease`, in one UPDATE (`FOR UPDATE SKIP LOCKED` on
   PostgreSQL; SQLite has one writer at a time). Two workers never hold the same subscription.
2. **prepare**: for each claimed step that is due inside the schedule window, a
   `sequence_step_run` row (unique per subscription and step) is written with status `sending`,
   with the email activity (status `outbox`) and a Message-ID derived from the two ids. Call
   steps finish here (a task is created). Committed *before* any email leaves.
3. **send** over SMTP, one reused connection per sender account, in a thread: meanwhile the
   next batch goes through 1 and 2 (sending mostly waits on the server).
4. **record**: runs become `sent` (or `retry` / `failed`), activities `sent` (or `error`),
   subscriptions move to their next step or end. Committed.

Never twice: a step is sent only by the worker that wrote its run as `sending` in step 2. A run
found still `sending` by a later pass means a worker died between 2 and 4: it is never sent
again; it becomes `unconfirmed` and the subscription moves on. That is the one window that
remains: a crash after the run was committed and before the SMTP server accepted the message
loses that email (at most once), rather than risking a second copy. See docs/decisions.md.

Rows are handled as plain dicts and written with one executemany statement per kind: a pass
over a few hundred subscriptions makes a fixed number of statements.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import structlog
from sqlalchemy import Table, and_, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from clove.auth.service import AuthContext
from clove.email.message import address, build_message, html_to_text, looks_like_html
from clove.email.smtp import ConnectionPool, SmtpFailure
from clove.email_template.render import render_template, template_contexts
from clove.errors import ValidationFailed
from clove.event.service import Actor, event_values
from clove.kit.dates import utcnow
from clove.kit.faults import crash_point
from clove.kit.ids import new_id
from clove.models import (
    ConnectedAccount,
    EmailActivity,
    EmailTemplate,
    Event,
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
Row = dict[str, Any]

SUBS: Table = SequenceSubscription.__table__  # type: ignore[assignment]
RUNS: Table = SequenceStepRun.__table__  # type: ignore[assignment]
ACTIVITIES: Table = EmailActivity.__table__  # type: ignore[assignment]
TASKS: Table = Task.__table__  # type: ignore[assignment]
EVENTS: Table = Event.__table__  # type: ignore[assignment]
# The subscription columns a pass may change; written back together for every claimed row.
STATE = (
    "status",
    "status_reason",
    "next_step_position",
    "next_step_at",
    "locked_until",
    "last_step_at",
    "start_date",
    "thread_subject",
    "thread_message_ids",
    "date_updated",
)


@dataclass
class Outgoing:
    """One email prepared in step 2, and what happened when it was sent."""

    subscription_id: str
    step_id: str
    position: int
    account_id: str
    envelope_from: str
    recipient: str
    message: bytes
    activity: Row
    sent: bool = False
    failure: SmtpFailure | None = None


@dataclass
class Batch:
    """What one pass loaded for its claimed subscriptions (one query per kind)."""

    subs: list[Row]
    sequences: dict[str, Row]
    steps: dict[str, list[Row]]
    runs: dict[tuple[str, str], Row]
    templates: dict[str, Row] = field(default_factory=dict)
    accounts: dict[str, Row] = field(default_factory=dict)
    unsubscribed: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class Writes:
    """Everything one transaction of a pass writes, as executemany statements."""

    subs: dict[str, Row] = field(default_factory=dict)
    new_runs: list[Row] = field(default_factory=list)
    run_updates: list[Row] = field(default_factory=list)
    new_activities: list[Row] = field(default_factory=list)
    activity_updates: list[Row] = field(default_factory=list)  # status changes
    activity_rewrites: list[Row] = field(default_factory=list)  # content too (a retried step)
    new_tasks: list[Row] = field(default_factory=list)
    events: list[Row] = field(default_factory=list)
    account_errors: dict[str, str] = field(default_factory=dict)

    def apply(self, session: Session) -> None:
        connection = session.connection()  # Core executemany: no ORM bookkeeping per row
        for table, rows in (
            (ACTIVITIES, self.new_activities),
            (TASKS, self.new_tasks),
            (RUNS, self.new_runs),
        ):
            if rows:
                connection.execute(insert(table), rows)
        _update_many(
            session, RUNS, ("status", "attempts", "error", "date_updated"), self.run_updates
        )
        _update_many(
            session, ACTIVITIES, ("status", "date_sent", "date_updated"), self.activity_updates
        )
        _update_many(session, ACTIVITIES, ACTIVITY_CONTENT, self.activity_rewrites)
        _update_many(session, SUBS, STATE, list(self.subs.values()))
        if self.events:
            connection.execute(insert(EVENTS), self.events)
        for account_id, error in self.account_errors.items():
            session.execute(
                update(ConnectedAccount)
                .where(ConnectedAccount.id == account_id)
                .values(send_status="error", latest_send_error=error)
            )


ACTIVITY_CONTENT = (
    "status",
    "subject",
    "body_text",
    "body_html",
    "in_reply_to",
    "references",
    "date_sent",
    "date_updated",
)


def _update_many(session: Session, table: Table, columns: Iterable[str], rows: list[Row]) -> None:
    """UPDATE table SET columns WHERE id = row id, for every row, in one executemany."""
    if not rows:
        return
    statement = (
        update(table)
        .where(table.c.id == bindparam("_id"))
        .values({name: bindparam(name, type_=table.c[name].type) for name in columns})
    )
    params = [{"_id": row["id"], **{name: row[name] for name in columns}} for row in rows]
    session.connection().execute(statement, params)


class SequenceEngine:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        clock: Clock = utcnow,
        lease_seconds: float = 300,
        batch_size: int = 500,
        smtp_config: Callable[[ConnectedAccount], Any] | None = None,
        organization_id: str | None = None,
        pipelined: bool = True,
    ) -> None:
        self.session_factory = session_factory
        self.pipelined = pipelined
        self._in_flight: tuple[list[Outgoing], threading.Thread] | None = None
        self.claimed = 0  # subscriptions claimed so far, for run_until_idle
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
        """Records the batch in flight, if any, and closes the SMTP connections."""
        self._finish_sending()
        self.pool.close_all()

    def run_once(self) -> int:
        """Claims and prepares one batch of due steps, records the sends of the batch before,
        and starts sending this one. Returns how many subscriptions it claimed or recorded (0:
        nothing was due and nothing was in flight).

        With `pipelined` (the default) the SMTP conversation of one batch runs in a thread
        while the next batch is claimed and prepared: sending mostly waits on the server, so
        the database work is done in that time. Without it, a pass sends and records its own
        batch before returning."""
        now = self.clock()
        with self.session_factory() as session:
            ids = claim_due(session, now, now + self.lease, self.batch_size, self.organization_id)
            session.commit()
        self.claimed += len(ids)
        outgoing: list[Outgoing] = []
        if ids:
            with self.session_factory() as session:
                writes, outgoing = self._prepare(session, _load(session, ids, full=True), now)
                writes.apply(session)
                session.commit()
            crash_point("before_smtp")
        recorded = self._finish_sending()
        if outgoing:
            configs = self._configs({item.account_id for item in outgoing})
            self._in_flight = (
                outgoing,
                threading.Thread(target=self._send, args=(outgoing, configs)),
            )
            self._in_flight[1].start()
            if not self.pipelined:
                recorded += self._finish_sending()
        return len(ids) + recorded

    def _finish_sending(self) -> int:
        """Waits for the batch being sent, if any, and records its outcomes."""
        if self._in_flight is None:
            return 0
        outgoing, thread = self._in_flight
        thread.join()
        self._in_flight = None
        with self.session_factory() as session:
            self._record(session, outgoing, self.clock()).apply(session)
            session.commit()
        crash_point("after_commit")
        return len(outgoing)

    def run_until_idle(self, max_passes: int = 100_000) -> int:
        """Runs passes until nothing is due now and nothing is in flight (tests and the
        benchmark); returns how many subscriptions were claimed."""
        claimed = self.claimed
        for _ in range(max_passes):
            if not self.run_once():
                break
        return self.claimed - claimed

    # --- step 2 --------------------------------------------------------------------------------

    def _prepare(
        self, session: Session, batch: Batch, now: datetime
    ) -> tuple[Writes, list[Outgoing]]:
        writes = Writes()
        emails: list[tuple[Row, Row, Row | None]] = []
        for sub in batch.subs:
            writes.subs[sub["id"]] = sub
            sub["locked_until"] = None  # released at commit unless an email is being sent
            sequence = batch.sequences[sub["sequence_id"]]
            if sub["status"] != "active" or sequence["status"] != "active":
                continue
            step = _current_step(batch, sub)
            if step is None:
                _finish(writes, sub, now, "finished", None)
                continue
            due = _due_at(sequence, step, sub)
            if due > now:
                sub["next_step_at"] = due
                continue
            run = batch.runs.get((sub["id"], step["id"]))
            if run is not None and run["status"] == "sending":
                _recover_unconfirmed(session, writes, batch, sub, step, run, now)
            elif run is not None and run["status"] != "retry":
                _advance(writes, batch, sub, now)  # already done; only the move on was lost
            elif step["step_type"] == "call":
                _create_call_task(writes, batch, sub, step, run, now)
            elif problem := _cannot_email(batch, sub, step):
                _finish(writes, sub, now, *problem)
            else:
                emails.append((sub, step, run))
        outgoing = self._stage_emails(session, writes, batch, emails, now) if emails else []
        return writes, outgoing

    def _stage_emails(
        self,
        session: Session,
        writes: Writes,
        batch: Batch,
        emails: list[tuple[Row, Row, Row | None]],
        now: datetime,
    ) -> list[Outgoing]:
        contexts = _contexts(session, batch, [sub for sub, _step, _run in emails])
        outgoing = []
        for (sub, step, run), context in zip(emails, contexts, strict=True):
            template = batch.templates[step["email_template_id"]]
            try:
                subject, body = render_template(template["subject"], template["body"], context)
            except ValidationFailed:
                _finish(writes, sub, now, "error", "internal-error")
                continue
            outgoing.append(
                _stage_email(session, writes, batch, sub, step, run, subject, body, now)
            )
            # Unchanged, so not written: the claim's lease holds it until step 4 records it.
            del writes.subs[sub["id"]]
        return outgoing

    # --- step 3 --------------------------------------------------------------------------------

    def _send(self, outgoing: list[Outgoing], configs: dict[str, Any]) -> None:
        """Sends each message (in the sending thread; touches no database)."""
        for item in outgoing:
            try:
                config = configs[item.account_id]
                if isinstance(config, SmtpFailure):
                    raise config
                self.pool.send(
                    item.account_id, config, item.envelope_from, item.recipient, item.message
                )
            except SmtpFailure as failure:
                item.failure = failure
            except Exception as exc:  # a bug must not pass for a sent email
                log.exception("sequence_send_failed", subscription_id=item.subscription_id)
                item.failure = SmtpFailure("temporary", f"Internal error: {exc}")
            else:
                item.sent = True
                crash_point("after_smtp")

    def _configs(self, account_ids: set[str]) -> dict[str, Any]:
        """Each account's SMTP settings, or the SmtpFailure that using it would be."""
        configs: dict[str, Any] = {}
        with self.session_factory() as session:
            for account_id in account_ids:
                account = session.get(ConnectedAccount, account_id)
                if account is None:
                    configs[account_id] = SmtpFailure("account", "The sender account was deleted.")
                    continue
                try:
                    configs[account_id] = self.smtp_config(account)
                except Exception as exc:  # an undecryptable password, a broken stored config
                    message = f"Cannot use the account's settings: {exc}"
                    configs[account_id] = SmtpFailure("account", message)
        return configs

    # --- step 4 --------------------------------------------------------------------------------

    def _record(self, session: Session, outgoing: list[Outgoing], now: datetime) -> Writes:
        """What the sends' outcomes change, read against the subscriptions as they are now."""
        batch = _load(session, {o.subscription_id for o in outgoing}, full=False)
        subs = {sub["id"]: sub for sub in batch.subs}
        writes = Writes()
        for item in outgoing:
            run = batch.runs[(item.subscription_id, item.step_id)]
            if run["status"] != "sending":
                continue  # another worker took it over as unconfirmed after our lease ran out
            sub = subs[item.subscription_id]
            writes.subs[sub["id"]] = sub
            sub["locked_until"] = None
            run["date_updated"] = now
            writes.run_updates.append(run)
            if item.sent:
                _record_sent(writes, batch, sub, run, item, now)
            else:
                item.failure = item.failure or SmtpFailure("temporary", "Not sent.")
                _record_failure(writes, sub, run, item, now)
        return writes


# --- claiming and loading ----------------------------------------------------------------------


def claim_due(
    session: Session,
    now: datetime,
    lease_end: datetime,
    limit: int,
    organization_id: str | None = None,
) -> list[str]:
    """Leases up to `limit` due subscriptions to the caller; returns their ids."""
    due = (
        select(SUBS.c.id)
        .join(Sequence, Sequence.id == SUBS.c.sequence_id)
        .where(
            SUBS.c.next_step_at <= now,
            SUBS.c.status == "active",
            Sequence.status == "active",
            or_(SUBS.c.locked_until.is_(None), SUBS.c.locked_until < now),
        )
        .order_by(SUBS.c.next_step_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=SUBS)
    )
    if organization_id is not None:
        due = due.where(SUBS.c.organization_id == organization_id)
    claimed = session.execute(
        update(SUBS)
        .where(SUBS.c.id.in_(due.scalar_subquery()))
        .values(locked_until=lease_end)
        .returning(SUBS.c.id)
    )
    return list(claimed.scalars())


def _rows(session: Session, statement: Any) -> list[Row]:
    return [dict(row) for row in session.execute(statement).mappings()]


def _load(session: Session, ids: Iterable[str], *, full: bool) -> Batch:
    """The subscriptions with their sequences, steps and runs; with `full`, also the
    templates, sender accounts and unsubscribed addresses that sending needs."""
    subs = _rows(
        session,
        select(SUBS).where(SUBS.c.id.in_(list(ids))).order_by(SUBS.c.next_step_at, SUBS.c.id),
    )
    sequence_ids = {s["sequence_id"] for s in subs}
    sequences = {
        row["id"]: row
        for row in _rows(session, select(Sequence.__table__).where(Sequence.id.in_(sequence_ids)))
    }
    steps: dict[str, list[Row]] = defaultdict(list)
    for step in _rows(
        session,
        select(SequenceStep.__table__)
        .where(SequenceStep.sequence_id.in_(sequence_ids))
        .order_by(SequenceStep.sequence_id, SequenceStep.position, SequenceStep.date_created),
    ):
        steps[step["sequence_id"]].append(step)
    runs = {
        (run["subscription_id"], run["step_id"]): run
        for run in _rows(
            session, select(RUNS).where(RUNS.c.subscription_id.in_([s["id"] for s in subs]))
        )
    }
    batch = Batch(subs, sequences, steps, runs)
    if full:
        _load_sending(session, batch)
    return batch


def _load_sending(session: Session, batch: Batch) -> None:
    template_ids = {
        s["email_template_id"] for ss in batch.steps.values() for s in ss if s["email_template_id"]
    }
    batch.templates = {
        row["id"]: row
        for row in _rows(
            session,
            select(EmailTemplate.id, EmailTemplate.subject, EmailTemplate.body).where(
                EmailTemplate.id.in_(template_ids)
            ),
        )
    }
    account_ids = {s["sender_account_id"] for s in batch.subs if s["sender_account_id"]}
    batch.accounts = {
        row["id"]: row
        for row in _rows(
            session,
            select(ConnectedAccount.id, ConnectedAccount.user_id, ConnectedAccount.email).where(
                ConnectedAccount.id.in_(account_ids)
            ),
        )
    }
    addresses = {(s["organization_id"], (s["contact_email"] or "").lower()) for s in batch.subs}
    by_org: dict[str, list[str]] = defaultdict(list)
    for org, email in addresses:
        by_org[org].append(email)
    found = session.execute(
        select(UnsubscribedEmail.organization_id, UnsubscribedEmail.email_lower).where(
            or_(
                *(
                    and_(
                        UnsubscribedEmail.organization_id == org,
                        UnsubscribedEmail.email_lower.in_(emails),
                    )
                    for org, emails in by_org.items()
                )
            )
        )
    )
    batch.unsubscribed = {(org, email) for org, email in found}


def _contexts(session: Session, batch: Batch, subs: list[Row]) -> list[dict[str, Any]]:
    """Template variables for each subscription, a few queries per organization."""
    by_org: dict[str, list[int]] = defaultdict(list)
    for i, sub in enumerate(subs):
        by_org[sub["organization_id"]].append(i)
    contexts: list[dict[str, Any]] = [{} for _ in subs]
    for org_id, indexes in by_org.items():
        items = [
            (subs[i]["lead_id"], subs[i]["contact_id"], _sending_user(batch, subs[i]))
            for i in indexes
        ]
        for i, context in zip(indexes, template_contexts(session, org_id, items), strict=True):
            contexts[i] = context
    return contexts


# --- the rules ---------------------------------------------------------------------------------


def _current_step(batch: Batch, sub: Row) -> Row | None:
    steps = batch.steps.get(sub["sequence_id"], [])
    position = sub["next_step_position"]
    return steps[position] if position < len(steps) else None


def _due_at(sequence: Row, step: Row, sub: Row) -> datetime:
    """The step's delay counts from the previous step's completion (or the subscription's
    start); the result is moved to the next opening of the sequence's schedule."""
    base = sub["last_step_at"] or sub["date_created"]
    moment = base + timedelta(seconds=step["delay"])
    return next_opening(moment, sequence["schedule"], sequence["timezone"])


def _cannot_email(batch: Batch, sub: Row, step: Row) -> tuple[str, str] | None:
    """(status, status_reason) that ends a subscription whose email step cannot be sent."""
    if not sub["contact_email"]:
        return ("error", "internal-error")
    if (sub["organization_id"], sub["contact_email"].lower()) in batch.unsubscribed:
        # Close's reasons have no "unsubscribed"; the contact no longer qualifies for mailing.
        return ("finished", "filter-not-matched")
    if sub["sender_account_id"] not in batch.accounts:
        return ("error", "account-invalid")
    if step["email_template_id"] not in batch.templates:
        return ("error", "internal-error")
    return None


def _sending_user(batch: Batch, sub: Row) -> str | None:
    account = batch.accounts.get(sub["sender_account_id"] or "")
    return account["user_id"] if account else sub["created_by_id"]


def _stage_email(
    session: Session,
    writes: Writes,
    batch: Batch,
    sub: Row,
    step: Row,
    run: Row | None,
    subject: str,
    body: str,
    now: datetime,
) -> Outgoing:
    """Writes (or re-arms, on a retry) the step's run and its outbox activity."""
    sequence = batch.sequences[sub["sequence_id"]]
    account = batch.accounts[sub["sender_account_id"]]
    sender_email = sub["sender_email"] or account["email"]
    domain = sender_email.rpartition("@")[2] or "clove.invalid"
    message_id = f"<{sub['id']}.{step['id']}@{domain}>"
    references = list(sub["thread_message_ids"] or []) if step["threading"] != "new_thread" else []
    if references:
        subject = _reply_subject(sub["thread_subject"] or subject)
    sender = address(sub["sender_name"] or "", sender_email)
    is_html = looks_like_html(body)
    content = {
        "subject": subject,
        "body_html": body if is_html else "",
        "body_text": html_to_text(body) if is_html else body,
        "in_reply_to": references[-1] if references else None,
        "references": references,
        "date_updated": now,
    }
    activity = _retried_activity(session, run) if run else None
    if activity is None:
        activity = {
            "id": new_id("acti"),
            "organization_id": sub["organization_id"],
            "lead_id": sub["lead_id"],
            "contact_id": sub["contact_id"],
            "user_id": account["user_id"],
            "email_account_id": account["id"],
            "direction": "outgoing",
            "status": "outbox",
            "sender": sender,
            "to": [sub["contact_email"]],
            "cc": [],
            "bcc": [],
            "attachments": [],
            "message_id": message_id,
            "thread_id": None,
            "template_id": step["email_template_id"],
            "sequence_id": sequence["id"],
            "sequence_name": sequence["name"],
            "sequence_subscription_id": sub["id"],
            "bulk_email_action_id": None,
            "date_sent": None,
            "created_by": account["user_id"],
            "updated_by": account["user_id"],
            "date_created": now,
            **content,
        }
        writes.new_activities.append(activity)
    else:
        activity.update(content)
        writes.activity_rewrites.append(activity)
    _run_step(
        writes, sub, step, run, now, "sending", message_id=message_id, activity_id=activity["id"]
    )
    message = build_message(
        sender=sender,
        recipient=sub["contact_email"],
        subject=subject,
        body=body,
        message_id=message_id,
        references=references,
        date=now,
    )
    return Outgoing(
        subscription_id=sub["id"],
        step_id=step["id"],
        position=sub["next_step_position"],
        account_id=account["id"],
        envelope_from=sender_email,
        recipient=sub["contact_email"],
        message=message,
        activity=activity,
    )


def _retried_activity(session: Session, run: Row) -> Row | None:
    if not run["activity_id"]:
        return None
    rows = _rows(session, select(ACTIVITIES).where(ACTIVITIES.c.id == run["activity_id"]))
    return rows[0] if rows else None


def _recover_unconfirmed(
    session: Session, writes: Writes, batch: Batch, sub: Row, step: Row, run: Row, now: datetime
) -> None:
    """A worker died after writing this run as `sending`: whether the server accepted the
    message is unknown, so it is not sent again (never twice); the subscription moves on."""
    run.update(status="unconfirmed", date_updated=now)
    writes.run_updates.append(run)
    log.warning(
        "sequence_step_unconfirmed", subscription_id=sub["id"], message_id=run["message_id"]
    )
    activity = _retried_activity(session, run)
    if activity is not None and activity["status"] == "outbox":
        activity.update(status="sent", date_sent=run["date_created"], date_updated=now)
        writes.activity_updates.append(activity)
        _thread_on(sub, step, activity["subject"], run["message_id"])
    _advance(writes, batch, sub, now)


def _record_sent(
    writes: Writes, batch: Batch, sub: Row, run: Row, item: Outgoing, now: datetime
) -> None:
    from clove.activity.service import serialize_email_activity

    run["status"] = "sent"
    activity = item.activity
    activity.update(status="sent", date_sent=now, date_updated=now)
    writes.activity_updates.append(activity)
    writes.events.append(
        _event(
            sub,
            activity["user_id"],
            object_type="activity.email",
            action="created",
            object_id=activity["id"],
            data=serialize_email_activity(_as_object(activity)),
            now=now,
        )
    )
    if sub["next_step_position"] != item.position:
        return  # moved on meanwhile (its steps were edited): nothing more to do
    step = _current_step(batch, sub)
    if step is not None:
        _thread_on(sub, step, activity["subject"], activity["message_id"])
    _advance(writes, batch, sub, now)


def _record_failure(writes: Writes, sub: Row, run: Row, item: Outgoing, now: datetime) -> None:
    failure = item.failure
    assert failure is not None
    run["error"] = failure.message
    if failure.kind == "temporary" and run["attempts"] <= len(RETRY_DELAYS):
        run["status"] = "retry"
        if sub["status"] == "active":
            sub["next_step_at"] = now + timedelta(seconds=RETRY_DELAYS[run["attempts"] - 1])
        return
    run["status"] = "failed"
    item.activity.update(status="error", date_updated=now)
    writes.activity_updates.append(item.activity)
    if failure.kind == "bounce":
        reason = "email-bounced"
    else:
        writes.account_errors[item.account_id] = failure.message
        if failure.kind == "account":
            reason = "account-invalid"
        else:
            reason = "account-failures" if failure.code is None else "sending-throttled-too-long"
    _finish(writes, sub, now, "error", reason)


def _create_call_task(
    writes: Writes, batch: Batch, sub: Row, step: Row, run: Row | None, now: datetime
) -> None:
    """A call step becomes a task for the first of `calls_assigned_to`; the sequence goes on
    (the next step's delay counts from the task's creation)."""
    from clove.task.service import serialize_task

    sequence = batch.sequences[sub["sequence_id"]]
    task = {
        "id": new_id("task"),
        "organization_id": sub["organization_id"],
        "type": "lead",
        "lead_id": sub["lead_id"],
        "contact_id": sub["contact_id"],
        "assigned_to": next(iter(sub["calls_assigned_to"] or []), None) or sub["created_by_id"],
        "text": f"Call as part of sequence {sequence['name']}",
        "date": now,
        "date_has_time": True,
        "is_complete": False,
        "sequence_id": sequence["id"],
        "sequence_subscription_id": sub["id"],
        "created_by": sub["created_by_id"],
        "updated_by": sub["created_by_id"],
        "date_created": now,
        "date_updated": now,
    }
    writes.new_tasks.append(task)
    _run_step(writes, sub, step, run, now, "sent", task_id=task["id"])
    writes.events.append(
        _event(
            sub,
            sub["created_by_id"],
            object_type="task.lead",
            action="created",
            object_id=task["id"],
            data=serialize_task(_as_object(task)),
            now=now,
        )
    )
    _advance(writes, batch, sub, now)


def _run_step(
    writes: Writes,
    sub: Row,
    step: Row,
    run: Row | None,
    now: datetime,
    status: str,
    **refs: str | None,
) -> None:
    """Writes the step's run with `status`: a new row, or one more attempt of a retried one."""
    if run is not None:
        run.update(status=status, attempts=run["attempts"] + 1, date_updated=now)
        writes.run_updates.append(run)
        return
    writes.new_runs.append(
        {
            "organization_id": sub["organization_id"],
            "subscription_id": sub["id"],
            "step_id": step["id"],
            "status": status,
            "message_id": None,
            "activity_id": None,
            "task_id": None,
            "attempts": 1,
            "error": None,
            "date_created": now,
            "date_updated": now,
            **refs,
        }
    )


def _advance(writes: Writes, batch: Batch, sub: Row, now: datetime) -> None:
    """The current step is done: schedule the next one, or finish after the last."""
    sub["next_step_position"] += 1
    sub["last_step_at"] = now
    sub["start_date"] = sub["start_date"] or now
    sub["locked_until"] = None
    sub["date_updated"] = now
    following = _current_step(batch, sub)
    if following is None:
        _finish(writes, sub, now, "finished", None)
    elif sub["status"] == "active":
        sub["next_step_at"] = _due_at(batch.sequences[sub["sequence_id"]], following, sub)


def _finish(writes: Writes, sub: Row, now: datetime, status: str, reason: str | None) -> None:
    """Ends the subscription, with its `updated` event."""
    from clove.sequence.service import serialize_subscription

    previous = {"status": sub["status"], "status_reason": sub["status_reason"]}
    sub.update(
        status=status, status_reason=reason, next_step_at=None, locked_until=None, date_updated=now
    )
    changed = sorted(k for k, v in previous.items() if sub[k] != v)
    if changed:
        writes.events.append(
            _event(
                sub,
                sub["created_by_id"],
                object_type="sequence_subscription",
                action="updated",
                object_id=sub["id"],
                data=serialize_subscription(_as_object(sub)),
                previous_data={k: previous[k] for k in changed},
                changed_fields=changed,
                now=now,
            )
        )


def _thread_on(sub: Row, step: Row, subject: str, message_id: str | None) -> None:
    """Remembers the email just sent as the thread later `old_thread` steps reply into."""
    if not message_id:
        return
    if step["threading"] == "new_thread" or not sub["thread_message_ids"]:
        sub["thread_subject"] = subject
        sub["thread_message_ids"] = [message_id]
    else:
        sub["thread_message_ids"] = [*sub["thread_message_ids"], message_id]


def _as_object(row: Row) -> Any:
    """A row with attribute access for the API serializers (an ORM instance would cost
    ~30 µs to build; this is what they read)."""
    return SimpleNamespace(**row)


def _event(sub: Row, user_id: str | None, *, now: datetime, **values: Any) -> Row:
    """An event row for a change the engine makes on behalf of the subscription's user."""
    ctx = AuthContext(
        organization_id=sub["organization_id"],
        user_id=user_id or sub["created_by_id"] or "",
        membership_id="",
        role_id="",
    )
    return event_values(Actor(ctx), lead_id=sub["lead_id"], now=now, **values)


# --- messages ----------------------------------------------------------------------------------

_REPLY = re.compile(r"^\s*re\s*:", re.IGNORECASE)


def _reply_subject(subject: str) -> str:
    return subject if _REPLY.match(subject) else f"Re: {subject}"
