"""`/bulk_action/email/`: send an email template to the contacts of matching leads
(close-api.md §3.4).

Each chunk is two steps, with the SMTP conversation between them:

1. **stage**, in the chunk's transaction: every eligible recipient gets an EmailActivity
   (status `outbox`, `bulk_email_action_id`, `template_id`, the rendered subject and body, a
   Message-ID made from its id) and its `created` event with `meta.bulk_action_id`, written
   with one executemany each. Skipped recipients (no email, unsubscribed) are counted.
2. **send**, only once that transaction has committed (`Progress.after_commit`, run by the
   job runtime). It sends each message over one reused connection, then a short transaction
   marks each activity `sent` (with `date_sent`) or `error`, each with an `updated` event, and
   counts the failures in the action's `skipped` as `send_failed`.

Never twice: a message is sent only by the send step of the chunk that staged it, and a chunk
is never staged again (its items are deleted in the staging transaction). An activity of this
action still `outbox` when a later chunk starts (or the final, empty one) was staged by a
worker that died before its send step finished recording: whether it left is unknown, so it is
not sent again but marked `error` (counted as `send_unconfirmed`). Losing such an email is
preferred over sending it twice, as in the sequence engine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from types import SimpleNamespace
from typing import Any, ClassVar, Literal

import structlog
from pydantic import Field
from sqlalchemy import (
    Select,
    Table,
    bindparam,
    case,
    func,
    insert,
    null,
    select,
    update,
)
from sqlalchemy.orm import Session

from clove.activity.schemas import serialize_email_activity
from clove.bulk_action import recipients
from clove.bulk_action.kinds import BulkActionBody, Progress
from clove.connected_account.service import smtp_config
from clove.db import writing_session_factory
from clove.email.message import address, build_message, html_to_text, looks_like_html
from clove.email.smtp import ConnectionPool, SmtpConfig, SmtpFailure
from clove.email_template.render import render_template, template_contexts
from clove.errors import ValidationFailed, field_error
from clove.event.service import Actor, event_values
from clove.kit.dates import utcnow
from clove.kit.faults import crash_point
from clove.kit.ids import new_id
from clove.models import (
    BulkAction,
    ConnectedAccount,
    EmailActivity,
    EmailTemplate,
    Event,
)
from clove.sequence.service import resolve_sender

log = structlog.get_logger(__name__)

ACTIVITIES: Table = EmailActivity.__table__  # type: ignore[assignment]
EVENTS: Table = Event.__table__  # type: ignore[assignment]
OBJECT_TYPE = "activity.email"
PENDING = "outbox"  # staged, not yet known to be sent
REQUIRED = "This field is required."
Row = dict[str, Any]


# resolve_sender's field names, as this kind's request calls them.
SENDER_FIELDS = {"sender_account_id": "email_account_id", "sender_email": "sender"}


class EmailBody(BulkActionBody):
    template_id: str | None = Field(default=None, max_length=64)
    contact_preference: Literal["lead", "contact", "all"] = "lead"
    email_account_id: str | None = Field(default=None, max_length=64)
    sender: str | None = Field(default=None, max_length=600)


@dataclass
class Outgoing:
    """One staged message, and what happened when it was sent."""

    activity_id: str
    recipient: str
    message: bytes
    failure: str | None = None
    sent: bool = False


class BulkEmail:
    name: ClassVar[str] = "email"
    prefix: ClassVar[str] = "bulkemail"
    body: ClassVar[type[BulkActionBody]] = EmailBody

    # --- Request --------------------------------------------------------------------------------

    def validate(self, session: Session, actor: Actor, body: Any) -> dict[str, Any]:
        assert isinstance(body, EmailBody)
        errors: dict[str, str] = {}
        if body.template_id is None:
            errors["template_id"] = REQUIRED
        elif not session.scalar(
            select(EmailTemplate.id).where(
                EmailTemplate.id == body.template_id,
                EmailTemplate.organization_id == actor.organization_id,
            )
        ):
            errors["template_id"] = "Object does not exist."
        try:
            sender = _resolve_sender(session, actor, body.email_account_id, body.sender)
        except ValidationFailed as exc:
            errors.update(exc.field_errors)
        if errors:
            raise ValidationFailed(field_errors=errors)
        return {
            "template_id": body.template_id,
            "contact_preference": body.contact_preference,
            **sender,
        }

    def result_type(self, params: dict[str, Any]) -> str:
        return "lead"

    def wire(self, action: BulkAction) -> dict[str, Any]:
        p = action.params
        return {
            "contact_preference": p.get("contact_preference"),
            "email_account_id": p.get("email_account_id"),
            "sender": p.get("sender"),
            "template_id": p.get("template_id"),
        }

    # --- Work -----------------------------------------------------------------------------------

    def count_objects(self, session: Session, action: BulkAction, items: Select[Any]) -> int:
        """Recipients considered: one per lead, per contact, or per contact email (a contact
        without email counts once) as `contact_preference` says."""
        preference = action.params["contact_preference"]
        if preference == "lead":
            return session.scalar(select(func.count()).select_from(items.subquery())) or 0
        found = _candidates(action, items).subquery()
        return session.scalar(select(func.count()).select_from(found)) or 0

    def process(
        self, session: Session, action: BulkAction, actor: Actor, items: Select[Any], now: datetime
    ) -> Progress:
        """Stages the chunk's emails in `session` and registers their sending for after its
        commit; marks emails of earlier chunks left unconfirmed `error`."""
        unconfirmed = _give_up_unconfirmed(session, action, actor, now)
        progress = _progress(session, action, items)
        if unconfirmed:
            progress.skipped["send_unconfirmed"] += unconfirmed
        found = _candidates(action, items).subquery()
        rows = session.execute(
            select(found.c.lead_id, found.c.contact_id, found.c.email)
            .where(found.c.reason.is_(None))
            .order_by(found.c.lead_id, found.c.contact_id, found.c.email)
        ).all()
        if not rows:
            return progress
        account = session.get(ConnectedAccount, action.params["email_account_id"])
        outgoing, failed = _stage(session, action, actor, account, list(rows), now)
        progress.skipped.update(failed)
        if outgoing:
            assert account is not None  # staging needs it
            config = _config(account)
            progress.after_commit.append(_sender(session, action, actor, account, config, outgoing))
        return progress

    def preview(
        self, session: Session, action: BulkAction, items: Select[Any], limit: int
    ) -> tuple[Progress, list[dict[str, Any]]]:
        found = _candidates(action, items).subquery()
        sample = session.execute(
            select(found.c.lead_id, found.c.contact_id, found.c.email)
            .where(found.c.reason.is_(None))
            .limit(limit)
        ).mappings()
        return _progress(session, action, items), [
            {"lead_id": r["lead_id"], "contact_id": r["contact_id"], "email": r["email"]}
            for r in sample
        ]


# --- validation ----------------------------------------------------------------------------------


def _resolve_sender(
    session: Session, actor: Actor, account_id: str | None, sender: str | None
) -> dict[str, Any]:
    """`email_account_id`, `sender` (an identity address of it) and `sender_name`: the given
    account if the caller may send from it (as for sequence subscriptions), else the caller's
    first connected account."""
    if account_id is None:
        account_id = session.scalar(
            select(ConnectedAccount.id)
            .where(
                ConnectedAccount.organization_id == actor.organization_id,
                ConnectedAccount.user_id == actor.user_id,
            )
            .order_by(ConnectedAccount.date_created, ConnectedAccount.id)
        )
        if account_id is None:
            raise field_error("email_account_id", "You have no connected email account.")
    wanted = parseaddr(sender)[1] if sender is not None else None
    try:
        found = resolve_sender(session, actor, account_id, wanted, None, required=True)
    except ValidationFailed as exc:  # it names the sequence subscription's fields
        renamed = {SENDER_FIELDS.get(k, k): v for k, v in exc.field_errors.items()}
        raise ValidationFailed(exc.errors, renamed) from None
    return {
        "email_account_id": found["sender_account_id"],
        "sender": found["sender_email"],
        "sender_name": found["sender_name"],
    }


# --- recipients ----------------------------------------------------------------------------------


def _candidates(action: BulkAction, items: Select[Any]) -> Select[Any]:
    """(lead_id, contact_id, email, reason) per recipient of the chosen leads; `reason` is
    null when the address is to be mailed. `lead`: the first contact's first email;
    `contact`: each contact's first email; `all`: every email of every contact."""
    found = recipients.addresses(items, action.params["contact_preference"])
    reason = case(
        (found.c.email.is_(None), "no_email"),
        (recipients.is_unsubscribed(action.organization_id, found.c.email_lower), "unsubscribed"),
        else_=null(),
    )
    return select(found.c.lead_id, found.c.contact_id, found.c.email, reason.label("reason"))


