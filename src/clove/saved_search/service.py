"""Smart Views: named queries over one object type (close-search.md D).

A view holds a text `query`, an `s_query` wrapper `{"query": <node>, "sort": [...],
"results_limit": ...}`, or both. The wrapper is checked strictly (every bad path named in one
400) and then stored exactly as the client sent it, so that a GET returns what was written.
Evaluating the query, and following `saved_search` nodes, is the search compiler's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from clove.errors import ValidationFailed, object_not_found
from clove.event.service import Actor, record_creation, record_deletion, record_update
from clove.kit.dates import iso_utc, utcnow
from clove.kit.ids import new_id
from clove.models import Membership, SavedSearch
from clove.saved_search.schemas import (
    SavedSearchCreate,
    SavedSearchUpdate,
    SharingSettings,
    serialize_saved_search,
)
from clove.search.tree import (
    AndNode,
    Node,
    ObjectTypeNode,
    ReferenceCondition,
    SortSpec,
    invalid,
    parse_node,
)

OBJECT_TYPE = "saved_search"
# The keys of `s_query`. `limit` is tolerated (and kept) because the UI's "Copy Filters"
# export carries `"limit": null` next to the others and people paste it whole.
WRAPPER_KEYS = ("query", "sort", "results_limit", "limit")
WRAPPER_SHAPE = '{"query": <query>, "sort": [...], "results_limit": null}'
# View types whose objects are activities: their `object_type` clause may also be spelled
# `activity.<type>`, as the Advanced Filtering API names activity types.
ACTIVITY_TYPES = frozenset(
    {
        "call",
        "email",
        "sms",
        "meeting",
        "note",
        "whatsapp_message",
        "custom_activity",
        "form_submission",
    }
)
CURRENT_USER = "CURRENT_USER"

# --- Reading -------------------------------------------------------------------------------------


def list_saved_searches(
    session: Session, organization_id: str, types: Sequence[str], skip: int, limit: int
) -> list[SavedSearch]:
    """Up to `limit + 1` views of the given types, oldest first (as in Close's list example)."""
    if not types:
        return []
    query = (
        select(SavedSearch)
        .where(SavedSearch.organization_id == organization_id, SavedSearch.type.in_(types))
        .order_by(SavedSearch.date_created, SavedSearch.id)
        .offset(skip)
        .limit(limit + 1)
    )
    return list(session.scalars(query))


def get_saved_search(session: Session, organization_id: str, view_id: str) -> SavedSearch:
    view = session.scalars(
        select(SavedSearch).where(
            SavedSearch.id == view_id, SavedSearch.organization_id == organization_id
        )
    ).first()
    if view is None:
        raise object_not_found("SavedSearch")
    return view


# --- Writing -------------------------------------------------------------------------------------


def create_saved_search(session: Session, actor: Actor, body: SavedSearchCreate) -> SavedSearch:
    """Flushes a new view owned by the caller, with its event."""
    errors: dict[str, str] = {}
    general: list[str] = []
    name = _clean_name(body.name, errors)
    dependent = False
    if body.s_query is not None:
        dependent = _check_s_query(body.s_query, body.type, errors, general)
    _check_has_query(body.query, body.s_query, errors)
    if body.shared_with:
        _check_memberships(session, actor.organization_id, body.shared_with, errors)
    if errors or general:
        raise ValidationFailed(general, errors)
    view = SavedSearch(
        id=new_id("save"),
        organization_id=actor.organization_id,
        user_id=actor.user_id,
        name=name,
        description=body.description,
        type=body.type,
        query=body.query,
        s_query=body.s_query,
        selected_fields=body.selected_fields,
        is_shared=body.is_shared,
        shared_with=body.shared_with,
        sharing_settings=_sharing(body.sharing_settings, None, actor),
        is_user_dependent=dependent,
        created_by=actor.user_id,
        updated_by=actor.user_id,
    )
    session.add(view)
    session.flush()
    record_creation(
        session, actor, object_type=OBJECT_TYPE, data=serialize_saved_search(view), lead_id=None
    )
    return view


def update_saved_search(
    session: Session, actor: Actor, view: SavedSearch, body: SavedSearchUpdate
) -> None:
    """Applies a partial update; the result must still be a valid view."""
    values = body.changes()
    errors: dict[str, str] = {}
    general: list[str] = []
    name = _clean_name(values["name"], errors) if "name" in values else view.name
    view_type = values.get("type", view.type)
    query = values.get("query", view.query)
    s_query = values.get("s_query", view.s_query)
    dependent = view.is_user_dependent
    if s_query is None:
        dependent = False
    elif "s_query" in values or "type" in values:
        # A new type is checked against the stored query's object_type clause too.
        dependent = _check_s_query(s_query, view_type, errors, general)
        if not errors and not general:
            _check_no_cycle(session, view, s_query, errors)
    _check_has_query(query, s_query, errors)
    if values.get("shared_with"):
        _check_memberships(session, view.organization_id, values["shared_with"], errors)
    if errors or general:
        raise ValidationFailed(general, errors)

    before = serialize_saved_search(view)
    view.name = name
    view.type = view_type
    view.query = query
    view.s_query = s_query
    view.is_user_dependent = dependent
    for key in ("description", "selected_fields", "is_shared", "shared_with"):
        if key in values:
            setattr(view, key, values[key])
    if "sharing_settings" in values:
        view.sharing_settings = _sharing(values["sharing_settings"], view.sharing_settings, actor)
    if serialize_saved_search(view) == before:
        return
    view.updated_by = actor.user_id
    view.date_updated = utcnow()
    session.flush()
    record_update(
        session,
        actor,
        object_type=OBJECT_TYPE,
        before=before,
        after=serialize_saved_search(view),
        lead_id=None,
    )


def delete_saved_search(session: Session, actor: Actor, view: SavedSearch) -> None:
    data = serialize_saved_search(view)
    session.delete(view)
    session.flush()
    record_deletion(session, actor, object_type=OBJECT_TYPE, previous=data, lead_id=None)


# --- Checks --------------------------------------------------------------------------------------


def _clean_name(name: str, errors: dict[str, str]) -> str:
    name = name.strip()
    if not name:
        errors["name"] = "This field may not be blank."
    return name


def _check_has_query(query: str | None, s_query: Any, errors: dict[str, str]) -> None:
    if s_query is None and not (query or "").strip():
        errors.setdefault(
            "s_query",
            f"A Smart View needs a query: send s_query as {WRAPPER_SHAPE} (or a text query).",
        )


def _check_memberships(
    session: Session, organization_id: str, ids: list[str], errors: dict[str, str]
) -> None:
    """`shared_with` holds membership ids of the view's organization."""
    found = set(
        session.scalars(
            select(Membership.id).where(
                Membership.organization_id == organization_id,
                Membership.id.in_(sorted(set(ids))),
            )
        )
    )
    missing = [i for i in ids if i not in found]
    if missing:
        errors["shared_with"] = f"No membership of this organization has the id {missing[0]}."


def _check_s_query(raw: Any, view_type: str, errors: dict[str, str], general: list[str]) -> bool:
    """Checks the wrapper and its query; adds what is wrong to `errors`/`general`. Returns
    whether the query depends on who runs it (`CURRENT_USER`)."""
    found = _parse_wrapper(raw)
    if isinstance(found, ValidationFailed):
        errors.update(found.field_errors)
        general.extend(found.errors)
        return False
    problem = _object_type_problem(found, view_type)
    if problem:
        errors["s_query.query"] = problem
    return _uses_current_user(found)


def _check_no_cycle(
    session: Session, view: SavedSearch, s_query: dict[str, Any], errors: dict[str, str]
) -> None:
    """A view may not refer back to itself through `saved_search` nodes (its own or those of
    the views it names). Text queries' `in:` are caught when a search runs."""
    seen = {view.id}
    chain: dict[str, str] = {}  # view id -> the view that named it
    pending = [(view.id, s_query)]
    while pending:
        owner, wrapper = pending.pop()
        named = _named_views(wrapper.get("query") if isinstance(wrapper, dict) else None)
        if view.id in named:
            path = [view.id, owner]
            while path[-1] != view.id:
                path.append(chain[path[-1]])
            errors["s_query.query"] = (
                f"Smart Views would refer to each other in a cycle: {' → '.join(reversed(path))}."
            )
            return
        new = sorted(named - seen)
        seen.update(new)
        chain.update((i, owner) for i in new)
        rows = session.execute(
            select(SavedSearch.id, SavedSearch.s_query).where(
                SavedSearch.organization_id == view.organization_id, SavedSearch.id.in_(new)
            )
        ).tuples()
        pending.extend((i, q) for i, q in rows if q)


def _named_views(query: Any) -> set[str]:
    """Ids of the Smart Views a raw query tree names."""
    found: set[str] = set()
    stack = [query]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "saved_search" and isinstance(item.get("saved_search_id"), str):
                found.add(item["saved_search_id"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _parse_wrapper(raw: Any) -> Node | ValidationFailed:
    if not isinstance(raw, dict):
        return ValidationFailed(field_errors={"s_query": f"Must be an object: {WRAPPER_SHAPE}."})
    errors: dict[str, str] = {}
    general: list[str] = []
    if "query" not in raw:
        hint = " (the query tree goes under s_query.query)" if "type" in raw else ""
        errors["s_query.query"] = f"This field is required{hint}."
    for key in raw:
        if key not in WRAPPER_KEYS:
            errors.setdefault(f"s_query.{key}", f"Unknown key; s_query is {WRAPPER_SHAPE}.")
    node: Node | None = None
    if "query" in raw:
        try:
            node = parse_node(raw["query"], root="s_query.query")
        except ValidationFailed as exc:
            errors.update(exc.field_errors)
            general.extend(exc.errors)
    sort = raw.get("sort", [])
    if not isinstance(sort, list):
        errors["s_query.sort"] = "Must be a list of sort specs."
    else:
        for i, item in enumerate(sort):
            try:
                SortSpec.model_validate(item)
            except ValidationError as exc:
                bad = invalid(exc, item, f"s_query.sort[{i}]")
                errors.update(bad.field_errors)
                general.extend(bad.errors)
    for key in ("results_limit", "limit"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            errors[f"s_query.{key}"] = "Must be null or a whole number."
        elif value is not None and value < 0:
            errors[f"s_query.{key}"] = "Must be at least 0."
    if errors or general or node is None:
        return ValidationFailed(general, errors)
    return node


def _object_type_problem(node: Node, view_type: str) -> str | None:
    """Close: a view's query says which objects it returns with an `object_type` clause, at
    the top level or as a direct part of a top-level `and` (the UI's shape). Close's own
    default views ("All Leads": a bare `match_all`) have none; the view's `type` then applies."""
    accepted = {view_type}
    if view_type in ACTIVITY_TYPES:
        accepted.add(f"activity.{view_type}")
    candidates: list[Node] = [node]
    if isinstance(node, AndNode) and not node.negate:
        candidates += node.queries
    declared = [c.object_type for c in candidates if isinstance(c, ObjectTypeNode) and not c.negate]
    if not declared or any(t in accepted for t in declared):
        return None
    clause = f'{{"type": "object_type", "object_type": "{view_type}"}}'
    return (
        f"The query selects {declared[0]!r} objects but the Smart View's type is "
        f"{view_type!r}: send the matching type, or the clause {clause}."
    )


def _uses_current_user(node: Node) -> bool:
    """Whether a `reference` condition anywhere in the tree names `CURRENT_USER`. Iterative:
    a tree can be as deep as the validator allows."""
    stack: list[Any] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ReferenceCondition):
            if CURRENT_USER in item.object_ids:
                return True
        elif isinstance(item, BaseModel):
            stack.extend(getattr(item, name) for name in type(item).model_fields)
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _sharing(
    settings: SharingSettings | None, previous: dict[str, Any] | None, actor: Actor
) -> dict[str, Any] | None:
    """`sharing_settings` as stored and returned: what the client set, plus who set it first
    and last and when (kept unchanged when the settings themselves do not change)."""
    if settings is None:
        return None
    chosen = {
        "whole_org": settings.whole_org,
        "user_ids": list(settings.user_ids),
        "group_ids": list(settings.group_ids),
    }
    if previous and all(previous.get(k) == v for k, v in chosen.items()):
        return previous
    now = iso_utc(utcnow())
    return {
        **chosen,
        "created_at": previous.get("created_at") if previous else now,
        "created_by_id": previous.get("created_by_id") if previous else actor.user_id,
        "updated_at": now,
        "updated_by_id": actor.user_id,
    }
