"""Close's legacy text query (`GET /lead/?query=…`) compiled into the Advanced Filtering tree.

The grammar is text_query.lark. `parse_text_query` walks lark's parse tree with the object type
in scope (lead or contact at the top, contact or sequence_subscription inside nested clauses)
and builds plain dicts, which `clove.search.tree` then validates, so a single SQL compiler serves
both languages. Every problem, syntax or meaning, is a `ValidationFailed` on `query`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from importlib.resources import files
from typing import Any, Protocol

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from sqlalchemy import select
from sqlalchemy.orm import Session

from clove.errors import ValidationFailed
from clove.models import CustomField, SavedSearch
from clove.search.tree import Node, SortSpec, parse_node

Raw = dict[str, Any]
MATCH_ALL: Raw = {"type": "match_all"}


# --- Public API ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomFieldInfo:
    id: str
    # text number date datetime choices user contact hidden
    type: str
    accepts_multiple_values: bool


class Names(Protocol):
    """Resolves the names a text query mentions (custom fields and Smart Views) to ids."""

    def custom_field(self, object_type: str, name: str) -> CustomFieldInfo | None:
        """The field named `name` (case-insensitive) or with id `name`."""
        ...

    def saved_search(self, name_or_id: str) -> str | None:
        """The `save_…` id of the Smart View with that name (case-insensitive) or id."""
        ...


class SessionNames:
    """`Names` read from the database, for one organization. Matching is done in Python with
    `casefold` because SQLite's lower() only folds ASCII; an organization has few custom fields
    and Smart Views, and each list is loaded at most once per instance."""

    def __init__(self, session: Session, organization_id: str) -> None:
        self._session = session
        self._organization_id = organization_id
        self._fields: dict[str, list[CustomField]] = {}
        self._views: list[tuple[str, str]] | None = None

    def custom_field(self, object_type: str, name: str) -> CustomFieldInfo | None:
        if object_type not in self._fields:
            self._fields[object_type] = list(
                self._session.scalars(
                    select(CustomField)
                    .where(
                        CustomField.organization_id == self._organization_id,
                        CustomField.object_type == object_type,
                    )
                    .order_by(CustomField.position, CustomField.id)
                )
            )
        rows = self._fields[object_type]
        found = _best_match(name, [(row.id, row.name) for row in rows])
        if found is None:
            return None
        row = next(row for row in rows if row.id == found)
        return CustomFieldInfo(row.id, row.type, bool(row.accepts_multiple_values))

    def saved_search(self, name_or_id: str) -> str | None:
        if self._views is None:
            rows = self._session.execute(
                select(SavedSearch.id, SavedSearch.name)
                .where(SavedSearch.organization_id == self._organization_id)
                .order_by(SavedSearch.date_created, SavedSearch.id)
            )
            self._views = [(row.id, row.name) for row in rows]
        return _best_match(name_or_id, self._views)


def _best_match(wanted: str, rows: list[tuple[str, str]]) -> str | None:
    """The id of the row whose id equals `wanted`, else whose name equals it exactly, else
    ignoring case (names are unique per organization only as typed, so several can fold to the
    same name; the exact spelling, then the first row, wins)."""
    for matches in (
        lambda row_id, _name: row_id == wanted,
        lambda _id, name: name == wanted,
        lambda _id, name: name.casefold() == wanted.casefold(),
    ):
        for row_id, name in rows:
            if matches(row_id, name):
                return row_id
    return None


@dataclass(frozen=True)
class TextQuery:
    query: Node
    sort: list[SortSpec]
    slice: tuple[int, int] | None


def parse_text_query(text: str, object_type: str, names: Names) -> TextQuery:
    """The text query as a tree over `object_type` ("lead" or "contact"), with its `sort:` and
    `slice:` directives, or a 400 on `query` saying what is wrong and where."""
    if object_type not in ("lead", "contact"):
        raise ValueError(f"text queries search leads or contacts, not {object_type!r}")
    builder = _Builder(names, object_type)
    expr = builder.build(_parse(text))
    raw = {
        "type": "and",
        "queries": [{"type": "object_type", "object_type": object_type}, expr or MATCH_ALL],
    }
    sort = [SortSpec.model_validate(spec) for spec in builder.sort]
    return TextQuery(parse_node(raw), sort, builder.slice)


def _fail(message: str) -> ValidationFailed:
    return ValidationFailed(field_errors={"query": message})


# --- Syntax --------------------------------------------------------------------------------------

_PARSER = Lark(
    files("clove.search").joinpath("text_query.lark").read_text(encoding="utf-8"),
    parser="lalr",
    lexer="contextual",
)

# Lark's terminal names in plain words, for "expected …" in syntax errors.
_TERMINALS = {
    "WORD": "a search term",
    "VALUE": "a value",
    "STRING": "a quoted string",
    "RELDATE": "a relative date",
    "COLON": "':'",
    "OP": "a comparison (> >= < <= =)",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "_OR": "'or'",
    "_AND": "'and'",
    "_NOT": "'not'",
    "_IN": "'in'",
    "CLAUSE": "a clause such as contact(",
    "_SORT": "sort:",
    "_SLICE": "slice:",
    "_VIEW": "in:",
    "_HAS": "has:",
    "$END": "the end of the query",
}
# Where a new term may start, say "a search term" rather than list every way to start one.
_TERM_STARTS = {"STRING", "RELDATE", "LPAR", "_NOT", "CLAUSE", "_SORT", "_SLICE", "_VIEW", "_HAS"}
# Parse-tree depth beyond which a query is refused rather than risk Python's recursion limit
# (each pair of parentheses costs three levels: expr, conj, group).
_MAX_DEPTH = 200


def _parse(text: str) -> Tree[Token]:
    try:
        return _PARSER.parse(text)
    except UnexpectedInput as exc:
        raise _fail(_syntax_message(exc)) from None
    except LarkError as exc:  # not raised by LALR parsing today; never let one escape
        raise _fail(f"Could not parse the query: {exc}") from None


def _syntax_message(exc: UnexpectedInput) -> str:
    where = f"Syntax error at column {exc.column}"
    if isinstance(exc, UnexpectedCharacters):
        if exc.char == '"':
            return f"{where}: this double quote is never closed."
        return f"{where}: unexpected {exc.char!r}{_expected(exc.allowed)}."
    if isinstance(exc, UnexpectedToken):
        expected = _acceptable(exc)
        if exc.token.type == "$END":
            return f"Syntax error: the query ends too early{_expected(expected)}."
        if exc.token.type == "RPAR" and "$END" in expected:
            return f"{where}: this ')' has no matching '('."
        return f"{where}: unexpected {exc.token.value!r}{_expected(expected)}."
    return f"{where}."


def _acceptable(exc: UnexpectedToken) -> set[str]:
    """What could actually come next. `exc.expected` is the LALR state's table, which merges
    states (a `,` or `)` may show up far from any list); the interactive parser tries each."""
    try:
        return set(exc.interactive_parser.accepts())
    except (LarkError, AttributeError):
        return set(exc.expected)


def _expected(terminals: set[str] | None) -> str:
    if not terminals:
        return ""
    names = set(terminals)
    if "WORD" in names:
        names -= _TERM_STARTS
    if "VALUE" in names:
        names -= {"STRING", "RELDATE"}  # "a value" covers quoted strings and relative dates
    words = sorted({_TERMINALS.get(name, name) for name in names})
    listed = ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]
    return f"; expected {listed}"


@dataclass(frozen=True)
class _Value:
    """One value as written: `quoted` tells `"acme"` from `acme` (and `"*"` from `*`)."""

    text: str
    quoted: bool

    @classmethod
    def of(cls, token: Token) -> _Value:
        if token.type == "STRING":
            return cls(re.sub(r"\\(.)", r"\1", token.value[1:-1], flags=re.S), True)
        return cls(token.value, False)

    @property
    def star(self) -> bool:
        return self.text == "*" and not self.quoted

    @property
    def several_words(self) -> bool:
        return len(self.text.split()) > 1


def _tokens(tree: Tree[Token]) -> list[Token]:
    return [child for child in tree.children if isinstance(child, Token)]


def _subtrees(tree: Tree[Token]) -> list[Tree[Token]]:
    return [child for child in tree.children if isinstance(child, Tree)]


# --- Fields --------------------------------------------------------------------------------------

# How a field's values become conditions (see _Builder._match and _Builder._match_any).
TEXT = "text"  # words: full_words, or phrase for a quoted multi-word value
EXACT = "exact"  # the whole value (status label, phone), text exact_value; lists are terms
EMAIL = "email"  # like EXACT but lower-cased, as clients do
TERM = "term"  # enum-like values
REFERENCE = "reference"  # object ids
USER = "user"  # user ids, with `me` meaning the caller
ID = "id"  # the object's own id: `id` nodes
NUMBER = "number"
DATE = "date"


@dataclass(frozen=True)
class _Target:
    """A resolved field: what to compare and how."""

    written: str  # the name as the query spelled it, for messages
    kind: str
    field: Raw | None = None  # field spec; None for ID
    reference_type: str = ""
    # (this_object_type, related_object_type) when the field lives on a related object:
    # a lead's `email` is a `contact_email` row.
    related: tuple[str, str] | None = None


def _rf(object_type: str, field_name: str) -> Raw:
    return {"type": "regular_field", "object_type": object_type, "field_name": field_name}


def _lead_fields() -> dict[str, _Target]:
    lead, email, phone = "lead", ("lead", "contact_email"), ("lead", "contact_phone")
    targets = {
        "name": _Target("", TEXT, _rf(lead, "name")),
        "description": _Target("", TEXT, _rf(lead, "description")),
        "url": _Target("", TEXT, _rf(lead, "url")),
        "status": _Target("", EXACT, _rf(lead, "status_label")),
        "status_id": _Target("", REFERENCE, _rf(lead, "status_id"), "status.lead"),
        "id": _Target("", ID),
        "created": _Target("", DATE, _rf(lead, "date_created")),
        "updated": _Target("", DATE, _rf(lead, "date_updated")),
        "created_by": _Target("", USER, _rf(lead, "created_by"), "user"),
        "updated_by": _Target("", USER, _rf(lead, "updated_by"), "user"),
        "contacts": _Target("", NUMBER, _rf(lead, "num_contacts")),
        "addresses": _Target("", NUMBER, _rf(lead, "num_addresses")),
        "email_addresses": _Target("", NUMBER, _rf(lead, "num_email_addresses")),
        "phone_numbers": _Target("", NUMBER, _rf(lead, "num_phone_numbers")),
        "email": _Target("", EMAIL, _rf("contact_email", "email"), related=email),
        "phone": _Target("", EXACT, _rf("contact_phone", "phone"), related=phone),
    }
    aliases = {
        "company": "name",
        "display_name": "name",
        "lead_name": "name",
        "lead_status": "status",
        "status_label": "status",
        "lead_id": "id",
        "date_created": "created",
        "date_updated": "updated",
        "num_contacts": "contacts",
        "email_address": "email",
    }
    return targets | {alias: targets[name] for alias, name in aliases.items()}


def _contact_fields() -> dict[str, _Target]:
    contact, email, phone = "contact", ("contact", "contact_email"), ("contact", "contact_phone")
    targets = {
        "name": _Target("", TEXT, _rf(contact, "name")),
        "title": _Target("", TEXT, _rf(contact, "title")),
        "email": _Target("", EMAIL, _rf("contact_email", "email"), related=email),
        "phone": _Target("", EXACT, _rf("contact_phone", "phone"), related=phone),
        "created": _Target("", DATE, _rf(contact, "date_created")),
        "updated": _Target("", DATE, _rf(contact, "date_updated")),
        "id": _Target("", ID),
        "lead_id": _Target("", REFERENCE, _rf(contact, "lead_id"), "lead"),
    }
    aliases = {"email_address": "email", "date_created": "created", "date_updated": "updated"}
    return targets | {alias: targets[name] for alias, name in aliases.items()}


def _subscription_fields() -> dict[str, _Target]:
    sequence_id = _rf("sequence_subscription", "sequence_id")
    sequence = _Target("", REFERENCE, sequence_id, "sequence")
    status = _Target("", TERM, _rf("sequence_subscription", "status"))
    return {"sequence": sequence, "sequence_id": sequence, "status": status}


FIELDS = {
    "lead": _lead_fields(),
    "contact": _contact_fields(),
    "sequence_subscription": _subscription_fields(),
}
# Custom field type -> kind. A `user`/`contact` custom field holds plain id strings, so `term`.
CUSTOM_KINDS = {
    "text": TEXT,
    "hidden": TEXT,
    "choices": TERM,
    "user": TERM,
    "contact": TERM,
    "number": NUMBER,
    "date": DATE,
    "datetime": DATE,
}

# Lead keywords that need data Clove does not keep yet -> what they need.
_CALLS, _EMAILS, _SMS = "call activities", "email activities", "SMS activities"
UNTRACKED_FIELDS = {
    "calls": _CALLS,
    "last_call": _CALLS,
    "called": _CALLS,
    "emails": _EMAILS,
    "last_email": _EMAILS,
    "last_emailed": _EMAILS,
    "email_opened": _EMAILS,
    "sms_messages": _SMS,
    "notifications": "activities",
    "opportunities": "opportunities",
    "opportunity": "opportunities",
    "opportunity_user": "opportunities",
    "user_id": "lead owners",
    "assigned_to": "lead owners",
}
UNTRACKED_CLAUSES = {
    "call": _CALLS,
    "sms": _SMS,
    "email": _EMAILS,
    "opportunity": "opportunities",
    "status_change": "opportunity status changes",
}
UNTRACKED_COLLECTIONS = {
    "calls": _CALLS,
    "emails": _EMAILS,
    "sms": _SMS,
    "sms_messages": _SMS,
    "opportunities": "opportunities",
}
UNTRACKED_SORTS = {
    "activities": "activities",
    "calls": _CALLS,
    "emails": _EMAILS,
    "opportunities": "opportunities",
}

# has:<collection> -> the related object type that must exist.
COLLECTIONS = {
    "lead": {
        "email_addresses": "contact_email",
        "phone_numbers": "contact_phone",
        "contacts": "contact",
        "addresses": "address",
    },
    "contact": {"email_addresses": "contact_email", "phone_numbers": "contact_phone"},
}

SORT_FIELDS = {
    "lead": {
        **dict.fromkeys(("created", "date_created"), _rf("lead", "date_created")),
        **dict.fromkeys(("updated", "date_updated"), _rf("lead", "date_updated")),
        **dict.fromkeys(("name", "display_name"), _rf("lead", "display_name")),
        **dict.fromkeys(("contacts", "num_contacts"), _rf("lead", "num_contacts")),
        **dict.fromkeys(("status", "status_label"), _rf("lead", "status_label")),
    },
    "contact": {
        **dict.fromkeys(("created", "date_created"), _rf("contact", "date_created")),
        **dict.fromkeys(("updated", "date_updated"), _rf("contact", "date_updated")),
        "name": _rf("contact", "name"),
        "title": _rf("contact", "title"),
    },
}

OBJECTS_IN_MESSAGES = {
    "lead": "leads",
    "contact": "contacts",
    "sequence_subscription": "sequence subscriptions",
}


def _untracked(what: str, needs: str) -> ValidationFailed:
    return _fail(f"{what} needs {needs}, which Clove does not track yet.")


# --- Values --------------------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?[0-9]{1,15}(\.[0-9]{1,15})?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9].*")
_RELATIVE = re.compile(
    r"([0-9]+)\s+(minutes?|mins?|hours?|days?|weeks?|months?|years?)\s+ago", re.IGNORECASE
)
_UNITS = {"min": "minutes", "hou": "hours", "day": "days", "wee": "weeks", "mon": "months"}
# Roughly 1000 years in each unit: further back than any stored date, and far enough inside
# Python's datetime range that the compiler can subtract it from now.
_MAX_AGO = {
    "minutes": 525_960_000,
    "hours": 8_766_000,
    "days": 365_250,
    "weeks": 52_178,
    "months": 12_000,
    "years": 1000,
}


def _number(written: str, value: _Value) -> int | float:
    if not _NUMBER.fullmatch(value.text):
        raise _fail(f"'{written}' needs a number, not '{value.text}'.")
    return float(value.text) if "." in value.text else int(value.text)


@dataclass(frozen=True)
class _Day:
    """A whole day in the caller's timezone: `[start, end)`."""

    start: Raw
    end: Raw