def _progress(session: Session, action: BulkAction, items: Select[Any]) -> Progress:
    """Recipients of the chunk, and those skipped by reason."""
    found = _candidates(action, items).subquery()
    return recipients.tally(session, found, items, action.params["contact_preference"])


# --- staging -------------------------------------------------------------------------------------


def _stage(
    session: Session,
    action: BulkAction,
    actor: Actor,
    account: ConnectedAccount | None,
    rows: list[Any],
    now: datetime,
) -> tuple[list[Outgoing], Counter[str]]:
    """Writes an `outbox` activity and its `created` event per recipient whose email renders;
    returns the messages to send and the recipients skipped by reason."""
    p = action.params
    failed = Counter[str]()
    template = session.get(EmailTemplate, p["template_id"])
    if template is None or account is None:  # deleted since the action was created
        failed["template_deleted" if template is None else "account_deleted"] += len(rows)
        return [], failed
    contexts = template_contexts(
        session, action.organization_id, [(r.lead_id, r.contact_id, account.user_id) for r in rows]
    )
    sender = address(p.get("sender_name") or "", p["sender"])
    domain = p["sender"].rpartition("@")[2] or "clove.invalid"
    activities: list[Row] = []
    outgoing: list[Outgoing] = []
    for row, context in zip(rows, contexts, strict=True):
        try:
            subject, body = render_template(template.subject, template.body, context)
        except ValidationFailed:
            failed["template_error"] += 1
            continue
        activity = _activity(action, actor, account, row, sender, subject, body, domain, now)
        activities.append(activity)
        message = build_message(
            sender=sender,
            recipient=row.email,
            subject=subject,
            body=body,
            message_id=activity["message_id"],
            references=[],
            date=now,
        )
        outgoing.append(Outgoing(activity["id"], row.email, message))
    if activities:
        connection = session.connection()
        connection.execute(insert(ACTIVITIES), activities)
        connection.execute(
            insert(EVENTS), [_event(action, actor, a, "created", now) for a in activities]
        )
    return outgoing, failed


