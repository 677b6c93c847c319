"""Custom fields: definitions, and validation of the values written on leads and contacts."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, String, cast, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clove.custom_field.schemas import (
    MULTI_VALUE_TYPES,
    OBJECT_TYPES,
    FieldCreate,
    FieldUpdate,
    serialize_field,
)
from clove.errors import NotFound, ValidationFailed, field_error, object_not_found
from clove.event.service import Actor, changes, record_event
from clove.kit.dates import iso_utc, utcnow
from clove.kit.ids import new_id
from clove.kit.schemas import text_problem
from clove.models import Contact, CustomField, Lead, Membership

# The objects whose JSON `custom` column holds the values of each kind of field.
VALUE_MODELS: dict[str, type[Lead] | type[Contact]] = {"lead": Lead, "contact": Contact}
REWRITE_CHUNK = 500
DUPLICATE_NAME = "A custom field with this name already exists."

# --- Definitions -------------------------------------------------------------------------------


def require_object_type(object_type: str) -> None:
    if object_type not in OBJECT_TYPES:
        raise NotFound(f"Unknown object type: {object_type}")


def list_fields(session: Session, organization_id: str, object_type: str) -> list[CustomField]:
    """The organization's fields of `object_type` in schema (display) order."""
    return list(
        session.scalars(
            select(CustomField)
            .where(
                CustomField.organization_id == organization_id,
                CustomField.object_type == object_type,
            )
            .order_by(CustomField.position, CustomField.date_created, CustomField.id)
        )
    )


def get_field(
    session: Session, organization_id: str, object_type: str, field_id: str
) -> CustomField:
    field = session.scalars(
        select(CustomField).where(
            CustomField.id == field_id,
            CustomField.organization_id == organization_id,
            CustomField.object_type == object_type,
        )
    ).first()
    if field is None:
        raise object_not_found("CustomField")
    return field


def create_field(
    session: Session, actor: Actor, object_type: str, body: FieldCreate
) -> CustomField:
    """Flushes a new field at the end of the schema, with its event."""
    name = _clean_name(body.name)
    choices = _check_definition(
        body.type, body.accepts_multiple_values, body.choices, body.editable_with_roles
    )
    _check_name_free(session, actor.organization_id, object_type, name)
    field = CustomField(
        id=new_id("cf"),
        organization_id=actor.organization_id,
        object_type=object_type,
        name=name,
        description=body.description,
        type=body.type,
        accepts_multiple_values=body.accepts_multiple_values,
        choices=choices,
        position=_next_position(session, actor.organization_id, object_type),
        created_by=actor.user_id,
        updated_by=actor.user_id,
    )
    session.add(field)
    _flush_unique_name(session)
    create_value_index(session, field)
    _record(session, actor, field, "created", data=serialize_field(field))
    return field


def update_field(session: Session, actor: Actor, field: CustomField, body: FieldUpdate) -> None:
    """Applies a partial update; converts stored values when `accepts_multiple_values` flips."""
    values = body.changes()
    if "type" in values and values["type"] != field.type:
        # Close converts values between types in the background; refusing is the safe subset.
        raise field_error(
            "type", "The type of an existing custom field cannot be changed; create a new field."
        )
    multi = values.get("accepts_multiple_values", field.accepts_multiple_values)
    choices = _check_definition(
        field.type,
        multi,
        values.get("choices", field.choices),
        values.get("editable_with_roles") or [],
    )
    name = _clean_name(values["name"]) if "name" in values else field.name
    if name != field.name:
        # Checked before the assignment: the query would autoflush a duplicate name.
        _check_name_free(session, field.organization_id, field.object_type, name, field.id)
    before = serialize_field(field)
    field.name = name
    if "description" in values:
        field.description = values["description"]
    if choices != field.choices:
        field.choices = choices
    flipped = multi != field.accepts_multiple_values
    field.accepts_multiple_values = multi
    if serialize_field(field) == before:
        return
    field.updated_by = actor.user_id
    field.date_updated = utcnow()
    _flush_unique_name(session)
    if flipped:
        _convert_values(session, field)
    after = serialize_field(field)
    changed, previous = changes(before, after)
    _record(session, actor, field, "updated", data=after, previous=previous, changed=changed)


