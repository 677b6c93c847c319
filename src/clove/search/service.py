"""Run a search: one statement for a page of ids (keyset cursor), one for the count, and the
requested fields of the page's objects in a fixed number of queries."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Request
from sqlalchemy import (
    Column,
    ColumnElement,
    FromClause,
    Select,
    and_,
    case,
    false,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.orm import Session

from clove.contact import service as contact_service
from clove.errors import BadRequest, ValidationFailed
from clove.event.service import Actor
from clove.kit.http import pick_fields
from clove.lead import service as lead_service
from clove.models import Contact, Lead, User
from clove.search.compiler import Compiler, Scope, bad
from clove.search.fields import KINDS, TOP_LEVEL, Expr, ObjectKind
from clove.search.text_query import SessionNames, parse_text_query
from clove.search.tree import (
    AndNode,
    Node,
    ObjectTypeNode,
    RegularField,
    SavedSearchNode,
    SearchRequest,
    SortSpec,
)

DEFAULT_LIMIT = 100
MAX_LIMIT = 200
DEFAULT_SORT = [
    SortSpec(
        direction="desc",
        field=RegularField(type="regular_field", object_type="lead", field_name="date_created"),
    )
]


@dataclass(frozen=True)
class SortAtom:
    """One ORDER BY term; a nullable sort key contributes a "has no value" flag first, so
    rows without a value come last in both directions and the cursor can compare them."""

    expr: Expr
    descending: bool


@dataclass(frozen=True)
class Search:
    """A compiled search: which rows match, in which order."""

    kind: ObjectKind
    where: Expr
    atoms: list[SortAtom]
    fingerprint: str


def make_scope(session: Session, actor: Actor, tz: tzinfo) -> Scope:
    return Scope(
        session=session,
        organization_id=actor.organization_id,
        user_id=actor.user_id,
        now=datetime.now(UTC),
        tz=tz,
    )


def request_timezone(request: Request, session: Session, actor: Actor) -> tzinfo:
    """Where "today" is: the `X-TZ-Offset` header, else the user's last used time zone, else UTC."""
    if request.headers.get("x-tz-offset", "").strip():
        return timezone(timedelta(hours=request.state.tz_offset))
    if actor.user_id:
        name = session.scalar(select(User.last_used_timezone).where(User.id == actor.user_id))
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                pass
    return UTC


def text_search(session: Session, actor: Actor, tz: tzinfo, text: str, object_type: str) -> Search:
    """A text query (`GET /lead/?query=...`) compiled like a query tree."""
    parsed = parse_text_query(text, object_type, SessionNames(session, actor.organization_id))
    try:
        search = compile_search(make_scope(session, actor, tz), parsed.query, parsed.sort)
    except ValidationFailed as exc:
        # Paths into a tree the client never wrote would not help: keep only the messages.
        messages = [*exc.errors, *exc.field_errors.values()]
        raise ValidationFailed(field_errors={"query": " ".join(messages)}) from None
    if parsed.slice is not None:
        search = sliced(search, *parsed.slice)
    return search


def sliced(search: Search, index: int, count: int) -> Search:
    """`slice:i/n`: the i-th of n disjoint parts of the matches, split by id (Close's scripts
    use it to walk big result sets in parallel)."""
    table = search.kind.table
    numbered = (
        select(table.c.id, (func.row_number().over(order_by=table.c.id) - 1).label("n"))
        .where(search.where)
        .subquery()
    )
    part = select(numbered.c.id).where(numbered.c.n % count == index)
    return replace(search, where=and_(search.where, table.c.id.in_(part)))


def compile_search(scope: Scope, query: Node, sort: Sequence[SortSpec]) -> Search:
    """The SQL for `query` and `sort`, or a 400 naming the bad node."""
    kind = KINDS[result_type(query, scope)]
    table = kind.table
    compiler = Compiler(scope)
    condition = compiler.where(query, kind, table, "query")
    where = and_(table.c.organization_id == scope.organization_id, condition)
    atoms = sort_atoms(compiler, kind, table, sort)
    digest = hashlib.sha256(
        json.dumps(
            [query.model_dump(mode="json"), [s.model_dump(mode="json") for s in sort]]
        ).encode()
    ).hexdigest()[:16]
    return Search(kind, where, atoms, digest)