@dataclass(frozen=True)
class _Instant:
    """A point in time: an ISO datetime, or `N minutes/hours ago`."""

    moment: Raw


def _when(written: str, value: _Value) -> _Day | _Instant:
    text = value.text.strip()
    lowered = text.lower()
    if lowered in ("today", "yesterday"):
        return _days_ago("days", int(lowered == "yesterday"))
    if relative := _RELATIVE.fullmatch(text):
        return _ago(written, relative)
    if _DATE.fullmatch(text):
        return _local_date(written, text)
    if _DATETIME.fullmatch(text):
        return _utc(written, text)
    raise _fail(
        f"'{written}' needs a date (YYYY-MM-DD), a date and time (YYYY-MM-DDTHH:MM), today, "
        f"yesterday or 'N days ago', not '{value.text}'."
    )


def _ago(written: str, match: re.Match[str]) -> _Day | _Instant:
    count, unit = int(match[1][:12]), match[2].lower()
    unit = _UNITS.get(unit[:3], "years")
    if len(match[1]) > 12 or count > _MAX_AGO[unit]:
        raise _fail(f"'{written}' reaches too far back: {match[0]}.")
    if unit in ("minutes", "hours"):
        # Sub-day units name an instant, not a day: no snapping to a day's start or end.
        return _Instant(_offset(unit, count))
    return _days_ago(unit, count)