def delete_field(session: Session, actor: Actor, field: CustomField) -> None:
    """Deletes the field and its values on every lead or contact of the organization."""
    data = serialize_field(field)
    drop_value_index(session, field)
    _remove_values(session, field)
    session.delete(field)
    session.flush()
    _record(session, actor, field, "deleted", data=None, previous=data)


# --- Indexes for range searches (PostgreSQL) ------------------------------------------------------

# Number, date and datetime values are searched by range: an expression index per field,
# limited to the field's organization, answers those searches without reading every lead. The
# expressions are exactly what the search compiler writes (`custom ->> key`, cast for numbers).
INDEXED_TYPES = {"number": "(CAST(custom ->> '{id}' AS FLOAT))", "date": "(custom ->> '{id}')"}
INDEXED_TYPES["datetime"] = INDEXED_TYPES["date"]


def value_index_name(field: CustomField) -> str:
    return f"ix_{field.id}"  # quoted where used: ids are case-sensitive


def create_value_index(session: Session, field: CustomField) -> None:
    """On PostgreSQL, indexes a single-value number/date field's values (locks the table's
    writes while it is built: about a second per million rows)."""
    # These types never hold several values (MULTI_VALUE_TYPES), so the cast always applies.
    expression = INDEXED_TYPES.get(field.type)
    if expression is None or not _is_postgresql(session):
        return
    table = VALUE_MODELS[field.object_type].__tablename__
    values = expression.format(id=field.id)
    # Ids are base62 and generated here: safe to inline (DDL takes no bound parameters).
    session.execute(
        text(
            f'CREATE INDEX IF NOT EXISTS "{value_index_name(field)}" ON {table} ({values}) '
            f"WHERE organization_id = '{field.organization_id}'"
        )
    )
    # PostgreSQL keeps no statistics for a partial index's expression: without these it
    # guesses how many values a range matches and may walk the date index instead.
    version = session.get_bind().dialect.server_version_info or (0,)
    if version >= (14,):
        name = value_index_name(field)
        session.execute(text(f'CREATE STATISTICS IF NOT EXISTS "{name}" ON {values} FROM {table}'))


def drop_value_index(session: Session, field: CustomField) -> None:
    if _is_postgresql(session):
        session.execute(text(f'DROP INDEX IF EXISTS "{value_index_name(field)}"'))
        session.execute(text(f'DROP STATISTICS IF EXISTS "{value_index_name(field)}"'))


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def reorder_fields(
    session: Session, actor: Actor, object_type: str, ordered_ids: list[str]
) -> list[CustomField]:
    """Puts the listed fields first, in that order; omitted fields follow in their old order."""
    fields = list_fields(session, actor.organization_id, object_type)
    by_id = {f.id: f for f in fields}
    unknown = [i for i in ordered_ids if i not in by_id]
    repeated = sorted(i for i, n in Counter(ordered_ids).items() if n > 1)
    if unknown:
        raise field_error("fields", f"Unknown {object_type} custom field(s): {', '.join(unknown)}.")
    if repeated:
        raise field_error(
            "fields", f"Custom field(s) listed more than once: {', '.join(repeated)}."
        )
    listed = set(ordered_ids)
    order = [by_id[i] for i in ordered_ids] + [f for f in fields if f.id not in listed]
    for position, field in enumerate(order):
        if field.position != position:
            field.position = position
            field.updated_by = actor.user_id
    session.flush()
    return order


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise field_error("name", "This field may not be blank.")
    return name


def _check_definition(
    field_type: str, multi: bool, choices: list[str] | None, roles: list[str]
) -> list[str] | None:
    """The field's choices after checking the combination; all problems in one 400."""
    errors: dict[str, str] = {}
    if multi and field_type not in MULTI_VALUE_TYPES:
        errors["accepts_multiple_values"] = (
            f"Fields of type {field_type} cannot accept multiple values "
            f"(only {', '.join(sorted(MULTI_VALUE_TYPES))})."
        )
    if field_type == "choices":
        problem = _choices_problem(choices)
        if problem:
            errors["choices"] = problem
    elif choices:
        errors["choices"] = "Only fields of type choices have choices."
    if roles:
        # The table has no column for role restrictions yet; accepting them silently would lie.
        errors["editable_with_roles"] = "Restricting edits to roles is not supported yet."
    if errors:
        raise ValidationFailed(field_errors=errors)
    return list(choices) if field_type == "choices" and choices else None


