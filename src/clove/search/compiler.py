"""Compile a query tree into one SQL boolean expression over an object's table.

Every leaf is two-valued (a NULL field is a plain "no match", never SQL's unknown), so
`negate` is the exact complement of a node on both databases. Related objects become
`EXISTS` subqueries, a lead's status label an `IN` over lead statuses: shapes that use the
indexes on both databases. Nothing is filtered in Python.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import (
    Float,
    FromClause,
    and_,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    union,
)
from sqlalchemy.orm import Session

from clove.contact.schemas import normalize_phone
from clove.errors import ValidationFailed
from clove.kit.dates import iso_utc
from clove.models import CustomField, SavedSearch
from clove.search import moments
from clove.search.fields import (
    CONDITIONS,
    KEYWORD,
    KINDS,
    MOMENT,
    NOT_TRACKED,
    NUMBER,
    RELATIONS,
    TEXT,
    Expr,
    FieldDef,
    ObjectKind,
    Relation,
)
from clove.search.text_query import SessionNames, parse_text_query
from clove.search.tree import (
    AndNode,
    Condition,
    CustomFieldRef,
    ExistsCondition,
    FieldConditionNode,
    FieldSpec,
    HasRelatedNode,
    IdNode,
    MatchAllNode,
    MomentRange,
    Node,
    NumberRange,
    ObjectTypeNode,
    OrNode,
    ReferenceCondition,
    SavedSearchNode,
    TermCondition,
    TextCondition,
    TextNode,
    parse_node,
)

# Custom field value kinds beyond the built-in ones: dates and datetimes are stored as
# fixed-width ISO text in the JSON `custom` column, so they compare as text.
DATE_TEXT = "date_text"
MOMENT_TEXT = "moment_text"
CUSTOM_KINDS = {
    "text": TEXT,
    "hidden": TEXT,
    "choices": KEYWORD,
    "user": KEYWORD,
    "contact": KEYWORD,
    "number": NUMBER,
    "date": DATE_TEXT,
    "datetime": MOMENT_TEXT,
}
ALLOWED = {
    **CONDITIONS,
    DATE_TEXT: {"moment_range", "exists"},
    MOMENT_TEXT: {"moment_range", "exists"},
}
CURRENT_USER = "CURRENT_USER"


def bad(path: str, message: str) -> ValidationFailed:
    return ValidationFailed(field_errors={path: message})


@dataclass
class Scope:
    """Who searches, when, and in which time zone; caches what one search looks up."""

    session: Session
    organization_id: str
    user_id: str | None
    now: datetime
    tz: tzinfo
    custom_fields: dict[str, CustomField | None] = field(default_factory=dict)
    saved_searches: dict[str, SavedSearch | None] = field(default_factory=dict)

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    def custom_field(self, field_id: str) -> CustomField | None:
        if field_id not in self.custom_fields:
            self.custom_fields[field_id] = self.session.scalars(
                select(CustomField).where(
                    CustomField.organization_id == self.organization_id,
                    CustomField.id == field_id,
                )
            ).first()
        return self.custom_fields[field_id]

    def saved_search(self, saved_search_id: str) -> SavedSearch | None:
        if saved_search_id not in self.saved_searches:
            self.saved_searches[saved_search_id] = self.session.scalars(
                select(SavedSearch).where(
                    SavedSearch.organization_id == self.organization_id,
                    SavedSearch.id == saved_search_id,
                )
            ).first()
        return self.saved_searches[saved_search_id]


@dataclass(frozen=True)
class Resolved:
    """A field of one object: its definition, and its SQL over that object's table."""

    name: str
    definition: FieldDef
    multi: bool = False  # a multi-value custom field: conditions hold for any one value


