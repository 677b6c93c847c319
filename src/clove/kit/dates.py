"""Close's two date formats and the clock."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time as a naive UTC datetime, the form stored in the database."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso_utc(value: datetime | None) -> str | None:
    """Core objects: microseconds and an explicit offset, `2013-02-01T00:54:51.331000+00:00`."""
    if value is None:
        return None
    value = _as_naive_utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"


def iso_naive(value: datetime | None) -> str | None:
    """Newer services (sequences, webhooks, events): naive UTC, `2022-03-10T14:21:15.270359`."""
    if value is None:
        return None
    return _as_naive_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _as_naive_utc(value: datetime) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def parse_tz_offset(raw: str | None) -> float:
    """Hours east of UTC from an `X-TZ-Offset` header (`-4`, `5.5`, `-0.0`); 0 when absent.

    Raises ValueError for anything that is not a real zone offset.
    """
    if raw is None or not raw.strip():
        return 0.0
    hours = float(raw)
    if not -14.0 <= hours <= 14.0:  # also rejects NaN
        raise ValueError(raw)
    return hours