def _choices_problem(choices: list[str] | None) -> str | None:
    if not choices:
        return "A choices field needs at least one choice."
    if any(not c.strip() for c in choices):
        return "Choices may not be blank."
    if len(set(choices)) != len(choices):
        return "Choices must be unique."
    return None


def _check_name_free(
    session: Session, organization_id: str, object_type: str, name: str, own_id: str = ""
) -> None:
    taken = session.scalar(
        select(CustomField.id).where(
            CustomField.organization_id == organization_id,
            CustomField.object_type == object_type,
            func.lower(CustomField.name) == name.lower(),
            CustomField.id != own_id,
        )
    )
    if taken:
        raise field_error("name", DUPLICATE_NAME)


def _flush_unique_name(session: Session) -> None:
    """Flushes; a concurrent request that took the name meanwhile becomes a 400 (the request's
    transaction is rolled back either way)."""
    try:
        session.flush()
    except IntegrityError:
        raise field_error("name", DUPLICATE_NAME) from None


def _next_position(session: Session, organization_id: str, object_type: str) -> int:
    last = session.scalar(
        select(func.max(CustomField.position)).where(
            CustomField.organization_id == organization_id,
            CustomField.object_type == object_type,
        )
    )
    return (last if last is not None else -1) + 1


def _record(
    session: Session,
    actor: Actor,
    field: CustomField,
    action: str,
    *,
    data: dict[str, Any] | None,
    previous: dict[str, Any] | None = None,
    changed: list[str] | None = None,
) -> None:
    record_event(
        session,
        actor,
        object_type=f"custom_fields.{field.object_type}",
        action=action,
        object_id=field.id,
        lead_id=None,
        data=data,
        previous_data=previous,
        changed_fields=changed,
    )


# --- Stored values when a definition changes ---------------------------------------------------


def _has_value(model: type[Lead] | type[Contact], field_id: str) -> ColumnElement[bool]:
    # `->>` / JSON_EXTRACT: NULL when the key is absent (null values are never stored).
    return model.custom[field_id].as_string().is_not(None)


def _remove_values(session: Session, field: CustomField) -> None:
    """One UPDATE that drops the field's key from every object of the organization having it."""
    model = VALUE_MODELS[field.object_type]
    dialect = session.get_bind().dialect.name
    without: ColumnElement[Any]
    if dialect == "postgresql":
        without = cast(cast(model.custom, JSONB).op("-")(literal(field.id, String)), JSON)
    elif dialect == "sqlite":
        without = func.json_remove(model.custom, f'$."{field.id}"')
    else:  # no JSON functions known for this database: rewrite in chunks instead
        _rewrite_values(session, field, lambda _value: None)
        return
    session.execute(
        update(model)
        .where(model.organization_id == field.organization_id, _has_value(model, field.id))
        .values(custom=without)
        .execution_options(synchronize_session=False)
    )


def _convert_values(session: Session, field: CustomField) -> None:
    """After `accepts_multiple_values` flipped: wrap single values in lists, or keep the first."""
    if field.accepts_multiple_values:
        _rewrite_values(session, field, lambda v: v if isinstance(v, list) else [v])
    else:
        _rewrite_values(
            session, field, lambda v: (v[0] if v else None) if isinstance(v, list) else v
        )


def _rewrite_values(session: Session, field: CustomField, transform: Callable[[Any], Any]) -> None:
    """Rewrites the field's value on every object having one, a chunk of rows per statement.

    `transform` maps the old value to the new one; None removes it.
    """
    model = VALUE_MODELS[field.object_type]
    after = ""
    while True:
        rows = session.execute(
            select(model.id, model.custom)
            .where(
                model.organization_id == field.organization_id,
                _has_value(model, field.id),
                model.id > after,
            )
            .order_by(model.id)
            .limit(REWRITE_CHUNK)
        ).all()
        if not rows:
            return
        session.execute(
            update(model),
            [{"id": row.id, "custom": _rewritten(row.custom, field.id, transform)} for row in rows],
        )
        after = rows[-1].id


