"""When a sequence may send: its weekly `schedule` ranges in its own timezone.

`{"ranges": [{"weekday": 1, "start": "09:00", "end": "16:59"}, ...]}`: weekday 1 is Monday,
7 is Sunday; `start` and `end` are wall-clock minutes in the sequence's timezone, both
included (`16:59` sends until 16:59:59). A null schedule, or one with no ranges, is always
open. Windows are computed on local dates and turned into UTC one day at a time, so a window
on the day of a DST change is as long as the wall clock says (a 09:00-17:00 window is
09:00-17:00 local on both sides of the change).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Far enough to cross any week, however sparse the ranges.
SEARCH_DAYS = 8


def zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`; ValueError when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "America" is a directory
        raise ValueError(f"Unknown timezone {name!r}.") from None


def parse_minute(value: str) -> time:
    """`"HH:MM"` as a time; ValueError otherwise."""
    hours, sep, minutes = value.partition(":")
    if not sep or not (hours.isdigit() and minutes.isdigit()) or len(minutes) != 2:
        raise ValueError(f"{value!r} is not a time of day like 09:00.")
    parsed = time(int(hours), int(minutes)) if int(hours) < 24 and int(minutes) < 60 else None
    if parsed is None:
        raise ValueError(f"{value!r} is not a time of day like 09:00.")
    return parsed


def _local_to_utc(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time. A time skipped by a spring-forward jump is read
    with the offset before the jump (fold=0), which lands just past the gap (02:30 -> 03:30)."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def windows(day: date, schedule: dict[str, Any], tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """The day's open intervals in naive UTC, [start, end), in order."""
    out = []
    for item in schedule.get("ranges") or []:
        if int(item["weekday"]) != day.isoweekday():
            continue
        start = _local_to_utc(day, parse_minute(item["start"]), tz)
        end_minute = parse_minute(item["end"])
        end = _local_to_utc(day, end_minute, tz) + timedelta(minutes=1)
        if end > start:
            out.append((start.replace(tzinfo=None), end.replace(tzinfo=None)))
    return sorted(out)


def next_opening(moment: datetime, schedule: dict[str, Any] | None, timezone: str) -> datetime:
    """The first instant at or after `moment` (naive UTC) inside the schedule, naive UTC."""
    if not schedule or not schedule.get("ranges"):
        return moment
    tz = zone(timezone)
    local_day = moment.replace(tzinfo=UTC).astimezone(tz).date()
    for offset in range(-1, SEARCH_DAYS):
        for start, end in windows(local_day + timedelta(days=offset), schedule, tz):
            if moment < end:
                return max(moment, start)
    raise ValueError("The schedule has no open time.")  # ranges were validated non-empty


def is_open(moment: datetime, schedule: dict[str, Any] | None, timezone: str) -> bool:
    return next_opening(moment, schedule, timezone) == moment