def _activity(
    action: BulkAction,
    actor: Actor,
    account: ConnectedAccount,
    row: Any,
    sender: str,
    subject: str,
    body: str,
    domain: str,
    now: datetime,
) -> Row:
    """The column values of one staged email activity."""
    activity_id = new_id("acti")
    is_html = looks_like_html(body)
    return {
        "id": activity_id,
        "organization_id": action.organization_id,
        "lead_id": row.lead_id,
        "contact_id": row.contact_id,
        "user_id": account.user_id,
        "email_account_id": account.id,
        "direction": "outgoing",
        "status": PENDING,
        "subject": subject,
        "body_html": body if is_html else "",
        "body_text": html_to_text(body) if is_html else body,
        "sender": sender,
        "to": [row.email],
        "cc": [],
        "bcc": [],
        "attachments": [],
        "message_id": f"<{activity_id}@{domain}>",
        "in_reply_to": None,
        "references": [],
        "thread_id": None,
        "template_id": action.params["template_id"],
        "sequence_id": None,
        "sequence_name": None,
        "sequence_subscription_id": None,
        "bulk_email_action_id": action.id,
        "date_sent": None,
        "created_by": actor.user_id,
        "updated_by": actor.user_id,
        "date_created": now,
        "date_updated": now,
    }


def _event(
    action: BulkAction,
    actor: Actor,
    activity: Row,
    kind: str,
    now: datetime,
    previous: Row | None = None,
) -> Row:
    """An event row about one activity of the action, with `meta.bulk_action_id`."""
    changed = sorted(previous) if previous else []
    return event_values(
        actor,
        object_type=OBJECT_TYPE,
        action=kind,
        object_id=activity["id"],
        lead_id=activity["lead_id"],
        data=serialize_email_activity(SimpleNamespace(**activity)),  # type: ignore[arg-type]
        previous_data=previous,
        changed_fields=changed,
        meta={"bulk_action_id": action.id},
        now=now,
    )


# --- sending and recording -----------------------------------------------------------------------


def _config(account: ConnectedAccount | None) -> SmtpConfig | SmtpFailure:
    """The account's SMTP settings, or the failure that using it would be."""
    if account is None:
        return SmtpFailure("account", "The sender account was deleted.")
    try:
        return smtp_config(account)
    except Exception as exc:  # an undecryptable password, a broken stored config
        return SmtpFailure("account", f"Cannot use the account's settings: {exc}")