def _rewritten(custom: dict[str, Any], key: str, transform: Callable[[Any], Any]) -> dict[str, Any]:
    new = dict(custom)
    value = transform(new.pop(key))
    if value is not None:
        new[key] = value
    return new


# --- Values on leads and contacts --------------------------------------------------------------


class InvalidValue(ValueError):
    """A value that its field does not accept; the message is the field error."""


@dataclass
class Write:
    """One `custom.*` key of a request, resolved to its field and normalized."""

    key: str
    field: CustomField
    op: str  # "set", "add" or "remove"
    value: Any  # set: the value, a list for multi-value fields, None to unset; add/remove: a list


def custom_keys(payload: dict[str, Any]) -> dict[str, Any]:
    """The `custom.*` entries of a request body (`custom.cf_X`, `custom.cf_X.add`, ...)."""
    return {k: v for k, v in payload.items() if k.startswith("custom.")}


def apply_custom_values(
    session: Session,
    organization_id: str,
    object_type: str,
    current: dict[str, Any],
    writes: dict[str, Any],
) -> dict[str, Any]:
    """The new `custom` dict (keyed by field id) after `writes` (keys `custom.cf_X[.add|.remove]`).

    Validates every value against its field's type; raises ValidationFailed with
    field-errors keyed by the request key. Does not modify `current`.
    """
    result = {k: list(v) if isinstance(v, list) else v for k, v in current.items()}
    if not writes:
        return result
    parsed = {key: _parse_key(key) for key in writes}
    fields = _load_fields(session, organization_id, object_type, {f for f, _ in parsed.values()})
    errors: dict[str, str] = {}
    resolved: list[Write] = []
    for key, raw in writes.items():
        field_id, op = parsed[key]
        try:
            resolved.append(_resolve(key, fields.get(field_id), op, raw))
        except InvalidValue as exc:
            errors[key] = str(exc)
    errors.update(_missing_references(session, organization_id, resolved))
    if errors:
        raise ValidationFailed(field_errors=errors)
    for write in resolved:
        _apply(result, write)
    return result


def render_custom_values(values: dict[str, Any]) -> dict[str, Any]:
    """`{"custom.cf_X": value}` for an object's response body."""
    return {f"custom.{field_id}": value for field_id, value in values.items()}


def _parse_key(key: str) -> tuple[str, str]:
    """(field id, operation) of `custom.cf_X`, `custom.cf_X.add` or `custom.cf_X.remove`."""
    rest = key.removeprefix("custom.")
    for op in ("add", "remove"):
        if rest.endswith("." + op):
            return rest[: -len(op) - 1], op
    return rest, "set"


def _load_fields(
    session: Session, organization_id: str, object_type: str, field_ids: set[str]
) -> dict[str, CustomField]:
    """The named fields, in one query; other organizations' and object types' are left out."""
    query = select(CustomField).where(
        CustomField.organization_id == organization_id,
        CustomField.object_type == object_type,
        CustomField.id.in_(sorted(field_ids)),
    )
    return {f.id: f for f in session.scalars(query)}


def _resolve(key: str, field: CustomField | None, op: str, raw: Any) -> Write:
    if field is None:
        raise InvalidValue("Unknown custom field.")
    problem = text_problem(raw)
    if problem:
        raise InvalidValue(problem)
    if op != "set":
        if not field.accepts_multiple_values:
            raise InvalidValue(f"Only fields that accept multiple values support .{op}.")
        if raw is None:
            raise InvalidValue("This field may not be null.")
        items = raw if isinstance(raw, list) else [raw]
        # Removing needs no valid value: a choice may have been dropped from the field since.
        check = _normalizer(field) if op == "add" else _any_string
        return Write(key, field, op, _unique(check(field, item) for item in items))
    if raw is None:
        return Write(key, field, op, None)
    if field.accepts_multiple_values:
        items = raw if isinstance(raw, list) else [raw]
        values = _unique(_normalizer(field)(field, item) for item in items)
        return Write(key, field, op, values or None)
    if isinstance(raw, list):
        raise InvalidValue("This field accepts a single value, not a list.")
    return Write(key, field, op, _normalizer(field)(field, raw))