def _days_ago(unit: str, count: int) -> _Day:
    return _Day(_offset(unit, count, "start"), _offset(unit, count, "end"))


def _offset(unit: str, count: int, which_day_end: str | None = None) -> Raw:
    moment: Raw = {
        "type": "offset",
        "direction": "past",
        "moment": {"type": "now"},
        "offset": {unit: count},
    }
    if which_day_end:
        moment["which_day_end"] = which_day_end
    return moment


def _local_date(written: str, text: str) -> _Day:
    try:
        date.fromisoformat(text)
    except ValueError:
        raise _fail(f"'{written}' has an impossible date: {text}.") from None
    return _Day(
        {"type": "fixed_local_date", "value": text, "which": "start"},
        {"type": "fixed_local_date", "value": text, "which": "end"},
    )


def _utc(written: str, text: str) -> _Instant:
    """An ISO datetime; without an offset it is UTC (the API renders every time in UTC)."""
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        value = moment.astimezone(UTC).isoformat()
    except (ValueError, OverflowError):
        raise _fail(f"'{written}' has an impossible date and time: {text}.") from None
    return _Instant({"type": "fixed_utc", "value": value})


def _day_bounds(op: str, day: _Day) -> tuple[Raw | None, Raw | None]:
    """(on_or_after, before) for comparing with a whole day D: `:`/`=` is within D, `>` is after
    D, `<=` is up to the end of D, and so on."""
    return {
        ":": (day.start, day.end),
        "=": (day.start, day.end),
        ">=": (day.start, None),
        ">": (day.end, None),
        "<": (None, day.start),
        "<=": (None, day.end),
    }[op]


