"""Request bodies and the wire shapes of sequences, steps and subscriptions (close-api.md §4)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Literal

from pydantic import Field

from clove.kit.dates import iso_naive
from clove.kit.schemas import Body, PatchBody, TolerantBody
from clove.models import Sequence, SequenceStep, SequenceSubscription

# Integer columns: a bigger number would overflow PostgreSQL's INTEGER (a 500, not a 400).
MAX_SECONDS = 2**31 - 1
MAX_STEPS = 100
MAX_RANGES = 100
SUBSCRIPTION_STATUSES = ("active", "paused", "finished", "goal", "error")

DATES_AND_AUTHORS = frozenset({"created_by_id", "updated_by_id", "date_created", "date_updated"})

# --- Wire shapes ---------------------------------------------------------------------------------


def serialize_step(step: SequenceStep) -> dict[str, Any]:
    return {
        "id": step.id,
        "step_type": step.step_type,
        "delay": step.delay,
        "email_template_id": step.email_template_id,
        "threading": step.threading,
        "required": step.required,
        "step_allowed_delay": step.step_allowed_delay,
        "created_by_id": step.created_by_id,
        "updated_by_id": step.updated_by_id,
        "date_created": iso_naive(step.date_created),
        "date_updated": iso_naive(step.date_updated),
    }


def serialize_sequence(
    sequence: Sequence,
    steps: Iterable[SequenceStep],
    counts: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A sequence with its steps in order; `counts` (GET/PUT of one sequence only) adds
    `subscription_counts_by_status`."""
    data = {
        "id": sequence.id,
        "name": sequence.name,
        "status": sequence.status,
        "timezone": sequence.timezone,
        "schedule": sequence.schedule,
        "steps": [serialize_step(s) for s in sorted(steps, key=lambda s: s.position)],
        "organization_id": sequence.organization_id,
        "created_by_id": sequence.created_by_id,
        "updated_by_id": sequence.updated_by_id,
        "date_created": iso_naive(sequence.date_created),
        "date_updated": iso_naive(sequence.date_updated),
    }
    if counts is not None:
        data["subscription_counts_by_status"] = {s: counts.get(s, 0) for s in SUBSCRIPTION_STATUSES}
    return data


def serialize_subscription(sub: SequenceSubscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "sequence_id": sub.sequence_id,
        "contact_id": sub.contact_id,
        "contact_email": sub.contact_email,
        "lead_id": sub.lead_id,
        "sender_account_id": sub.sender_account_id,
        "sender_name": sub.sender_name,
        "sender_email": sub.sender_email,
        "calls_assigned_to": list(sub.calls_assigned_to or []),
        "start_date": iso_naive(sub.start_date),
        "status": sub.status,
        "status_reason": sub.status_reason,
        "organization_id": sub.organization_id,
        "created_by_id": sub.created_by_id,
        "updated_by_id": sub.updated_by_id,
        "date_created": iso_naive(sub.date_created),
        "date_updated": iso_naive(sub.date_updated),
    }


# --- Sequence bodies -----------------------------------------------------------------------------


class ScheduleRange(Body):
    """One weekly window; `start`/`end` are checked by the service (it names the path)."""

    weekday: int = Field(ge=1, le=7)
    start: str = Field(max_length=5)
    end: str = Field(max_length=5)


class Schedule(Body):
    ranges: list[ScheduleRange] = Field(default_factory=list, max_length=MAX_RANGES)


class StepIn(TolerantBody):
    """A step of a sequence body: with `id`, an existing step kept (and changed by the other
    fields given); without, a new step."""

    read_only: ClassVar[frozenset[str]] = DATES_AND_AUTHORS | {"sequence_id", "organization_id"}

    id: str | None = Field(default=None, max_length=64)
    step_type: Literal["email", "call", "sms"] | None = None
    delay: int | None = Field(default=None, ge=0, le=MAX_SECONDS)
    email_template_id: str | None = Field(default=None, max_length=64)
    threading: Literal["old_thread", "new_thread"] | None = None
    required: bool | None = None
    step_allowed_delay: int | None = Field(default=None, ge=0, le=MAX_SECONDS)

    def given(self) -> set[str]:
        return self.model_fields_set - {"id"}


SEQUENCE_READ_ONLY = DATES_AND_AUTHORS | {
    "id",
    "organization_id",
    "subscription_counts_by_status",
}
SequenceStatus = Literal["active", "paused", "draft"]


class SequenceCreate(TolerantBody):
    read_only: ClassVar[frozenset[str]] = SEQUENCE_READ_ONLY

    name: str = Field(max_length=200)
    status: SequenceStatus = "active"
    # Close's docs show no default; UTC is the only zone that needs no guess.
    timezone: str = Field(default="UTC", max_length=64)
    schedule: Schedule | None = None
    steps: list[StepIn] = Field(default_factory=list, max_length=MAX_STEPS)


class SequenceUpdate(TolerantBody, PatchBody):
    read_only: ClassVar[frozenset[str]] = SEQUENCE_READ_ONLY
    nullable: ClassVar[frozenset[str]] = frozenset({"schedule"})

    name: str | None = Field(default=None, max_length=200)
    status: SequenceStatus | None = None
    timezone: str | None = Field(default=None, max_length=64)
    schedule: Schedule | None = None
    steps: list[StepIn] | None = Field(default=None, max_length=MAX_STEPS)


# --- Subscription bodies -------------------------------------------------------------------------


class SubscriptionCreate(TolerantBody):
    read_only: ClassVar[frozenset[str]] = DATES_AND_AUTHORS | {
        "id",
        "organization_id",
        "lead_id",
        "start_date",
        "status",
        "status_reason",
    }

    sequence_id: str = Field(max_length=64)
    contact_id: str = Field(max_length=64)
    contact_email: str | None = Field(default=None, max_length=254)
    sender_account_id: str | None = Field(default=None, max_length=64)
    sender_name: str | None = Field(default=None, max_length=200)
    sender_email: str | None = Field(default=None, max_length=254)
    calls_assigned_to: list[str] | None = Field(default=None, max_length=100)


class SubscriptionUpdate(PatchBody):
    """Only the status changes (Close documents no other writable field)."""

    status: Literal["active", "paused"] | None = None
