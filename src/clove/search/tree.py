"""The Advanced Filtering query tree (close-search.md B3-B6) as Pydantic models.

Every node may carry `negate`. Unknown node types, unknown keys and wrongly typed values are
errors; `parse_query` turns them into a 400 that names the path of the bad node, such as
`query.queries[1].condition.mode`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from clove.errors import ValidationFailed

Number = int | float
TextMode = Literal["full_words", "phrase", "beginning_of_words", "exact_value"]


class Model(BaseModel):
    # strict: "5" is not a number and "true" not a boolean in a typed JSON query.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- Fields --------------------------------------------------------------------------------------


class RegularField(Model):
    type: Literal["regular_field"]
    object_type: str
    field_name: str


class CustomFieldRef(Model):
    type: Literal["custom_field"]
    custom_field_id: str


FieldSpec = Annotated[RegularField | CustomFieldRef, Field(discriminator="type")]


# --- Moments -------------------------------------------------------------------------------------


class Now(Model):
    type: Literal["now"]


class FixedUtc(Model):
    type: Literal["fixed_utc"]
    value: str


class FixedLocalDate(Model):
    type: Literal["fixed_local_date"]
    value: str
    which: Literal["start", "end"] = "start"


class OffsetAmount(Model):
    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0


class Offset(Model):
    type: Literal["offset"]
    direction: Literal["past", "future"]
    moment: Moment
    offset: OffsetAmount
    which_day_end: Literal["start", "end"] | None = None


Moment = Annotated[Now | FixedUtc | FixedLocalDate | Offset, Field(discriminator="type")]


# --- Conditions ----------------------------------------------------------------------------------


class TextCondition(Model):
    type: Literal["text"]
    mode: TextMode = "full_words"
    value: str


class TermCondition(Model):
    type: Literal["term"]
    values: list[str | Number | bool]


class ReferenceCondition(Model):
    type: Literal["reference"]
    reference_type: str
    object_ids: list[str]


class NumberRange(Model):
    type: Literal["number_range"]
    gt: Number | None = None
    gte: Number | None = None
    lt: Number | None = None
    lte: Number | None = None


class MomentRange(Model):
    """`[on_or_after, before)`; `after` and `on_or_before` are accepted as the open/closed
    variants some clients send."""

    type: Literal["moment_range"]
    on_or_after: Moment | None = None
    before: Moment | None = None
    after: Moment | None = None
    on_or_before: Moment | None = None


class ExistsCondition(Model):
    type: Literal["exists"]


class BooleanCondition(Model):
    type: Literal["boolean"]
    value: bool


class LocalTime(Model):
    type: Literal["local_time"]
    on_or_after: str | None = None
    before: str | None = None


Condition = Annotated[
    TextCondition
    | TermCondition
    | ReferenceCondition
    | NumberRange
    | MomentRange
    | ExistsCondition
    | BooleanCondition
    | LocalTime,
    Field(discriminator="type"),
]


# --- Nodes ---------------------------------------------------------------------------------------


class NodeModel(Model):
    negate: bool = False


class AndNode(NodeModel):
    type: Literal["and"]
    queries: list[Node]


class OrNode(NodeModel):
    type: Literal["or"]
    queries: list[Node]


class ObjectTypeNode(NodeModel):
    type: Literal["object_type"]
    object_type: str


class FieldConditionNode(NodeModel):
    type: Literal["field_condition"]
    field: FieldSpec
    condition: Condition


class HasRelatedNode(NodeModel):
    type: Literal["has_related"]
    this_object_type: str | None = None
    related_object_type: str
    related_query: Node


class IdNode(NodeModel):
    type: Literal["id"]
    value: str


class SavedSearchNode(NodeModel):
    type: Literal["saved_search"]
    saved_search_id: str


class TextNode(NodeModel):
    """Field-less text: the structured form of typing into the search box."""

    type: Literal["text"]
    mode: TextMode = "full_words"
    value: str


class MatchAllNode(NodeModel):
    type: Literal["match_all"]


Node = Annotated[
    AndNode
    | OrNode
    | ObjectTypeNode
    | FieldConditionNode
    | HasRelatedNode
    | IdNode
    | SavedSearchNode
    | TextNode
    | MatchAllNode,
    Field(discriminator="type"),
]


class SortSpec(Model):
    direction: Literal["asc", "desc"] = "asc"
    field: FieldSpec


class SearchRequest(Model):
    """The body of `POST /data/search/` (and the search part of bulk actions and exports)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    query: Node
    sort: list[SortSpec] = []
    results_limit: int | None = Field(default=None, ge=0)
    page_limit: int | None = Field(default=None, alias="_limit", ge=0)
    # The UI's "Copy Filters" export always carries `"limit": null`; a number is a page size.
    limit: int | None = Field(default=None, ge=0)
    cursor: str | None = None
    legacy_cursor: str | None = Field(default=None, alias="_cursor")
    fields: dict[str, list[str]] | None = Field(default=None, alias="_fields")
    include_counts: bool = False

    @model_validator(mode="after")
    def _one_cursor(self) -> SearchRequest:
        if self.cursor and self.legacy_cursor and self.cursor != self.legacy_cursor:
            raise ValueError("Send the cursor once, as `cursor`.")
        return self