def _instant_bounds(written: str, op: str, instant: _Instant) -> tuple[Raw | None, Raw | None]:
    """(on_or_after, before) for comparing with a point in time. `>` and `>=` both become
    on_or_after and `<` and `<=` both become `before`: stored times carry microseconds and
    people write minutes or seconds, so the one-instant difference is below what a query can
    express. Equality with an instant would match (almost) nothing, so it is refused."""
    if op in (":", "="):
        raise _fail(
            f"'{written}{op}' with a time matches a single instant; use >= or < with a time, "
            "or give a date to match a whole day."
        )
    return (instant.moment, None) if op in (">", ">=") else (None, instant.moment)


# --- The walk ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    object_type: str
    # sort:/slice: only make sense for the whole query: not inside a clause or under `not`.
    top: bool = True
    clause: str = ""


def _combine(kind: str, nodes: list[Raw | None]) -> Raw | None:
    """`and`/`or` of the nodes, leaving out directives (None); a single node stands alone."""
    present = [node for node in nodes if node is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else {"type": kind, "queries": present}


def _negated(node: Raw) -> Raw:
    flipped = {key: value for key, value in node.items() if key != "negate"}
    if not node.get("negate", False):
        flipped["negate"] = True
    return flipped


def _condition(target: _Target, condition: Raw) -> Raw:
    node: Raw = {"type": "field_condition", "field": target.field, "condition": condition}
    if target.related is None:
        return node
    this, related = target.related
    return {
        "type": "has_related",
        "this_object_type": this,
        "related_object_type": related,
        "related_query": node,
    }


def _has_related(this: str, related: str, query: Raw | None) -> Raw:
    return {
        "type": "has_related",
        "this_object_type": this,
        "related_object_type": related,
        "related_query": query or MATCH_ALL,
    }


Rule = Callable[[Tree[Token], _Scope], Raw | None]


class _Builder:
    """Walks one parse tree; collects sort:/slice: directives on the way."""

    def __init__(self, names: Names, object_type: str) -> None:
        self.names = names
        self.object_type = object_type
        self.sort: list[Raw] = []
        self.slice: tuple[int, int] | None = None
        self._depth = 0
        self._rules: dict[str, Rule] = {
            "expr": self._expr,
            "conj": self._conj,
            "negation": self._negation,
            "group": self._group,
            "clause": self._clause,
            "predicate": self._predicate,
            "membership": self._membership,
            "bare": self._bare,
            "sort": self._sort,
            "slice": self._slice,
            "view": self._view,
            "has": self._has,
        }

    def build(self, tree: Tree[Token]) -> Raw | None:
        children = _subtrees(tree)
        return self._node(children[0], _Scope(self.object_type)) if children else None

    def _node(self, tree: Tree[Token], scope: _Scope) -> Raw | None:
        # A depth limit makes a pathologically nested query a 400, not a RecursionError.
        self._depth += 1
        try:
            if self._depth > _MAX_DEPTH:
                raise _fail("The query is nested too deeply.")
            return self._rules[str(tree.data)](tree, scope)
        finally:
            self._depth -= 1

    # Boolean structure.

    def _expr(self, tree: Tree[Token], scope: _Scope) -> Raw | None:
        return _combine("or", [self._node(child, scope) for child in _subtrees(tree)])

    def _conj(self, tree: Tree[Token], scope: _Scope) -> Raw | None:
        return _combine("and", [self._node(child, scope) for child in _subtrees(tree)])

    def _negation(self, tree: Tree[Token], scope: _Scope) -> Raw | None:
        inner = self._node(_subtrees(tree)[0], replace(scope, top=False))
        return None if inner is None else _negated(inner)

    def _group(self, tree: Tree[Token], scope: _Scope) -> Raw | None:
        return self._node(_subtrees(tree)[0], scope)

    # Nested clauses: `contact(...)`, `sequence_subscription(...)`.

    def _clause(self, tree: Tree[Token], scope: _Scope) -> Raw | None:
        name = _tokens(tree)[0].value[:-1].lower()
        body = next(iter(_subtrees(tree)), None)
        if name in UNTRACKED_CLAUSES:
            raise _untracked(f"{name}(...)", UNTRACKED_CLAUSES[name])
        here = scope.object_type
        if name == "contact" and here == "lead":
            return self._related(here, "contact", body)
        if name == "sequence_subscription" and here == "contact":
            return self._related(here, "sequence_subscription", body)
        if name == "sequence_subscription" and here == "lead":
            # A lead reaches subscriptions through its contacts.
            return _has_related("lead", "contact", self._related("contact", name, body))
        if name in ("contact", "sequence_subscription"):
            where = f"inside {scope.clause}(...)" if scope.clause else f"when searching {here}s"
            raise _fail(f"{name}(...) is not available {where}.")
        raise _fail(
            f"Unknown clause '{name}(...)'; use contact(...) or sequence_subscription(...)."
        )

    def _related(self, this: str, related: str, body: Tree[Token] | None) -> Raw:
        inner = None
        if body is not None:
            inner = self._node(body, _Scope(related, top=False, clause=related))
        return _has_related(this, related, inner)

    # Field predicates.

    def _predicate(self, tree: Tree[Token], scope: _Scope) -> Raw:
        field, op, value = _tokens(tree)
        target = self._target(scope, field)
        return self._match(target, op.value, _Value.of(value))

    def _membership(self, tree: Tree[Token], scope: _Scope) -> Raw:
        field, *values = _tokens(tree)
        return self._match_any(self._target(scope, field), [_Value.of(v) for v in values])

    def _target(self, scope: _Scope, token: Token) -> _Target:
        written = _Value.of(token).text
        if written[:7].lower() == "custom.":
            return self._custom_target(scope, written)
        key = written.lower()
        target = FIELDS[scope.object_type].get(key)
        if target is not None:
            return replace(target, written=written)
        if scope.object_type == "lead" and key in UNTRACKED_FIELDS:
            raise _untracked(f"'{written}'", UNTRACKED_FIELDS[key])
        raise _fail(
            f"Unknown field '{written}' when searching {OBJECTS_IN_MESSAGES[scope.object_type]}."
        )

    def _custom_target(self, scope: _Scope, written: str) -> _Target:
        name = written[7:]
        info = None
        if scope.object_type in ("lead", "contact"):
            info = self.names.custom_field(scope.object_type, name)
        if info is None:
            objects = OBJECTS_IN_MESSAGES[scope.object_type]
            raise _fail(f"Unknown custom field '{name}' for {objects}.")
        field = {"type": "custom_field", "custom_field_id": info.id}
        return _Target(written, CUSTOM_KINDS.get(info.type, TEXT), field)

    def _match(self, target: _Target, op: str, value: _Value) -> Raw:
        """The node for `field <op> value`."""
        if value.star:
            _require_equality(target, op)
            return MATCH_ALL if target.kind == ID else _condition(target, {"type": "exists"})
        if not value.text.strip():
            raise _fail(
                f"'{target.written}' has an empty value; "
                f"use `not {target.written}:*` to find empty ones."
            )
        if target.kind == NUMBER:
            return _condition(target, _number_range(op, _number(target.written, value)))
        if target.kind == DATE:
            return _condition(target, _moment_range(target.written, op, value))
        _require_equality(target, op)
        if target.kind == ID:
            return {"type": "id", "value": value.text}
        return _condition(target, _equality(target, value))

    def _match_any(self, target: _Target, values: list[_Value]) -> Raw:
        """The node for `field in (v1, v2, ...)`."""
        if any(value.star for value in values):
            raise _fail(f"'*' cannot be one of the values of '{target.written} in (...)'.")
        if target.kind in (EXACT, EMAIL, TERM):
            texts = [_folded(target, value.text) for value in values]
            return _condition(target, {"type": "term", "values": texts})
        if target.kind in (REFERENCE, USER):
            ids = [_object_id(target, value.text) for value in values]
            return _condition(target, {"type": "reference", **_reference(target, ids)})
        # Words, ids, numbers and dates: any one of them.
        return _combine("or", [self._match(target, "=", value) for value in values]) or MATCH_ALL

    def _bare(self, tree: Tree[Token], scope: _Scope) -> Raw:
        value = _Value.of(_tokens(tree)[0])
        if scope.object_type == "sequence_subscription":
            raise _fail(
                f"sequence_subscription(...) takes sequence: and status:, not the text "
                f"'{value.text}'."
            )
        if value.star:
            return MATCH_ALL
        if not value.text.strip():
            raise _fail('An empty "" searches for nothing; leave it out.')
        mode = "phrase" if value.quoted else "beginning_of_words"
        return {"type": "text", "mode": mode, "value": value.text}

    # Directives and collections.

    def _sort(self, tree: Tree[Token], scope: _Scope) -> None:
        _require_top(scope, "sort:")
        for token in _tokens(tree):
            self.sort.append(self._sort_key(_Value.of(token).text))

    def _sort_key(self, written: str) -> Raw:
        descending = written.startswith("-")
        name = written.removeprefix("-")
        key = name.lower()
        if key.startswith("custom."):
            info = self.names.custom_field(self.object_type, name[7:])
            if info is None:
                raise _fail(f"sort: unknown custom field '{name[7:]}'.")
            field: Raw = {"type": "custom_field", "custom_field_id": info.id}
        elif key in SORT_FIELDS[self.object_type]:
            field = SORT_FIELDS[self.object_type][key]
        elif key in UNTRACKED_SORTS:
            raise _untracked(f"sort:{name}", UNTRACKED_SORTS[key])
        else:
            raise _fail(f"sort: cannot sort {self.object_type}s by '{name}'.")
        return {"direction": "desc" if descending else "asc", "field": field}

    def _slice(self, tree: Tree[Token], scope: _Scope) -> None:
        _require_top(scope, "slice:")
        text = _tokens(tree)[0].value
        match = re.fullmatch(r"([0-9]{1,9})/([0-9]{1,9})", text)
        if match is None or not int(match[1]) < int(match[2]):
            raise _fail(f"slice: needs i/n with 0 <= i < n, not '{text}'.")
        if self.slice is not None:
            raise _fail("slice: may appear only once.")
        self.slice = (int(match[1]), int(match[2]))

    def _view(self, tree: Tree[Token], scope: _Scope) -> Raw:
        name = _Value.of(_tokens(tree)[0]).text
        saved_search_id = self.names.saved_search(name)
        if saved_search_id is None:
            raise _fail(f"in: unknown Smart View '{name}'.")
        return {"type": "saved_search", "saved_search_id": saved_search_id}

    def _has(self, tree: Tree[Token], scope: _Scope) -> Raw:
        written = _tokens(tree)[0].value
        collection = written.lower()
        related = COLLECTIONS.get(scope.object_type, {}).get(collection)
        if related is not None:
            return _has_related(scope.object_type, related, MATCH_ALL)
        if collection in UNTRACKED_COLLECTIONS:
            raise _untracked(f"has:{written}", UNTRACKED_COLLECTIONS[collection])
        known = ", ".join(COLLECTIONS.get(scope.object_type, {})) or "none here"
        raise _fail(f"has: unknown collection '{written}' (known: {known}).")


def _require_top(scope: _Scope, directive: str) -> None:
    if not scope.top:
        where = f"inside {scope.clause}(...)" if scope.clause else "after not"
        raise _fail(f"{directive} applies to the whole query; it cannot appear {where}.")


def _require_equality(target: _Target, op: str) -> None:
    if op not in (":", "="):
        raise _fail(
            f"'{target.written}' cannot be compared with '{op}'; "
            f"use {target.written}:value or {target.written} in (...)."
        )


def _equality(target: _Target, value: _Value) -> Raw:
    """The condition for `field:value` on a non-numeric, non-date field."""
    if target.kind == TEXT:
        mode = "phrase" if value.quoted and value.several_words else "full_words"
        return {"type": "text", "mode": mode, "value": value.text}
    if target.kind in (EXACT, EMAIL):
        return {"type": "text", "mode": "exact_value", "value": _folded(target, value.text)}
    if target.kind == TERM:
        return {"type": "term", "values": [value.text]}
    return {"type": "reference", **_reference(target, [_object_id(target, value.text)])}


def _folded(target: _Target, text: str) -> str:
    # Emails are matched lower-cased, as Close's own clients send them.
    return text.lower() if target.kind == EMAIL else text


def _object_id(target: _Target, text: str) -> str:
    return "CURRENT_USER" if target.kind == USER and text.lower() == "me" else text


def _reference(target: _Target, ids: list[str]) -> Raw:
    return {"reference_type": target.reference_type, "object_ids": ids}


def _number_range(op: str, number: int | float) -> Raw:
    if op in (":", "="):
        return {"type": "number_range", "gte": number, "lte": number}
    key = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}[op]
    return {"type": "number_range", key: number}


def _moment_range(written: str, op: str, value: _Value) -> Raw:
    when = _when(written, value)
    if isinstance(when, _Day):
        on_or_after, before = _day_bounds(op, when)
    else:
        on_or_after, before = _instant_bounds(written, op, when)
    condition: Raw = {"type": "moment_range"}
    if on_or_after is not None:
        condition["on_or_after"] = on_or_after
    if before is not None:
        condition["before"] = before
    return condition
