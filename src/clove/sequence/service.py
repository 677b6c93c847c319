"""Sequences, their steps, and contacts' subscriptions to them (close-api.md §4).

Sending is the engine's business (`clove.sequence.engine`); this module keeps the objects and
the schedule state the engine reads: a new or resumed subscription is due now
(`next_step_at`), a paused or ended one is never due (`next_step_at` NULL).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence as Seq
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from clove.errors import BadRequest, field_error, object_not_found
from clove.event.service import Actor, record_creation, record_deletion, record_update
from clove.kit.dates import iso_utc, utcnow
from clove.kit.ids import new_id
from clove.models import (
    ConnectedAccount,
    Contact,
    ContactEmail,
    EmailTemplate,
    Membership,
    Sequence,
    SequenceStep,
    SequenceStepRun,
    SequenceSubscription,
    UnsubscribedEmail,
)
from clove.send_as.service import can_send_from
from clove.sequence.schedule import parse_minute, zone
from clove.sequence.schemas import (
    Schedule,
    SequenceCreate,
    SequenceUpdate,
    StepIn,
    SubscriptionCreate,
    SubscriptionUpdate,
    serialize_sequence,
    serialize_subscription,
)

__all__ = [
    "end_subscriptions",
    "serialize_sequence",
    "serialize_subscription",
]

SEQUENCE = "sequence"
SUBSCRIPTION = "sequence_subscription"
LIVE = ("active", "paused")
ENDED = ("finished", "error", "goal")
ALREADY_SUBSCRIBED = "Contact is already subscribed to this sequence."
CHUNK = 500  # ids per IN list: far below every database's bound-parameter limit

Sub = SequenceSubscription


# --- Ending subscriptions (engine, email activity, sequence changes) ------------------------------


def end_subscriptions(
    session: Session,
    organization_id: str,
    subscription_ids: list[str],
    *,
    status: str,
    reason: str,
    actor: Actor,
) -> int:
    """Ends those of the subscriptions that are still active or paused, with one `updated`
    event each; returns how many changed. Flushes only."""
    if status not in ENDED:
        raise ValueError(f"{status!r} does not end a subscription")
    changed = 0
    for start in range(0, len(subscription_ids), CHUNK):
        chunk = subscription_ids[start : start + CHUNK]
        # Locked (PostgreSQL) so that no other writer ends or resumes them in between.
        rows = session.scalars(
            select(Sub)
            .where(Sub.id.in_(chunk), Sub.organization_id == organization_id, Sub.status.in_(LIVE))
            .with_for_update()
        ).all()
        if not rows:
            continue
        before = [serialize_subscription(row) for row in rows]
        session.execute(
            update(Sub)
            .where(Sub.id.in_([row.id for row in rows]))
            .values(
                status=status,
                status_reason=reason,
                next_step_at=None,
                locked_until=None,
                date_updated=utcnow(),
            )
            .execution_options(synchronize_session="evaluate")
        )
        for old, row in zip(before, rows, strict=True):
            record_update(
                session,
                actor,
                object_type=SUBSCRIPTION,
                before=old,
                after=serialize_subscription(row),
                lead_id=row.lead_id,
            )
        changed += len(rows)
    session.flush()
    return changed


# --- Reading sequences ---------------------------------------------------------------------------


def get_sequence(session: Session, organization_id: str, sequence_id: str) -> Sequence:
    sequence = session.scalars(
        select(Sequence).where(
            Sequence.id == sequence_id, Sequence.organization_id == organization_id
        )
    ).first()
    if sequence is None:
        raise object_not_found("Sequence")
    return sequence


def steps_of(session: Session, sequence_ids: Seq[str]) -> dict[str, list[SequenceStep]]:
    """The sequences' steps in order, by sequence id: one query."""
    found: dict[str, list[SequenceStep]] = defaultdict(list)
    if sequence_ids:
        query = (
            select(SequenceStep)
            .where(SequenceStep.sequence_id.in_(sequence_ids))
            .order_by(SequenceStep.position, SequenceStep.id)
        )
        for step in session.scalars(query):
            found[step.sequence_id].append(step)
    return found