def result_type(query: Node, scope: Scope) -> str:
    """The object type a search returns: its top-level `object_type` node (or the one of the
    Smart View it names); leads when there is none."""
    found = _declared_type(query, scope)
    if found is None:
        return "lead"
    if found not in TOP_LEVEL:
        raise bad(
            "query",
            f"Searching {found!r} objects is not supported; "
            f"supported types: {', '.join(TOP_LEVEL)}.",
        )
    return found


def _declared_type(node: Node, scope: Scope, depth: int = 0) -> str | None:
    if node.negate or depth > 20:
        return None
    if isinstance(node, ObjectTypeNode):
        return node.object_type
    if isinstance(node, AndNode):
        for child in node.queries:
            found = _declared_type(child, scope, depth + 1)
            if found:
                return found
    if isinstance(node, SavedSearchNode):
        view = scope.saved_search(node.saved_search_id)
        return view.type if view is not None else None
    return None


def sort_atoms(
    compiler: Compiler, kind: ObjectKind, table: FromClause, sort: Sequence[SortSpec]
) -> list[SortAtom]:
    specs = list(sort) or [
        spec.model_copy(update={"field": spec.field.model_copy(update={"object_type": kind.name})})
        for spec in DEFAULT_SORT
    ]
    atoms: list[SortAtom] = []
    for i, spec in enumerate(specs):
        path = f"sort[{i}].field"
        resolved = compiler.resolve_field(spec.field, kind, path)
        if resolved.multi:
            raise bad(path, f"Field {resolved.name!r} holds several values and cannot sort.")
        definition = resolved.definition
        expr = definition.column(table)
        if definition.lookup is not None:
            lookup = definition.lookup
            expr = (
                select(lookup.table.c[lookup.column])
                .where(lookup.table.c.id == table.c[lookup.fk])
                .scalar_subquery()
            )
        descending = spec.direction == "desc"
        nullable = definition.nullable and not (isinstance(expr, Column) and not expr.nullable)
        if nullable:
            atoms.append(SortAtom(case((expr.is_(None), 1), else_=0), descending=False))
        atoms.append(SortAtom(expr, descending))
    # The id breaks ties, in the direction of the last key so one index serves both.
    atoms.append(SortAtom(table.c.id, atoms[-1].descending))
    return atoms


# --- Pages ---------------------------------------------------------------------------------------


def run_search(
    session: Session,
    actor: Actor,
    request: SearchRequest,
    tz: tzinfo,
    base_url: str,
) -> dict[str, Any]:
    """`POST /data/search/`: a page of matches, the next cursor, and counts when asked."""
    scope = make_scope(session, actor, tz)
    search = compile_search(scope, request.query, request.sort)
    limit = page_size(request)
    position = decode_cursor(request.cursor or request.legacy_cursor, search)
    returned = position.returned if position else 0
    if request.results_limit is not None:
        limit = min(limit, max(request.results_limit - returned, 0))
    ids: list[str] = []
    cursor = None
    if limit:
        rows = session.execute(page_statement(search, position, limit + 1)).all()
        ids = [row[0] for row in rows[:limit]]
        reached = request.results_limit is not None and returned + limit >= request.results_limit
        if len(rows) > limit and not reached:
            cursor = encode_cursor(search, rows[limit - 1][1:], returned + limit)
    body: dict[str, Any] = {
        "data": objects(session, search.kind.name, ids, request.fields, base_url),
        "cursor": cursor,
    }
    if request.include_counts:
        total = session.scalar(
            select(func.count()).select_from(search.kind.table).where(search.where)
        )
        body["count"] = {"total": total or 0}
    return body


def page_size(request: SearchRequest) -> int:
    limit = request.page_limit if request.page_limit is not None else request.limit
    if limit is None:
        return DEFAULT_LIMIT
    if limit > MAX_LIMIT:
        raise ValidationFailed(
            field_errors={"_limit": f"Must be less than or equal to {MAX_LIMIT}."}
        )
    return limit