class Compiler:
    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self._saved_chain: tuple[str, ...] = ()

    # --- Nodes ------------------------------------------------------------------------------------

    def where(self, node: Node, kind: ObjectKind, table: FromClause, path: str) -> Expr:
        """The SQL condition `node` puts on rows of `table`, an alias of `kind`'s table."""
        if isinstance(node, HasRelatedNode):
            return self._has_related(node, kind, table, path)  # negated as NOT EXISTS
        expr = self._node(node, kind, table, path)
        return not_(expr) if node.negate else expr

    def _node(self, node: Node, kind: ObjectKind, table: FromClause, path: str) -> Expr:
        if isinstance(node, AndNode):
            parts = self._children(node, kind, table, path)
            return and_(true(), *parts)
        if isinstance(node, OrNode):
            if any(_reaches_other_tables(child) for child in node.queries):
                return self._union(node, kind, table, path)
            return or_(false(), *self._children(node, kind, table, path))
        if isinstance(node, ObjectTypeNode):
            return true() if node.object_type == kind.name else false()
        if isinstance(node, FieldConditionNode):
            return self._field_condition(node, kind, table, path)
        if isinstance(node, IdNode):
            return table.c.id == node.value
        if isinstance(node, SavedSearchNode):
            return self._saved_search(node, kind, table, path)
        if isinstance(node, TextNode):
            return self._anywhere(node, kind, table, path)
        assert isinstance(node, MatchAllNode)
        return true()

    def _children(
        self, node: AndNode | OrNode, kind: ObjectKind, table: FromClause, path: str
    ) -> list[Expr]:
        return [
            self.where(child, kind, table, f"{path}.queries[{i}]")
            for i, child in enumerate(node.queries)
        ]

    def _union(self, node: OrNode, kind: ObjectKind, table: FromClause, path: str) -> Expr:
        """An `or` that reaches related objects, as `id IN (ids of each branch, UNIONed)`: each
        branch can use its own index, where one OR over EXISTS filters every row."""
        branches = []
        for i, child in enumerate(node.queries):
            alias = kind.table.alias()
            condition = self.where(child, kind, alias, f"{path}.queries[{i}]")
            branches.append(select(alias.c.id).where(self._owned(alias), condition))
        return table.c.id.in_(union(*branches))

    def _relation(
        self, node: HasRelatedNode, kind: ObjectKind, path: str
    ) -> tuple[ObjectKind, Relation]:
        if node.this_object_type not in (None, kind.name):
            raise bad(
                f"{path}.this_object_type",
                f"This node is about {kind.name} objects, not {node.this_object_type}.",
            )
        related = KINDS.get(node.related_object_type)
        relation = RELATIONS.get((kind.name, node.related_object_type))
        if related is None or relation is None:
            raise bad(
                f"{path}.related_object_type",
                f"Searching {kind.name} objects by related "
                f"{node.related_object_type!r} objects is not supported.",
            )
        return related, relation

    def _has_related(
        self, node: HasRelatedNode, kind: ObjectKind, table: FromClause, path: str
    ) -> Expr:
        related, relation = self._relation(node, kind, path)
        alias = related.table.alias()
        inner = self.where(node.related_query, related, alias, f"{path}.related_query")
        mine = table.c[relation.this_column]
        theirs = alias.c[relation.related_column]
        if node.negate:
            # Correlated, and without the organization: the parent row already fixes it, and
            # SQLite would otherwise walk the organization's index instead of the foreign key's.
            return not_(exists(select(literal(1)).select_from(alias).where(theirs == mine, inner)))
        # Uncorrelated: the related rows are found once, through their own indexes.
        return mine.in_(select(theirs).where(self._owned(alias), inner))

    def _owned(self, table: FromClause) -> Expr:
        return table.c.organization_id == self.scope.organization_id

    def _saved_search(
        self, node: SavedSearchNode, kind: ObjectKind, table: FromClause, path: str
    ) -> Expr:
        view_id = node.saved_search_id
        if view_id in self._saved_chain:
            chain = " → ".join((*self._saved_chain, view_id))
            raise bad(path, f"Smart Views refer to each other in a cycle: {chain}.")
        view = self.scope.saved_search(view_id)
        if view is None:
            raise bad(f"{path}.saved_search_id", f"Smart View {view_id!r} does not exist.")
        query = saved_query(view, self.scope)
        self._saved_chain += (view_id,)
        try:
            return self.where(query, kind, table, f"{path}<{view_id}>")
        finally:
            self._saved_chain = self._saved_chain[:-1]

    def _anywhere(self, node: TextNode, kind: ObjectKind, table: FromClause, path: str) -> Expr:
        """Field-less text: any of the object's searchable fields, or its related objects'; the
        ids of each are found apart (through their indexes) and UNIONed."""
        condition = TextCondition(type="text", mode=node.mode, value=node.value)
        branches = []
        for name in kind.text_fields:
            alias = kind.table.alias()
            match = self._condition(Resolved(name, kind.fields[name]), condition, alias, path)
            branches.append(select(alias.c.id).where(self._owned(alias), match))
        digits = any(c.isdigit() for c in node.value)
        for related_type, name in kind.text_related:
            if name == "phone" and not digits:
                continue  # phone numbers are stored as digits: no other text can match
            related = KINDS[related_type]
            relation = RELATIONS[(kind.name, related_type)]
            alias = related.table.alias()
            match = self._condition(Resolved(name, related.fields[name]), condition, alias, path)
            branches.append(
                select(alias.c[relation.related_column]).where(self._owned(alias), match)
            )
        return table.c.id.in_(union(*branches))

    # --- Fields -----------------------------------------------------------------------------------

    def _field_condition(
        self, node: FieldConditionNode, kind: ObjectKind, table: FromClause, path: str
    ) -> Expr:
        resolved = self.resolve_field(node.field, kind, f"{path}.field")
        allowed = ALLOWED[resolved.definition.kind]
        if node.condition.type not in allowed:
            raise bad(
                f"{path}.condition",
                f"Field {resolved.name!r} does not accept {node.condition.type} conditions; "
                f"use one of: {', '.join(sorted(allowed))}.",
            )
        return self._condition(resolved, node.condition, table, f"{path}.condition")

    def resolve_field(self, spec: FieldSpec, kind: ObjectKind, path: str) -> Resolved:
        """The field a spec names on `kind`, or a 400 naming it."""
        if isinstance(spec, CustomFieldRef):
            return self._custom_field(spec, kind, path)
        if spec.object_type != kind.name:
            raise bad(
                f"{path}.object_type",
                f"Field {spec.field_name!r} does not belong to type {kind.name!r}.",
            )
        definition = kind.fields.get(spec.field_name)
        if definition is not None:
            return Resolved(spec.field_name, definition)
        if spec.field_name in NOT_TRACKED and kind.name == "lead":
            raise bad(
                f"{path}.field_name",
                f"Field {spec.field_name!r} needs {NOT_TRACKED[spec.field_name]}, "
                "which Clove does not track yet.",
            )
        raise bad(
            f"{path}.field_name",
            f"Unknown field {spec.field_name!r} for type {kind.name!r}; "
            f"searchable fields: {', '.join(sorted(kind.fields))}.",
        )

    def _custom_field(self, spec: CustomFieldRef, kind: ObjectKind, path: str) -> Resolved:
        cf_id = spec.custom_field_id.removeprefix("custom.")
        definition = self.scope.custom_field(cf_id)
        if definition is None:
            raise bad(f"{path}.custom_field_id", f"Unknown custom field {cf_id!r}.")
        if definition.object_type != kind.custom_type:
            raise bad(
                f"{path}.custom_field_id",
                f"Custom field {cf_id!r} belongs to {definition.object_type} objects, "
                f"not {kind.name}.",
            )
        value_kind = CUSTOM_KINDS[definition.type]
        reference = {"user": "user", "contact": "contact"}.get(definition.type)
        if value_kind == NUMBER:
            column = lambda t: t.c.custom[cf_id].as_float()  # noqa: E731
        else:
            column = lambda t: t.c.custom[cf_id].as_string()  # noqa: E731
        return Resolved(
            f"custom.{cf_id}",
            FieldDef(value_kind, column, reference_type=reference),
            multi=definition.accepts_multiple_values,
        )

    # --- Conditions -------------------------------------------------------------------------------

    def _condition(
        self, resolved: Resolved, condition: Condition, table: FromClause, path: str
    ) -> Expr:
        definition = resolved.definition
        if definition.lookup is not None:
            lookup = definition.lookup
            target = lookup.table.alias()
            column = target.c[lookup.column]
            inner = self._value_condition(resolved, condition, column, self._lower(column), path)
            matching = select(target.c.id).where(
                target.c.organization_id == self.scope.organization_id, inner
            )
            return and_(table.c[lookup.fk].is_not(None), table.c[lookup.fk].in_(matching))
        if resolved.multi and not isinstance(condition, ExistsCondition):
            return self._any_value(resolved, condition, table, path)
        value = definition.column(table)
        # A stored lower-case copy (emails), else lower() for fields that ignore case.
        lowered = definition.lowered(table) if definition.lowered else None
        if lowered is None and definition.kind == TEXT:
            lowered = self._lower(value)
        return self._value_condition(resolved, condition, value, lowered, path)

    def _any_value(
        self, resolved: Resolved, condition: Condition, table: FromClause, path: str
    ) -> Expr:
        """A multi-value custom field matches when any one of its values does."""
        key = resolved.name.removeprefix("custom.")
        if self.scope.dialect == "postgresql":
            values = func.json_array_elements_text(table.c.custom[key]).table_valued("value")
        else:
            values = func.json_each(table.c.custom, f'$."{key}"').table_valued("value")
        value: Expr = values.c.value
        if resolved.definition.kind == NUMBER:
            value = cast(value, Float)
        lowered = self._lower(value) if resolved.definition.kind == TEXT else None
        inner = self._value_condition(resolved, condition, value, lowered, path)
        return exists(select(literal(1)).select_from(values).where(inner))

    def _value_condition(
        self, resolved: Resolved, condition: Condition, value: Expr, lowered: Expr | None, path: str
    ) -> Expr:
        present = value.is_not(None)
        if isinstance(condition, ExistsCondition):
            if resolved.definition.kind == TEXT:
                return and_(present, value != "")
            return present
        if isinstance(condition, TextCondition):
            return and_(present, self._text(resolved, condition, value, lowered))
        if isinstance(condition, TermCondition):
            return and_(present, self._term(resolved, condition, value, lowered, path))
        if isinstance(condition, ReferenceCondition):
            return and_(present, self._reference(resolved, condition, value, path))
        if isinstance(condition, NumberRange):
            return and_(present, *_number_bounds(condition, value))
        if isinstance(condition, MomentRange):
            return and_(present, *self._moment_bounds(resolved, condition, value, path))
        raise bad(path, f"{condition.type} conditions need fields Clove does not track yet.")

    def _text(
        self, resolved: Resolved, condition: TextCondition, value: Expr, lowered: Expr | None
    ) -> Expr:
        text = condition.value.strip()
        if resolved.name == "phone" and condition.mode == "exact_value":
            text = _as_phone(text)
        if condition.mode == "exact_value":
            # Ids and types (no lower-case form) are case-sensitive.
            return value == text if lowered is None else lowered == text.lower()
        if lowered is None:
            lowered = self._lower(value)
        words = text.lower().split()
        if not words:
            return true()
        # One condition per word, so that each can use the trigram index on PostgreSQL.
        patterns = (
            [word_pattern(words, "phrase")]
            if condition.mode == "phrase"
            else [word_pattern([w], condition.mode) for w in words]
        )
        if self.scope.dialect == "postgresql":
            return and_(*(lowered.op("~")(p) for p in patterns))
        # SQLite's lower() folds ASCII only: match the raw value without regard to case, and
        # let LIKE (ASCII case-insensitive, in C) skip most rows before the regex runs.
        prefilter = [value.like(f"%{_like_escape(w)}%", escape="\\") for w in words if w.isascii()]
        return and_(*prefilter, *(value.op("REGEXP")("(?i)" + p) for p in patterns))

    def _term(
        self,
        resolved: Resolved,
        condition: TermCondition,
        value: Expr,
        lowered: Expr | None,
        path: str,
    ) -> Expr:
        values = condition.values
        if resolved.definition.kind == NUMBER:
            numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
            if len(numbers) != len(values):
                raise bad(f"{path}.values", f"Field {resolved.name!r} holds numbers.")
            # Typed as floats: a list starting with an integer would bind them all as integers.
            return value.in_([literal(n, Float) for n in numbers]) if numbers else false()
        if any(not isinstance(v, str) for v in values):
            raise bad(f"{path}.values", f"Field {resolved.name!r} holds text; send strings.")
        texts = [str(v) for v in values]
        if resolved.name == "phone":
            texts = [_as_phone(t) for t in texts]
        if not texts:
            return false()
        if lowered is not None:
            return lowered.in_(sorted({t.lower() for t in texts}))
        return value.in_(texts)

    def _reference(
        self, resolved: Resolved, condition: ReferenceCondition, value: Expr, path: str
    ) -> Expr:
        expected = resolved.definition.reference_type
        if expected is None:
            raise bad(path, f"Field {resolved.name!r} does not hold references.")
        given = "user" if condition.reference_type == "user_or_group" else condition.reference_type
        if given != expected:
            raise bad(
                f"{path}.reference_type",
                f"Field {resolved.name!r} refers to {expected!r} objects, "
                f"not {condition.reference_type!r}.",
            )
        ids = [self._current_user(i) if i == CURRENT_USER else i for i in condition.object_ids]
        return value.in_(ids) if ids else false()

    def _lower(self, value: Expr) -> Expr:
        # PostgreSQL: lower(), which the trigram indexes are built on. SQLite's lower() folds
        # ASCII only; Clove registers unicode_lower() (Python's str.lower) on every connection.
        if self.scope.dialect == "postgresql":
            return func.lower(value)
        return func.unicode_lower(value)

    def _current_user(self, _placeholder: str) -> str:
        # An OAuth app without a user matches no "current user" rows.
        return self.scope.user_id or ""

    def _moment_bounds(
        self, resolved: Resolved, condition: MomentRange, value: Expr, path: str
    ) -> list[Expr]:
        bounds: list[Expr] = []
        for key, operator in (
            ("on_or_after", "__ge__"),
            ("after", "__gt__"),
            ("before", "__lt__"),
            ("on_or_before", "__le__"),
        ):
            moment = getattr(condition, key)
            if moment is None:
                continue
            try:
                instant = moments.resolve(moment, self.scope.now, self.scope.tz)
            except OverflowError:
                raise bad(f"{path}.{key}", "This moment is out of range.") from None
            bound = self._bound(resolved.definition.kind, instant, key)
            bounds.append(getattr(value, operator)(bound))
        return bounds

    def _bound(self, kind: str, instant: datetime, key: str) -> Any:
        if kind == MOMENT:
            return instant.astimezone(UTC).replace(tzinfo=None)
        if kind == MOMENT_TEXT:
            return iso_utc(instant)
        # A date field's value is the local day it names, compared by the day's start: it is on
        # or after (or before) an instant from the first local midnight at or after it, and
        # after (or on or before) it up to the day the instant falls on.
        local = instant.astimezone(self.scope.tz)
        day = local.date()
        if key in ("on_or_after", "before") and local.time() != local.time().min:
            day += timedelta(days=1)
        return day.isoformat()