def _sender(
    session: Session,
    action: BulkAction,
    actor: Actor,
    account: ConnectedAccount,
    config: SmtpConfig | SmtpFailure,
    outgoing: list[Outgoing],
) -> Callable[[], None]:
    """What runs after the staging commit: send, then record the outcomes (never raises: the
    chunk is committed whatever happens here)."""
    factory = writing_session_factory(session.get_bind())  # type: ignore[arg-type]
    action_id, account_id, envelope_from = action.id, account.id, action.params["sender"]

    def send() -> None:
        try:
            crash_point("bulk_email_before_smtp")
            _send_all(account_id, config, envelope_from, outgoing)
            crash_point("bulk_email_after_smtp")
            with factory.begin() as recording:
                _record(recording, action_id, actor, outgoing, utcnow())
        except Exception:
            log.exception("bulk_email_send_failed", bulk_action_id=action_id)

    return send


def _send_all(
    account_id: str, config: SmtpConfig | SmtpFailure, envelope_from: str, outgoing: list[Outgoing]
) -> None:
    """Sends each message over one reused connection. After a failure that is not about one
    recipient (login, connection), the rest are not tried: they fail the same way."""
    pool = ConnectionPool()
    broken = config if isinstance(config, SmtpFailure) else None
    try:
        for item in outgoing:
            if broken is not None:
                item.failure = broken.message
                continue
            assert isinstance(config, SmtpConfig)
            try:
                pool.send(account_id, config, envelope_from, item.recipient, item.message)
            except SmtpFailure as failure:
                item.failure = failure.message
                if failure.kind != "bounce":
                    broken = failure
            except Exception as exc:  # a bug must not pass for a sent email
                log.exception("bulk_email_message_failed", activity_id=item.activity_id)
                item.failure = f"Internal error: {exc}"
            else:
                item.sent = True
    finally:
        pool.close_all()


def _record(
    session: Session, action_id: str, actor: Actor, outgoing: list[Outgoing], now: datetime
) -> None:
    """Marks the staged activities `sent` or `error` (those still `outbox`), each with an
    `updated` event, and counts failures in the action's `skipped`."""
    outcome = {item.activity_id: item for item in outgoing}
    rows = _pending(session, action_id, list(outcome))
    for row in rows:
        row["status"] = "sent" if outcome[row["id"]].sent else "error"
    failed = sum(1 for row in rows if row["status"] == "error")
    _settle(session, action_id, actor, rows, now, Counter(send_failed=failed))


def _give_up_unconfirmed(session: Session, action: BulkAction, actor: Actor, now: datetime) -> int:
    """Marks this action's activities still `outbox` (their worker died between staging and
    recording) `error`, never sending them; how many there were."""
    rows = _pending(session, action.id, None)
    for row in rows:
        row["status"] = "error"
    if rows:
        log.warning("bulk_email_unconfirmed", bulk_action_id=action.id, count=len(rows))
        _settle(session, action.id, actor, rows, now, Counter())
    return len(rows)


def _pending(session: Session, action_id: str, ids: list[str] | None) -> list[Row]:
    """The action's activities still `outbox` (of `ids` if given), locked, as dicts."""
    query = select(ACTIVITIES).where(
        ACTIVITIES.c.bulk_email_action_id == action_id, ACTIVITIES.c.status == PENDING
    )
    if ids is not None:
        query = query.where(ACTIVITIES.c.id.in_(ids))
    return [dict(r) for r in session.execute(query.with_for_update()).mappings()]


def _settle(
    session: Session,
    action_id: str,
    actor: Actor,
    rows: list[Row],
    now: datetime,
    skipped: Counter[str],
) -> None:
    """Writes the new status of `rows` (one executemany) and their `updated` events; adds
    `skipped` to the action's counters."""
    if not rows:
        return
    action = session.get(BulkAction, action_id)
    for row in rows:
        row["date_sent"] = now if row["status"] == "sent" else None
        row["date_updated"] = now
    statement = (
        update(ACTIVITIES)
        .where(ACTIVITIES.c.id == bindparam("_id"), ACTIVITIES.c.status == PENDING)
        .values(status=bindparam("status"), date_sent=bindparam("date_sent"), date_updated=now)
    )
    connection = session.connection()
    connection.execute(
        statement,
        [{"_id": r["id"], "status": r["status"], "date_sent": r["date_sent"]} for r in rows],
    )
    if action is None:
        return
    previous = {"status": PENDING}
    connection.execute(
        insert(EVENTS), [_event(action, actor, r, "updated", now, dict(previous)) for r in rows]
    )
    skipped = +skipped
    if skipped:
        action.skipped = dict(Counter(action.skipped or {}) + skipped)
