"""Request bodies and the wire shape of Smart Views (OpenAPI `SavedSearch`, close-search.md D)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args

from pydantic import Field, field_validator

from clove.kit.dates import iso_utc
from clove.kit.schemas import PatchBody, TolerantBody
from clove.models import SavedSearch

SavedSearchType = Literal[
    "lead",
    "contact",
    "opportunity",
    "call",
    "email",
    "sms",
    "meeting",
    "note",
    "whatsapp_message",
    "custom_activity",
    "form_submission",
]
SAVED_SEARCH_TYPES: tuple[str, ...] = get_args(SavedSearchType)

# What a view's response carries that a client cannot set: a client that sends a view back
# (a clone or restore script) has these dropped instead of refused. `used_recently` appears in
# Close's examples, though not in its schema.
READ_ONLY = frozenset(
    {
        "id",
        "organization_id",
        "user_id",
        "created_by",
        "updated_by",
        "date_created",
        "date_updated",
        "is_user_dependent",
        "used_recently",
    }
)


def serialize_saved_search(view: SavedSearch) -> dict[str, Any]:
    return {
        "id": view.id,
        "name": view.name,
        "description": view.description,
        "type": view.type,
        "query": view.query,
        "s_query": view.s_query,
        "selected_fields": view.selected_fields,
        "is_shared": view.is_shared,
        "shared_with": view.shared_with,
        "sharing_settings": view.sharing_settings,
        "is_user_dependent": view.is_user_dependent,
        "user_id": view.user_id,
        "organization_id": view.organization_id,
        "created_by": view.created_by,
        "updated_by": view.updated_by,
        "date_created": iso_utc(view.date_created),
        "date_updated": iso_utc(view.date_updated),
    }


class SharingSettings(TolerantBody):
    """`sharing_settings` as a client writes it; who set it and when are kept by the server
    (and ignored when a client sends them back)."""

    read_only: ClassVar[frozenset[str]] = frozenset(
        {"created_at", "created_by_id", "updated_at", "updated_by_id"}
    )

    whole_org: bool = False
    user_ids: list[str] = Field(default_factory=list)
    group_ids: list[str] = Field(default_factory=list)


# Deeper JSON than this in `s_query` or `selected_fields` is refused before anything walks it
# recursively (a real query is a few levels deep; the UI nests `and`s two deep).
MAX_DEPTH = 100


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests lists/objects more than `limit` levels; walked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            if depth >= limit:
                return True
            stack.extend((child, depth + 1) for child in item)
    return False


class ViewBody(TolerantBody):
    read_only: ClassVar[frozenset[str]] = READ_ONLY

    @field_validator("s_query", "selected_fields", mode="before", check_fields=False)
    @classmethod
    def _not_too_deep(cls, value: Any) -> Any:
        if too_deep(value):
            raise ValueError(f"Nested too deeply (more than {MAX_DEPTH} levels).")
        return value


class SavedSearchCreate(ViewBody):
    name: str = Field(min_length=1, max_length=200)
    # Close's examples show "" for views created without one.
    description: str | None = ""
    type: SavedSearchType = "lead"
    query: str | None = None
    # Checked by the service, which names the bad path (`s_query.query.queries[1].field`).
    s_query: Any = None
    selected_fields: list[dict[str, Any]] | None = None
    is_shared: bool = False
    shared_with: list[str] | None = None
    sharing_settings: SharingSettings | None = None


class SavedSearchUpdate(ViewBody, PatchBody):
    nullable: ClassVar[frozenset[str]] = frozenset(
        {"description", "query", "s_query", "selected_fields", "shared_with", "sharing_settings"}
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    type: SavedSearchType | None = None
    query: str | None = None
    s_query: Any = None
    selected_fields: list[dict[str, Any]] | None = None
    is_shared: bool | None = None
    shared_with: list[str] | None = None
    sharing_settings: SharingSettings | None = None
