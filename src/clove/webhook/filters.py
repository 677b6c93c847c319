"""Webhook `extra_filter` trees (close-api.md §6.2): checking them and matching events.

A filter is applied to the event document (the event as `serialize_event` writes it) and moves
through it with `field_accessor` and `any_array_value`; the other node types test the value
they are handed. Choices where Close's docs are silent or loose:

- `field` is one literal key, never a dotted path. Close's examples reach nested objects by
  nesting accessors (`data` then `user_id`; `data` then `addresses`) and use a dotted name only
  for `custom.cf_…`, which is a literal key of lead `data`. Walking `a.b` when the literal key
  is absent would accept filters that, as documented, match nothing at Close, and is ambiguous
  for keys that contain dots.
- A missing key, or any step from a value that is not an object, gives null: `is_null` matches
  and `not_equals` matches.
- `equals` is JSON equality: `true` differs from `1` (also inside arrays and objects), `1`
  equals `1.0`, strings are case-sensitive.
- `contains` is array membership (with that equality) on an array, a case-sensitive substring
  test on a string with a string value, and false for anything else.
- `any_array_value` is false on a value that is not an array (including an empty one).
- An empty `and` matches everything and an empty `or` nothing, as in logic; Close's docs do not
  say whether it refuses them, and refusing a filter Close accepts would break clients.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 20
MAX_NODES = 200

# Keys each node type takes besides `type`, and whether each is a value, a field name, one
# child node or a list of child nodes.
_SHAPES: dict[str, dict[str, str]] = {
    "equals": {"value": "value"},
    "not_equals": {"value": "value"},
    "contains": {"value": "value"},
    "is_null": {},
    "non_null": {},
    "and": {"filters": "nodes"},
    "or": {"filters": "nodes"},
    "not": {"filter": "node"},
    "field_accessor": {"field": "field", "filter": "node"},
    "any_array_value": {"filter": "node"},
}
_TYPE_NAMES = ", ".join(_SHAPES)


class FilterError(ValueError):
    """A malformed filter.

    `.path` is like 'extra_filter.filters[1].filter' and str() says what is wrong there, so
    the two make a Close field error.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def check_filter(node: object, path: str = "extra_filter") -> None:
    """Raises FilterError for anything that is not a well-formed filter tree.

    That is: not an object, an unknown type, missing or extra keys, keys of the wrong kind,
    nesting deeper than 20 or more than 200 nodes.
    """
    # Depth first, children in order, so the error reported is the first one in the document.
    stack: list[tuple[object, str, int]] = [(node, path, 1)]
    seen = 0
    while stack:
        current, current_path, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise FilterError(current_path, f"a filter may have at most {MAX_NODES} nodes")
        if depth > MAX_DEPTH:
            raise FilterError(current_path, f"a filter may be nested at most {MAX_DEPTH} deep")
        children = _check_node(current, current_path)
        stack.extend((child, child_path, depth + 1) for child, child_path in reversed(children))


def _check_node(node: object, path: str) -> list[tuple[object, str]]:
    """Checks one node's own keys and returns its children with their paths."""
    if not isinstance(node, dict):
        raise FilterError(path, "must be an object")
    if "type" not in node:
        raise FilterError(f"{path}.type", "is required")
    kind = node["type"]
    if not isinstance(kind, str):
        raise FilterError(f"{path}.type", "must be a string")
    shape = _SHAPES.get(kind)
    if shape is None:
        raise FilterError(f"{path}.type", f"unknown filter type {kind!r}; one of {_TYPE_NAMES}")
    for key in node:
        if key != "type" and key not in shape:
            raise FilterError(f"{path}.{key}", f"is not allowed in a {kind!r} filter")
    children: list[tuple[object, str]] = []
    for key, role in shape.items():
        key_path = f"{path}.{key}"
        if key not in node:
            raise FilterError(key_path, f"is required in a {kind!r} filter")
        item = node[key]
        if role == "node":
            children.append((item, key_path))
        elif role == "nodes":
            if not isinstance(item, list):
                raise FilterError(key_path, "must be a list of filters")
            if len(item) >= MAX_NODES:  # refused before a huge list is walked
                raise FilterError(key_path, f"a filter may have at most {MAX_NODES} nodes")
            children.extend((child, f"{key_path}[{i}]") for i, child in enumerate(item))
        elif role == "field":
            if not isinstance(item, str):
                raise FilterError(key_path, "must be a string")
        elif not _is_json(item):
            raise FilterError(key_path, "must be a JSON value")
    return children


def _is_json(value: object) -> bool:
    """True for what JSON carries: null, booleans, numbers, strings, arrays, objects."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                return False
            stack.extend(item.values())
        elif item is not None and not isinstance(item, str | int | float):
            return False
    return True


def matches(node: dict[str, Any], document: Any) -> bool:
    """True when `document` passes the (already checked) filter tree."""
    return _matches(node, document, 1)


def _matches(node: dict[str, Any], value: Any, depth: int) -> bool:
    # check_filter bounds depth; this guard keeps an unchecked tree from exhausting the stack.
    if depth > MAX_DEPTH:
        raise FilterError("extra_filter", f"a filter may be nested at most {MAX_DEPTH} deep")
    kind = node["type"]
    if kind == "field_accessor":
        inner = value.get(node["field"]) if isinstance(value, dict) else None
        return _matches(node["filter"], inner, depth + 1)
    if kind == "any_array_value":
        return isinstance(value, list) and any(
            _matches(node["filter"], item, depth + 1) for item in value
        )
    if kind == "and":
        return all(_matches(child, value, depth + 1) for child in node["filters"])
    if kind == "or":
        return any(_matches(child, value, depth + 1) for child in node["filters"])
    if kind == "not":
        return not _matches(node["filter"], value, depth + 1)
    if kind == "equals":
        return _json_equal(value, node["value"])
    if kind == "not_equals":
        return not _json_equal(value, node["value"])
    if kind == "is_null":
        return value is None
    if kind == "non_null":
        return value is not None
    if kind == "contains":
        return _contains(value, node["value"])
    raise FilterError("extra_filter.type", f"unknown filter type {kind!r}")


def _contains(value: Any, needle: Any) -> bool:
    if isinstance(value, list):
        return any(_json_equal(item, needle) for item in value)
    if isinstance(value, str) and isinstance(needle, str):
        return needle in value
    return False


def _json_equal(left: Any, right: Any) -> bool:
    """Python equality, except that a boolean never equals a number, at any nesting level."""
    pairs = [(left, right)]
    while pairs:
        a, b = pairs.pop()
        if isinstance(a, bool) or isinstance(b, bool):
            if type(a) is not type(b) or a != b:
                return False
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                return False
            pairs.extend(zip(a, b, strict=True))
        elif isinstance(a, dict) and isinstance(b, dict):
            if a.keys() != b.keys():
                return False
            pairs.extend((a[key], b[key]) for key in a)
        elif a != b:
            return False
    return True