def _number_bounds(condition: NumberRange, value: Expr) -> list[Expr]:
    # Bounds are floats: bound as the column's type, 2.5 would become 3 against a count.
    bounds: list[Expr] = []
    if condition.gt is not None:
        bounds.append(value > literal(condition.gt, Float))
    if condition.gte is not None:
        bounds.append(value >= literal(condition.gte, Float))
    if condition.lt is not None:
        bounds.append(value < literal(condition.lt, Float))
    if condition.lte is not None:
        bounds.append(value <= literal(condition.lte, Float))
    return bounds


def _reaches_other_tables(node: Node) -> bool:
    """Whether a node looks at related objects (directly, or through field-less text)."""
    if isinstance(node, HasRelatedNode | TextNode):
        return True
    if isinstance(node, AndNode | OrNode):
        return any(_reaches_other_tables(child) for child in node.queries)
    return False


def word_pattern(words: Sequence[str], mode: str) -> str:
    """A regex that PostgreSQL (`~`) and Python (`re`) read alike: the words as a phrase, or
    one word whole (`full_words`) or as a word's beginning. `(?<!\\w)` marks the start of a
    word and `(?!\\w)` its end."""
    escaped = [_re_escape(w) for w in words]
    end = "" if mode == "beginning_of_words" else r"(?!\w)"
    return r"(?<!\w)" + r"\W+".join(escaped) + end


def _re_escape(word: str) -> str:
    # Backslash before every non-word character: literal in both regex dialects.
    return re.sub(r"(\W)", r"\\\1", word)


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _as_phone(text: str) -> str:
    try:
        return normalize_phone(text)
    except ValueError:
        return text


def saved_query(view: SavedSearch, scope: Scope) -> Node:
    """The query tree a Smart View stands for, from its `s_query` or its text `query`, limited
    to the view's type (Close's default views hold a bare `match_all`)."""
    if view.s_query and isinstance(view.s_query, dict) and "query" in view.s_query:
        query = view.s_query["query"]
    else:
        names = SessionNames(scope.session, scope.organization_id)
        parsed = parse_text_query(view.query or "", view.type, names).query
        query = parsed.model_dump(mode="json")
    wrapped = {"type": "and", "queries": [{"type": "object_type", "object_type": view.type}, query]}
    return parse_node(wrapped, root=f"<{view.id}>")
