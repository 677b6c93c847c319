"""Portable SQL expressions for set-based writes (INSERT ... SELECT) on SQLite and PostgreSQL.

Bulk actions create thousands of rows per statement, so the values Python would normally
make (ids, JSON documents) are computed by the database instead.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import String, Text, cast, literal, literal_column, null
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from clove.kit.ids import PREFIX_LENGTHS


class random_id(FunctionElement[str]):
    """A fresh `<prefix>_<random>` id per row. The suffix is hexadecimal (a subset of the
    base62 alphabet Python ids use), 88 random bits for 22-character suffixes."""

    type = String()
    inherit_cache = True

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.length = PREFIX_LENGTHS[prefix]
        super().__init__()


@compiles(random_id, "postgresql")
def _random_id_pg(element: random_id, compiler: SQLCompiler, **kw: Any) -> str:
    # gen_random_uuid() is built in from PostgreSQL 13; two of them give 64 hex digits.
    uuids = "replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')"
    return f"('{element.prefix}_' || substr({uuids}, 1, {element.length}))"


@compiles(random_id, "sqlite")
def _random_id_sqlite(element: random_id, compiler: SQLCompiler, **kw: Any) -> str:
    nbytes = (element.length + 1) // 2
    return f"('{element.prefix}_' || substr(lower(hex(randomblob({nbytes}))), 1, {element.length}))"


class json_object(FunctionElement[Any]):
    """A JSON object built per row from `key=column` pairs (json_build_object / json_object)."""

    type = Text()
    inherit_cache = True

    def __init__(self, **pairs: ColumnElement[Any] | str | None) -> None:
        args: list[Any] = []
        for key, value in pairs.items():
            # Keys are names from our code, written inline; constant values are bound with a
            # type, as PostgreSQL cannot infer one for a parameter of a variadic function.
            args.append(literal_column(f"'{key}'"))
            if value is None:
                args.append(null())
            elif isinstance(value, str):
                args.append(cast(literal(value), String))
            else:
                args.append(value)
        super().__init__(*args)


@compiles(json_object, "postgresql")
def _json_object_pg(element: json_object, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_build_object({compiler.process(element.clause_expr.element, **kw)})"


@compiles(json_object, "sqlite")
def _json_object_sqlite(element: json_object, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_object({compiler.process(element.clause_expr.element, **kw)})"


class json_value(FunctionElement[Any]):
    """A constant JSON document (a list or dict from Python) usable in a SELECT list."""

    type = Text()
    inherit_cache = True

    def __init__(self, value: Any) -> None:
        super().__init__(literal(json.dumps(value), Text()))


@compiles(json_value, "postgresql")
def _json_value_pg(element: json_value, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clause_expr.element, **kw)} AS JSON)"


@compiles(json_value, "sqlite")
def _json_value_sqlite(element: json_value, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json({compiler.process(element.clause_expr.element, **kw)})"