def _unique(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if value not in out:
            out.append(value)
    return out


def _apply(result: dict[str, Any], write: Write) -> None:
    field_id = write.field.id
    if write.op == "set":
        new = write.value
    else:
        existing = result.get(field_id)
        existing = (
            existing if isinstance(existing, list) else [] if existing is None else [existing]
        )
        if write.op == "add":
            new = existing + [v for v in write.value if v not in existing]
        else:
            new = [v for v in existing if v not in write.value]
    if new is None or new == []:
        result.pop(field_id, None)
    else:
        result[field_id] = new


def _missing_references(
    session: Session, organization_id: str, writes: list[Write]
) -> dict[str, str]:
    """Errors for user and contact values that name no active member / contact of the org."""
    wanted: dict[str, set[str]] = {"user": set(), "contact": set()}
    for write in writes:
        if write.field.type in wanted and write.op != "remove":
            wanted[write.field.type].update(_as_list(write.value))
    found = {
        "user": _existing(
            session,
            select(Membership.user_id).where(
                Membership.organization_id == organization_id,
                Membership.is_active.is_(True),
                Membership.user_id.in_(sorted(wanted["user"])),
            ),
            wanted["user"],
        ),
        "contact": _existing(
            session,
            select(Contact.id).where(
                Contact.organization_id == organization_id,
                Contact.id.in_(sorted(wanted["contact"])),
            ),
            wanted["contact"],
        ),
    }
    errors: dict[str, str] = {}
    for write in writes:
        kind = write.field.type
        if kind not in wanted or write.op == "remove":
            continue
        missing = [v for v in _as_list(write.value) if v not in found[kind]]
        if missing:
            errors[write.key] = MISSING_REFERENCE[kind].format(missing[0])
    return errors


MISSING_REFERENCE = {
    "user": "No active user of this organization has the id {}.",
    "contact": "No contact of this organization has the id {}.",
}


def _existing(session: Session, query: Any, wanted: set[str]) -> set[str]:
    return set(session.scalars(query)) if wanted else set()


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# --- One value of each type --------------------------------------------------------------------

_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _text(_field: CustomField, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidValue("Must be a string.")
    return value


def _number(_field: CustomField, value: Any) -> int | float:
    # bool is an int in Python, but `true` is not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue("Must be a number.")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidValue("Must be a finite number.")
    return value


def _date(_field: CustomField, value: Any) -> str:
    message = "Must be a date in the format YYYY-MM-DD."
    if not isinstance(value, str) or not _DATE.match(value):
        raise InvalidValue(message)
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidValue(message) from None


def _datetime(_field: CustomField, value: Any) -> str:
    """Any ISO 8601 date-time (naive means UTC), stored in UTC with a fixed-width format so
    that stored values sort as text in time order."""
    message = "Must be an ISO 8601 date and time, e.g. 2014-06-27T22:00:00-08:00."
    if not isinstance(value, str):
        raise InvalidValue(message)
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        stored = iso_utc(moment.astimezone(UTC))
    except (ValueError, OverflowError):
        raise InvalidValue(message) from None
    assert stored is not None
    return stored


def _choice(field: CustomField, value: Any) -> str:
    if not isinstance(value, str) or value not in (field.choices or []):
        raise InvalidValue(f"{json.dumps(value)} is not one of this field's choices.")
    return value


def _any_string(_field: CustomField, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidValue("Must be a string.")
    return value


def _hidden(_field: CustomField, value: Any) -> Any:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return _number(_field, value)
    raise InvalidValue("Must be a string, a number or a boolean.")


# user and contact values are ids: their type is checked here, their existence in one query each.
NORMALIZERS: dict[str, Callable[[CustomField, Any], Any]] = {
    "text": _text,
    "number": _number,
    "date": _date,
    "datetime": _datetime,
    "choices": _choice,
    "user": _any_string,
    "contact": _any_string,
    "hidden": _hidden,
}


def _normalizer(field: CustomField) -> Callable[[CustomField, Any], Any]:
    return NORMALIZERS[field.type]
