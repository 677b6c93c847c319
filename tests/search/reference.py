"""A plain-Python reading of Advanced Filtering, for property tests of the SQL compiler.

Objects are dicts of field values (None is a missing value) with lists of related objects.
`Reference.matches` says whether a query tree selects an object; `sorted_ids` orders objects
the way a search's `sort` does. Written from the semantics, not from the compiler: text
matching scans for word boundaries instead of building regular expressions.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from clove.contact.schemas import normalize_phone

# Value kinds (as in fields.py, plus the custom date field's local day).
TEXT, KEYWORD, NUMBER, MOMENT, DATE = "text", "keyword", "number", "moment", "date"


@dataclass(frozen=True)
class FieldInfo:
    kind: str
    # Matched without regard to case (text, emails). Other keywords (ids, phones, types,
    # choices) compare exactly under `exact_value` and `term`.
    caseless: bool = False
    reference_type: str | None = None
    multi: bool = False  # a multi-value custom field: a condition holds for any one value


@dataclass
class Obj:
    kind: str
    id: str
    values: dict[str, Any]
    related: dict[str, list[Obj]] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<{self.kind} {self.id} {self.values.get('name')!r}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


FIELDS: dict[str, dict[str, FieldInfo]] = {
    "lead": {
        "id": FieldInfo(KEYWORD, reference_type="lead"),
        "name": FieldInfo(TEXT),
        "display_name": FieldInfo(TEXT),
        "description": FieldInfo(TEXT),
        "status_id": FieldInfo(KEYWORD, reference_type="status.lead"),
        "status_label": FieldInfo(TEXT),
        "date_created": FieldInfo(MOMENT),
        "num_contacts": FieldInfo(NUMBER),
        "num_email_addresses": FieldInfo(NUMBER),
        "num_phone_numbers": FieldInfo(NUMBER),
    },
    "contact": {
        "id": FieldInfo(KEYWORD, reference_type="contact"),
        "lead_id": FieldInfo(KEYWORD, reference_type="lead"),
        "name": FieldInfo(TEXT),
        "title": FieldInfo(TEXT),
        "date_created": FieldInfo(MOMENT),
        "num_emails": FieldInfo(NUMBER),
        "num_phones": FieldInfo(NUMBER),
    },
    "contact_email": {
        "email": FieldInfo(KEYWORD, caseless=True),
        "type": FieldInfo(KEYWORD),
    },
    "contact_phone": {
        "phone": FieldInfo(KEYWORD),
        "type": FieldInfo(KEYWORD),
    },
}

# What field-less text searches: the object's own fields, then related objects' fields.
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "lead": ("name", "description"),
    "contact": ("name", "title"),
    "contact_email": ("email",),
    "contact_phone": ("phone",),
}
TEXT_RELATED: dict[str, tuple[tuple[str, str], ...]] = {
    "lead": (
        ("contact", "name"),
        ("contact", "title"),
        ("contact_email", "email"),
        ("contact_phone", "phone"),
    ),
    "contact": (("contact_email", "email"), ("contact_phone", "phone")),
}

CUSTOM_KINDS = {
    "text": TEXT,
    "number": NUMBER,
    "choices": KEYWORD,
    "date": DATE,
    "datetime": MOMENT,
}


def custom_field_info(cf_type: str, multi: bool) -> FieldInfo:
    return FieldInfo(CUSTOM_KINDS[cf_type], multi=multi)


# --- Text ----------------------------------------------------------------------------------------


def is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _starts_word(hay: str, i: int) -> bool:
    return i == 0 or not is_word_char(hay[i - 1])


def _ends_word(hay: str, j: int) -> bool:
    return j == len(hay) or not is_word_char(hay[j])


def _occurrences(hay: str, needle: str) -> list[int]:
    found = []
    i = hay.find(needle)
    while i != -1:
        found.append(i)
        i = hay.find(needle, i + 1)
    return found


def _phrase_from(hay: str, start: int, words: Sequence[str]) -> bool:
    """`words` occur from `start` on, one after the other, each pair separated by a
    non-empty run of non-word characters, the last one ending a word."""
    first, rest = words[0], words[1:]
    if not hay.startswith(first, start):
        return False
    end = start + len(first)
    if not rest:
        return _ends_word(hay, end)
    k = end
    while k < len(hay) and not is_word_char(hay[k]):
        k += 1
        if _phrase_from(hay, k, rest):
            return True
    return False


def text_matches(mode: str, query: str, value: str) -> bool:
    """The word modes (not `exact_value`) on a present value, without regard to case."""
    words = query.strip().lower().split()
    if not words:
        return True
    hay = value.lower()
    if mode == "phrase":
        return any(
            _starts_word(hay, i) and _phrase_from(hay, i, words)
            for i in _occurrences(hay, words[0])
        )
    whole = mode != "beginning_of_words"
    return all(
        any(
            _starts_word(hay, i) and (not whole or _ends_word(hay, i + len(word)))
            for i in _occurrences(hay, word)
        )
        for word in words
    )


def as_phone(text: str) -> str:
    try:
        return normalize_phone(text)
    except ValueError:
        return text


# --- Moments -------------------------------------------------------------------------------------


def day_start(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(), tz).astimezone(UTC)


def resolve_moment(moment: dict[str, Any], now: datetime, tz: tzinfo) -> datetime:
    kind = moment["type"]
    if kind == "now":
        return now
    if kind == "fixed_utc":
        parsed = datetime.fromisoformat(moment["value"].replace("Z", "+00:00"))
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    if kind == "fixed_local_date":
        day = date.fromisoformat(moment["value"])
        if moment.get("which", "start") == "end":
            day += timedelta(days=1)
        return day_start(day, tz)
    assert kind == "offset"
    base = resolve_moment(moment["moment"], now, tz).astimezone(tz)
    sign = -1 if moment["direction"] == "past" else 1
    amount = {k: 0 for k in ("years", "months", "weeks", "days", "hours", "minutes", "seconds")}
    amount.update(moment["offset"])
    months = sign * (amount["years"] * 12 + amount["months"])
    if months:
        index = base.year * 12 + base.month - 1 + months
        year, month0 = divmod(index, 12)
        last = calendar.monthrange(year, month0 + 1)[1]
        base = base.replace(year=year, month=month0 + 1, day=min(base.day, last))
    shifted = base + sign * timedelta(
        weeks=amount["weeks"],
        days=amount["days"],
        hours=amount["hours"],
        minutes=amount["minutes"],
        seconds=amount["seconds"],
    )
    which = moment.get("which_day_end")
    whole_days = not (amount["hours"] or amount["minutes"] or amount["seconds"])
    if which and whole_days:
        day = shifted.date() + timedelta(days=1 if which == "end" else 0)
        return day_start(day, tz)
    return shifted.astimezone(UTC)


# --- Evaluation ----------------------------------------------------------------------------------


class Reference:
    def __init__(self, custom: dict[str, FieldInfo], now: datetime, tz: tzinfo) -> None:
        self.custom = custom  # custom field id -> kind (lead custom fields)
        self.now = now
        self.tz = tz

    def matches(self, node: dict[str, Any], obj: Obj) -> bool:
        result = self._node(node, obj)
        return result != bool(node.get("negate", False))

    def _node(self, node: dict[str, Any], obj: Obj) -> bool:
        kind = node["type"]
        if kind == "and":
            return all(self.matches(child, obj) for child in node["queries"])
        if kind == "or":
            return any(self.matches(child, obj) for child in node["queries"])
        if kind == "object_type":
            return bool(node["object_type"] == obj.kind)
        if kind == "match_all":
            return True
        if kind == "id":
            return bool(node["value"] == obj.id)
        if kind == "has_related":
            rows = obj.related[node["related_object_type"]]
            return any(self.matches(node["related_query"], row) for row in rows)
        if kind == "text":
            condition = {"type": "text", "mode": node.get("mode", "full_words")}
            condition["value"] = node["value"]
            for name in TEXT_FIELDS[obj.kind]:
                if self.condition(FIELDS[obj.kind][name], name, condition, obj.values[name]):
                    return True
            for related_kind, name in TEXT_RELATED.get(obj.kind, ()):
                info = FIELDS[related_kind][name]
                for row in obj.related[related_kind]:
                    if self.condition(info, name, condition, row.values[name]):
                        return True
            return False
        assert kind == "field_condition", kind
        spec = node["field"]
        if spec["type"] == "custom_field":
            name = spec["custom_field_id"]
            info = self.custom[name]
            value = obj.values.get("custom", {}).get(name)
        else:
            assert spec["object_type"] == obj.kind
            name = spec["field_name"]
            info = FIELDS[obj.kind][name]
            value = obj.values[name]
        condition = node["condition"]
        if info.multi and condition["type"] != "exists":
            return any(self.condition(info, name, condition, v) for v in value or [])
        return self.condition(info, name, condition, value)

    def condition(self, info: FieldInfo, name: str, condition: dict[str, Any], value: Any) -> bool:
        """A condition on one (possibly missing) value: a missing value matches nothing."""
        if value is None:
            return False
        kind = condition["type"]
        if kind == "exists":
            return not (info.kind == TEXT and value == "")
        if kind == "text":
            text = condition["value"].strip()
            mode = condition.get("mode", "full_words")
            if mode == "exact_value":
                if name == "phone":
                    text = as_phone(text)
                if info.kind == TEXT or info.caseless:
                    return bool(value.lower() == text.lower())
                return bool(value == text)
            return text_matches(mode, text, value)
        if kind == "term":
            values = condition["values"]
            if info.kind == NUMBER:
                return value in values
            if name == "phone":
                values = [as_phone(v) for v in values]
            if info.kind == TEXT or info.caseless:
                return value.lower() in {v.lower() for v in values}
            return value in values
        if kind == "reference":
            assert condition["reference_type"] == info.reference_type
            return value in condition["object_ids"]
        if kind == "number_range":
            return all(
                condition.get(key) is None or check(value, condition[key])
                for key, check in NUMBER_BOUNDS.items()
            )
        assert kind == "moment_range", kind
        return all(self._moment_bound(info, condition, key, value) for key in BOUNDS)

    def _moment_bound(
        self, info: FieldInfo, condition: dict[str, Any], key: str, value: Any
    ) -> bool:
        moment = condition.get(key)
        if moment is None:
            return True
        instant = resolve_moment(moment, self.now, self.tz)
        if info.kind == DATE:
            # A date names a local day; it compares with an instant by the day's start.
            value = day_start(date.fromisoformat(value), self.tz)
        else:
            if isinstance(value, str):  # a datetime custom field: ISO 8601 in UTC
                value = datetime.fromisoformat(value)
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
        return bool(BOUNDS[key](value, instant))


NUMBER_BOUNDS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda v, b: v > b,
    "gte": lambda v, b: v >= b,
    "lt": lambda v, b: v < b,
    "lte": lambda v, b: v <= b,
}
BOUNDS: dict[str, Callable[[datetime, datetime], bool]] = {
    "on_or_after": lambda v, i: v >= i,
    "after": lambda v, i: v > i,
    "before": lambda v, i: v < i,
    "on_or_before": lambda v, i: v <= i,
}


# --- Sorting -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    """One sort key: how to read it from an object, whether it may be missing, its direction."""

    read: Callable[[Obj], Any]
    nullable: bool
    descending: bool


def sorted_ids(objects: Sequence[Obj], keys: Sequence[SortKey]) -> list[str]:
    """Objects in sort order: missing values last in either direction, then the id in the
    direction of the last key."""

    def compare(a: Obj, b: Obj) -> int:
        for key in keys:
            x, y = key.read(a), key.read(b)
            if key.nullable and (x is None) != (y is None):
                return 1 if x is None else -1
            if x is None or x == y:
                continue
            smaller = -1 if x < y else 1
            return -smaller if key.descending else smaller
        if a.id == b.id:
            return 0
        smaller = -1 if a.id < b.id else 1
        return -smaller if keys[-1].descending else smaller

    return [o.id for o in sorted(objects, key=functools.cmp_to_key(compare))]