def matching_ids(search: Search) -> Select[tuple[str]]:
    """Every matching id in sort order: what bulk actions walk through."""
    table = search.kind.table
    return select(table.c.id).where(search.where).order_by(*order_by(search.atoms))


def page_statement(search: Search, position: Position | None, size: int) -> Select[Any]:
    table = search.kind.table
    statement = select(table.c.id, *(atom.expr for atom in search.atoms)).where(search.where)
    if position is not None:
        statement = statement.where(after(search.atoms, position.values))
    return statement.order_by(*order_by(search.atoms)).limit(size)


def order_by(atoms: Sequence[SortAtom]) -> list[ColumnElement[Any]]:
    return [atom.expr.desc() if atom.descending else atom.expr.asc() for atom in atoms]


def after(atoms: Sequence[SortAtom], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after `values` in the order of `atoms` (a keyset cursor's condition)."""
    directions = {atom.descending for atom in atoms}
    if len(directions) == 1 and None not in values:
        # One row-value comparison: what an index on the sort keys answers directly.
        keys = tuple_(*(atom.expr for atom in atoms))
        bound = tuple_(*values)
        return keys < bound if directions == {True} else keys > bound
    alternatives = []
    for i, atom in enumerate(atoms):
        equal = [_equal(a.expr, v) for a, v in zip(atoms[:i], values[:i], strict=True)]
        alternatives.append(and_(*equal, _beyond(atom, values[i])))
    return or_(*alternatives)


def _equal(expr: Expr, value: Any) -> ColumnElement[bool]:
    return expr.is_(None) if value is None else expr == value


def _beyond(atom: SortAtom, value: Any) -> ColumnElement[bool]:
    if value is None:
        return false()  # rows without a value come last; their flag atom orders them
    return atom.expr < value if atom.descending else atom.expr > value


# --- Cursors -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    values: list[Any]
    returned: int


def encode_cursor(search: Search, values: Sequence[Any], returned: int) -> str:
    payload = {"s": search.fingerprint, "v": [_encode(v) for v in values], "n": returned}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def decode_cursor(raw: str | None, search: Search) -> Position | None:
    if not raw:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        values = [_decode(v) for v in payload["v"]]
        returned = int(payload["n"])
        fingerprint = payload["s"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ValidationFailed(field_errors={"cursor": "This cursor is not valid."}) from None
    if fingerprint != search.fingerprint or len(values) != len(search.atoms):
        raise ValidationFailed(
            field_errors={
                "cursor": "This cursor belongs to a different search; send the same query "
                "and sort with it."
            }
        )
    return Position(values, returned)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return datetime.fromisoformat(value["t"])
    if value is not None and not isinstance(value, str | int | float):
        raise ValueError(value)
    return value


# --- Objects -------------------------------------------------------------------------------------


def objects(
    session: Session,
    object_type: str,
    ids: list[str],
    fields: dict[str, list[str]] | None,
    base_url: str,
) -> list[dict[str, Any]]:
    """`{"__object_type", "id"}` per id, plus the fields `_fields` asks for."""
    wanted = (fields or {}).get(object_type)
    if not wanted or not ids:
        return [{"__object_type": object_type, "id": i} for i in ids]
    full = _serialized(session, object_type, ids, base_url)
    return [{"__object_type": object_type, **pick_fields(full[i], wanted), "id": i} for i in ids]


def _serialized(
    session: Session, object_type: str, ids: list[str], base_url: str
) -> dict[str, dict[str, Any]]:
    if object_type == "lead":
        leads = session.scalars(select(Lead).where(Lead.id.in_(ids))).all()
        parts = lead_service.load_parts(session, leads)
        return {o["id"]: o for o in lead_service.serialize_all(session, parts, base_url)}
    if object_type == "contact":
        contacts = session.scalars(select(Contact).where(Contact.id.in_(ids))).all()
        return {o["id"]: o for o in contact_service.serialized(session, contacts)}
    raise BadRequest(f"Returning {object_type} objects is not supported.")
