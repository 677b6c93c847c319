"""Moments of `moment_range` conditions, resolved to instants in the caller's time zone."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from clove.errors import BadRequest
from clove.search.tree import FixedLocalDate, FixedUtc, Moment, Now, Offset, OffsetAmount


def resolve(moment: Moment, now: datetime, tz: tzinfo) -> datetime:
    """The instant (aware, UTC) that `moment` names at `now`, local days taken in `tz`."""
    if isinstance(moment, Now):
        return now
    if isinstance(moment, FixedUtc):
        return _parse_utc(moment.value)
    if isinstance(moment, FixedLocalDate):
        return day_edge(_parse_date(moment.value), moment.which, tz)
    return _offset(moment, now, tz)


def day_edge(day: date, which: str, tz: tzinfo) -> datetime:
    """Local midnight at the start of `day`, or at its end (the next day's start)."""
    if which == "end":
        day += timedelta(days=1)
    return datetime.combine(day, time(), tz).astimezone(UTC)


def _offset(moment: Offset, now: datetime, tz: tzinfo) -> datetime:
    base = resolve(moment.moment, now, tz)
    sign = -1 if moment.direction == "past" else 1
    amount = moment.offset
    shifted = _add_months(base.astimezone(tz), sign * (amount.years * 12 + amount.months))
    shifted += sign * timedelta(
        weeks=amount.weeks,
        days=amount.days,
        hours=amount.hours,
        minutes=amount.minutes,
        seconds=amount.seconds,
    )
    # Snapping to a day's edge only makes sense for whole-day offsets: clients send
    # `which_day_end` with "10 minutes ago" too and mean the exact minute (close-search B5).
    if moment.which_day_end and _whole_days(amount):
        return day_edge(shifted.date(), moment.which_day_end, tz)
    return shifted.astimezone(UTC)


def _whole_days(amount: OffsetAmount) -> bool:
    return not (amount.hours or amount.minutes or amount.seconds)


def _add_months(moment: datetime, months: int) -> datetime:
    """Calendar months later (earlier when negative); the 31st becomes the month's last day."""
    if not months:
        return moment
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    if not 1 <= year <= 9999:
        raise BadRequest("A moment offset reaches outside the years 1 to 9999.")
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _parse_utc(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{value!r} is not an ISO 8601 date and time.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{value!r} is not a date in the format YYYY-MM-DD.") from None