def parse_search_request(raw: Any) -> SearchRequest:
    """The request body as a SearchRequest, or a 400 naming each bad path."""
    try:
        return SearchRequest.model_validate(raw)
    except ValidationError as exc:
        raise invalid(exc, raw) from None


def parse_node(raw: Any, root: str = "query") -> Node:
    """One query tree (e.g. a bulk action's `s_query`), or a 400 naming each bad path."""
    try:
        node: Node = _NODE.validate_python(raw)
        return node
    except ValidationError as exc:
        raise invalid(exc, raw, root) from None


def invalid(exc: ValidationError, raw: Any, root: str = "") -> ValidationFailed:
    """Pydantic's errors as Close's 400, keyed by the path into the JSON the client sent."""
    fields: dict[str, str] = {}
    general: list[str] = []
    for err in exc.errors():
        path = json_path(raw, err["loc"], root)
        message = _message(err)
        if path:
            fields.setdefault(path, message)
        else:
            general.append(message)
    return ValidationFailed(general, fields)


def json_path(raw: Any, loc: tuple[int | str, ...], root: str = "") -> str:
    """`query.queries[0].condition` from a Pydantic location, leaving out the union tags
    (`"and"`, `"field_condition"`) that Pydantic inserts for discriminated unions."""
    path = root
    current = raw
    tagged: set[int] = set()  # dicts whose union tag has been passed already
    for part in loc:
        if isinstance(part, int) and isinstance(current, list) and 0 <= part < len(current):
            path += f"[{part}]"
            current = current[part]
        elif (
            isinstance(current, dict) and current.get("type") == part and id(current) not in tagged
        ):
            tagged.add(id(current))  # a union tag (`"object_type"` is also a key of its node)
        elif isinstance(current, dict) and part in current:
            path = f"{path}.{part}" if path else str(part)
            current = current[part]
        else:
            path = f"{path}.{part}" if path else str(part)
            current = None
    return path


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return f"Unknown type {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}."
    if kind == "union_tag_not_found":
        return "Every node needs a `type`."
    if kind == "extra_forbidden":
        return "Unknown key."
    if kind == "missing":
        return "This field is required."
    if kind == "literal_error":
        return f"Must be one of {err.get('ctx', {}).get('expected', '')}."
    return str(err["msg"]).removeprefix("Value error, ")


for _model in (Offset, AndNode, OrNode, HasRelatedNode, MomentRange, SearchRequest):
    _model.model_rebuild()
_NODE: TypeAdapter[Node] = TypeAdapter(Node)