def list_sequences(
    session: Session, organization_id: str, skip: int, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit + 1` sequences with their steps, oldest first: two queries."""
    sequences = session.scalars(
        select(Sequence)
        .where(Sequence.organization_id == organization_id)
        .order_by(Sequence.date_created, Sequence.id)
        .offset(skip)
        .limit(limit + 1)
    ).all()
    steps = steps_of(session, [s.id for s in sequences])
    return [serialize_sequence(s, steps.get(s.id, [])) for s in sequences]


def sequence_detail(session: Session, sequence: Sequence) -> dict[str, Any]:
    """One sequence as GET/PUT return it: with `subscription_counts_by_status`."""
    counts = session.execute(
        select(Sub.status, func.count()).where(Sub.sequence_id == sequence.id).group_by(Sub.status)
    ).tuples()
    steps = steps_of(session, [sequence.id]).get(sequence.id, [])
    return serialize_sequence(sequence, steps, {status: n for status, n in counts})


# --- Writing sequences ---------------------------------------------------------------------------


def create_sequence(session: Session, actor: Actor, body: SequenceCreate) -> Sequence:
    """Flushes a new sequence and its steps, with the sequence `created` event."""
    now = utcnow()
    sequence = Sequence(
        id=new_id("seq"),
        organization_id=actor.organization_id,
        name=_clean_name(body.name),
        status=body.status,
        timezone=_check_timezone(body.timezone),
        schedule=_check_schedule(body.schedule),
        created_by_id=actor.user_id,
        updated_by_id=actor.user_id,
        date_created=now,
        date_updated=now,
    )
    steps = _build_steps(session, actor, sequence, [], body.steps, now)
    session.add(sequence)
    session.flush()
    session.add_all(steps)
    session.flush()
    record_creation(
        session, actor, object_type=SEQUENCE, data=serialize_sequence(sequence, steps), lead_id=None
    )
    return sequence


def update_sequence(
    session: Session, actor: Actor, sequence: Sequence, body: SequenceUpdate
) -> None:
    """A partial update; `steps`, when given, replaces the list (unlisted steps are deleted).
    Everything is checked before anything is written; no change, no event."""
    values = body.changes()
    now = utcnow()
    current = steps_of(session, [sequence.id]).get(sequence.id, [])
    before = serialize_sequence(sequence, current)
    if "name" in values:
        values["name"] = _clean_name(values["name"])
    if "timezone" in values:
        values["timezone"] = _check_timezone(values["timezone"])
    if "schedule" in values:
        values["schedule"] = _check_schedule(body.schedule)
    steps = current
    if body.steps is not None:
        steps = _build_steps(session, actor, sequence, current, body.steps, now)
        values.pop("steps")
        kept = {s.id for s in steps}
        gone = [s.id for s in current if s.id not in kept]
        if gone:
            session.execute(delete(SequenceStep).where(SequenceStep.id.in_(gone)))
        session.add_all(steps)
    for key, value in values.items():
        if getattr(sequence, key) != value:
            setattr(sequence, key, value)
    if serialize_sequence(sequence, steps) == before:
        return
    sequence.updated_by_id = actor.user_id
    sequence.date_updated = now
    session.flush()
    record_update(
        session,
        actor,
        object_type=SEQUENCE,
        before=before,
        after=serialize_sequence(sequence, steps),
        lead_id=None,
    )


def delete_sequence(session: Session, actor: Actor, sequence: Sequence) -> None:
    """Deletes the sequence with its steps and every subscription to it (and their step
    runs), set-based, with the sequence `deleted` event."""
    data = serialize_sequence(sequence, steps_of(session, [sequence.id]).get(sequence.id, []))
    subscriptions = select(Sub.id).where(Sub.sequence_id == sequence.id)
    session.execute(
        delete(SequenceStepRun).where(SequenceStepRun.subscription_id.in_(subscriptions))
    )
    session.execute(delete(Sub).where(Sub.sequence_id == sequence.id))
    session.execute(delete(SequenceStep).where(SequenceStep.sequence_id == sequence.id))
    session.delete(sequence)
    session.flush()
    record_deletion(session, actor, object_type=SEQUENCE, previous=data, lead_id=None)


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise field_error("name", "This field may not be blank.")
    return name


def _check_timezone(name: str) -> str:
    try:
        zone(name)
    except (ValueError, OSError):  # OSError: a tz database directory such as "America"
        raise field_error("timezone", f"Unknown timezone: {name!r}.") from None
    return name


def _check_schedule(schedule: Schedule | None) -> dict[str, Any] | None:
    """The schedule as stored; 400 naming the first bad `schedule.ranges.N.start|end`."""
    if schedule is None:
        return None
    for index, item in enumerate(schedule.ranges):
        path = f"schedule.ranges.{index}"
        times = {}
        for name in ("start", "end"):
            try:
                times[name] = parse_minute(getattr(item, name))
            except ValueError as exc:
                raise field_error(f"{path}.{name}", str(exc)) from None
        if times["start"] >= times["end"]:
            raise field_error(f"{path}.end", "The end must be later than the start.")
    return schedule.model_dump()


def _build_steps(
    session: Session,
    actor: Actor,
    sequence: Sequence,
    current: list[SequenceStep],
    bodies: list[StepIn],
    now: datetime,
) -> list[SequenceStep]:
    """The new step list, in order: existing steps (by `id`) changed in place, new steps
    transient. Raises before changing anything when a step is invalid."""
    existing = {s.id: s for s in current}
    templates = _template_ids(session, actor.organization_id, bodies)
    seen: set[str] = set()
    plans: list[tuple[SequenceStep | None, dict[str, Any]]] = []
    for index, body in enumerate(bodies):
        step = None
        if body.id is not None:
            step = existing.get(body.id)
            if step is None or body.id in seen:
                message = "Object does not exist." if step is None else "Listed twice."
                raise field_error(f"steps.{index}.id", message)
            seen.add(body.id)
        plans.append((step, _step_values(step, body, templates, f"steps.{index}")))
    steps = []
    for position, (step, values) in enumerate(plans):
        if step is None:
            step = SequenceStep(
                id=new_id("seqstep"),
                organization_id=actor.organization_id,
                sequence_id=sequence.id,
                created_by_id=actor.user_id,
                date_created=now + timedelta(microseconds=position),
            )
            values |= {"updated_by_id": actor.user_id, "date_updated": now}
        elif any(getattr(step, k) != v for k, v in values.items()):
            values |= {"updated_by_id": actor.user_id, "date_updated": now}
        elif step.position != position:
            # Moving a step does not change it: keep date_updated from the column's onupdate.
            flag_modified(step, "date_updated")
        values["position"] = position
        for key, value in values.items():
            if getattr(step, key) != value:
                setattr(step, key, value)
        steps.append(step)
    return steps


def _template_ids(session: Session, organization_id: str, bodies: list[StepIn]) -> set[str]:
    """Which of the templates the steps name belong to the organization: one query."""
    wanted = {b.email_template_id for b in bodies if b.email_template_id}
    if not wanted:
        return set()
    return set(
        session.scalars(
            select(EmailTemplate.id).where(
                EmailTemplate.id.in_(wanted), EmailTemplate.organization_id == organization_id
            )
        )
    )


def _step_values(
    step: SequenceStep | None, body: StepIn, templates: set[str], path: str
) -> dict[str, Any]:
    """A step's stored fields after `body`: given fields over the existing step's, over the
    defaults; 400 on `path.<field>` for an inconsistent step."""
    given = body.given()

    def pick(name: str, default: Any) -> Any:
        if name in given:
            return getattr(body, name)
        return getattr(step, name) if step is not None else default

    step_type = pick("step_type", "email") or "email"
    if step_type == "sms":
        raise field_error(f"{path}.step_type", "SMS steps are not supported.")
    template_id = pick("email_template_id", None)
    threading = pick("threading", None)
    if step_type == "email":
        if not template_id:
            raise field_error(f"{path}.email_template_id", "This field is required.")
        if template_id not in templates and (step is None or template_id != step.email_template_id):
            raise field_error(f"{path}.email_template_id", "Object does not exist.")
        threading = threading or "old_thread"
    else:
        for name in ("email_template_id", "threading"):
            if name in given and getattr(body, name) is not None:
                raise field_error(f"{path}.{name}", "Call steps have no email.")
        template_id = threading = None
    return {
        "step_type": step_type,
        "delay": pick("delay", 0) or 0,
        "email_template_id": template_id,
        "threading": threading,
        "required": True if pick("required", True) is None else pick("required", True),
        "step_allowed_delay": pick("step_allowed_delay", None),
    }


# --- Reading subscriptions -----------------------------------------------------------------------


def get_subscription(session: Session, organization_id: str, subscription_id: str) -> Sub:
    sub = session.scalars(
        select(Sub).where(Sub.id == subscription_id, Sub.organization_id == organization_id)
    ).first()
    if sub is None:
        raise object_not_found("SequenceSubscription")
    return sub


def list_subscriptions(
    session: Session, organization_id: str, filters: dict[str, str], skip: int, limit: int
) -> list[Sub]:
    """Up to `limit + 1` subscriptions matching every filter (at least one), oldest first."""
    if not filters:
        raise BadRequest("At least one of sequence_id, contact_id, and lead_id is required.")
    query = select(Sub).where(
        Sub.organization_id == organization_id,
        *(getattr(Sub, name) == value for name, value in filters.items()),
    )
    query = query.order_by(Sub.date_created, Sub.id).offset(skip).limit(limit + 1)
    return list(session.scalars(query))


def contact_subscriptions(
    session: Session, column: str, ids: Seq[str]
) -> dict[str, list[dict[str, Any]]]:
    """Close's `Contact.subscriptions` (BasicSubscriptionInfoForContact) of the contacts whose
    `column` (`contact_id` or `lead_id`) is in `ids`, by contact id, oldest first: one query."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if not ids:
        return found
    first_email = (
        select(SequenceStepRun.activity_id)
        .where(SequenceStepRun.subscription_id == Sub.id, SequenceStepRun.activity_id.isnot(None))
        .order_by(SequenceStepRun.id)
        .limit(1)
        .scalar_subquery()
    )
    query = (
        select(Sub, Sequence.name, Sequence.status, first_email)
        .join(Sequence, Sequence.id == Sub.sequence_id)
        .where(getattr(Sub, column).in_(ids))
        .order_by(Sub.date_created, Sub.id)
    )
    for sub, name, status, email_id in session.execute(query).tuples():
        found[sub.contact_id].append(
            {
                "subscription_id": sub.id,
                "sequence_id": sub.sequence_id,
                "sequence_name": name,
                "sequence_status": status,
                "subscription_status": sub.status,
                "subscription_status_reason": sub.status_reason,
                "contact_email": sub.contact_email,
                "initial_email_id": email_id,
                # Inside a contact (a core object) dates carry the offset, as the contact's own
                # do; Close's spec types them `date-time`.
                "start_date": iso_utc(sub.start_date),
                "date_created": iso_utc(sub.date_created),
            }
        )
    return found


# --- Writing subscriptions -----------------------------------------------------------------------


def create_subscription(session: Session, actor: Actor, body: SubscriptionCreate) -> Sub:
    """Flushes a new active subscription, due now, with its `created` event; 400 naming the
    field for anything the contact, sequence or sender does not allow."""
    org = actor.organization_id
    sequence = session.scalars(
        select(Sequence).where(Sequence.id == body.sequence_id, Sequence.organization_id == org)
    ).first()
    if sequence is None:
        raise field_error("sequence_id", "Object does not exist.")
    contact = session.scalars(
        select(Contact).where(Contact.id == body.contact_id, Contact.organization_id == org)
    ).first()
    if contact is None:
        raise field_error("contact_id", "Object does not exist.")
    step_types = set(
        session.scalars(
            select(SequenceStep.step_type).where(SequenceStep.sequence_id == sequence.id)
        )
    )
    email = _contact_email(session, org, contact, body.contact_email, "email" in step_types)
    sender = resolve_sender(
        session,
        actor,
        body.sender_account_id,
        body.sender_email,
        body.sender_name,
        required="email" in step_types,
    )
    calls = resolve_calls_assigned_to(session, actor, body.calls_assigned_to, "call" in step_types)
    _refuse_live_duplicate(session, sequence.id, contact.id)
    now = utcnow()
    sub = Sub(
        id=new_id("sub"),
        organization_id=org,
        sequence_id=sequence.id,
        contact_id=contact.id,
        lead_id=contact.lead_id,
        contact_email=email,
        **sender,
        calls_assigned_to=calls,
        start_date=None,
        status="active",
        status_reason=None,
        created_by_id=actor.user_id,
        updated_by_id=actor.user_id,
        next_step_position=0,
        next_step_at=now,
        date_created=now,
        date_updated=now,
    )
    session.add(sub)
    try:
        session.flush()
    except IntegrityError:  # a concurrent request subscribed the contact first (the request
        # rolls back either way)
        raise field_error("contact_id", ALREADY_SUBSCRIBED) from None
    record_creation(
        session,
        actor,
        object_type=SUBSCRIPTION,
        data=serialize_subscription(sub),
        lead_id=sub.lead_id,
    )
    return sub


def _contact_email(
    session: Session,
    organization_id: str,
    contact: Contact,
    wanted: str | None,
    required: bool,
) -> str | None:
    """The address to mail: `wanted` if it is one of the contact's, else its first; never an
    unsubscribed one. Only sequences with email steps need one."""
    emails = session.scalars(
        select(ContactEmail.email)
        .where(ContactEmail.contact_id == contact.id)
        .order_by(ContactEmail.position)
    ).all()
    if wanted is None:
        if not emails:
            if not required:
                return None
            raise field_error("contact_email", "The contact has no email address.")
        email = emails[0]
    else:
        matches = [e for e in emails if e.lower() == wanted.strip().lower()]
        if not matches:
            raise field_error("contact_email", "This is not one of the contact's email addresses.")
        email = matches[0]
    unsubscribed = session.scalar(
        select(UnsubscribedEmail.email_lower).where(
            UnsubscribedEmail.organization_id == organization_id,
            UnsubscribedEmail.email_lower == email.lower(),
        )
    )
    if unsubscribed is not None:
        raise field_error("contact_email", f"{email} is unsubscribed.")
    return email


def resolve_sender(
    session: Session,
    actor: Actor,
    account_id: str | None,
    sender_email: str | None,
    sender_name: str | None,
    *,
    required: bool,
) -> dict[str, Any]:
    """`sender_account_id`, `sender_email`, `sender_name`: an account the caller may send
    from (their own, or one whose owner granted them Send As) and one of its identities."""
    if account_id is None:
        if required:
            raise field_error("sender_account_id", "This field is required.")
        if sender_email is not None or sender_name is not None:
            raise field_error("sender_account_id", "Required with sender_email or sender_name.")
        return {"sender_account_id": None, "sender_email": None, "sender_name": None}
    account = session.scalars(
        select(ConnectedAccount).where(
            ConnectedAccount.id == account_id,
            ConnectedAccount.organization_id == actor.organization_id,
        )
    ).first()
    if account is None:
        raise field_error("sender_account_id", "Object does not exist.")
    if not can_send_from(session, actor.organization_id, actor.user_id, account):
        raise field_error(
            "sender_account_id", "You may not send from this account (no Send As permission)."
        )
    identities = [i for i in account.identities or [] if i.get("email")] or [
        {"email": account.email, "name": None}
    ]
    if sender_email is None:
        identity = identities[0]
    else:
        wanted = sender_email.strip().lower()
        matching = [i for i in identities if str(i["email"]).lower() == wanted]
        if not matching and account.email.lower() == wanted:
            matching = [{"email": account.email, "name": None}]
        if not matching:
            raise field_error("sender_email", "Not an email address of the sender account.")
        identity = matching[0]
    name = sender_name if sender_name is not None else identity.get("name")
    return {
        "sender_account_id": account.id,
        "sender_email": identity["email"],
        "sender_name": name,
    }


def resolve_calls_assigned_to(
    session: Session, actor: Actor, wanted: list[str] | None, has_calls: bool
) -> list[str]:
    """Active members of the organization; by default the caller when there are call steps."""
    if wanted is None:
        return [actor.user_id] if has_calls else []
    users = list(dict.fromkeys(wanted))
    members = set(
        session.scalars(
            select(Membership.user_id).where(
                Membership.organization_id == actor.organization_id,
                Membership.user_id.in_(users),
                Membership.is_active.is_(True),
            )
        )
    )
    strangers = [u for u in users if u not in members]
    if strangers:
        raise field_error("calls_assigned_to", f"Not a member of the organization: {strangers[0]}")
    return users


def _refuse_live_duplicate(session: Session, sequence_id: str, contact_id: str) -> None:
    live = session.scalar(
        select(Sub.id).where(
            Sub.sequence_id == sequence_id, Sub.contact_id == contact_id, Sub.status.in_(LIVE)
        )
    )
    if live is not None:
        raise field_error("contact_id", ALREADY_SUBSCRIBED)


def update_subscription(session: Session, actor: Actor, sub: Sub, body: SubscriptionUpdate) -> None:
    """Pause (reason `manual`, not due) or resume (due now; the engine computes the real
    time) a live subscription; an ended one cannot change. No change, no event."""
    status = body.status
    if status is None or status == sub.status:
        return
    if sub.status not in LIVE:
        raise field_error("status", f"A {sub.status} subscription cannot be paused or resumed.")
    before = serialize_subscription(sub)
    now = utcnow()
    if status == "paused":
        sub.status, sub.status_reason, sub.next_step_at = "paused", "manual", None
    else:
        sub.status, sub.status_reason, sub.next_step_at = "active", None, now
    sub.updated_by_id = actor.user_id
    sub.date_updated = now
    session.flush()
    record_update(
        session,
        actor,
        object_type=SUBSCRIPTION,
        before=before,
        after=serialize_subscription(sub),
        lead_id=sub.lead_id,
    )


def delete_subscription(session: Session, actor: Actor, sub: Sub) -> None:
    """Deletes the subscription and its step runs, with its `deleted` event."""
    data = serialize_subscription(sub)
    session.execute(delete(SequenceStepRun).where(SequenceStepRun.subscription_id == sub.id))
    session.delete(sub)
    session.flush()
    record_deletion(session, actor, object_type=SUBSCRIPTION, previous=data, lead_id=sub.lead_id)
