"""Reading and writing rows cheaply: change only what differs, insert many rows at once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, insert
from sqlalchemy.orm import Session

from clove.models import Base

# Which rows a list shows (a condition) and in which order: what `?query=` turns into.
Listing = tuple[ColumnElement[bool], Sequence[ColumnElement[Any]]]


def assign_changed(row: Base, values: dict[str, Any]) -> None:
    """Sets only the attributes whose value differs, so that an unchanged row stays clean
    (a flushed UPDATE would move `date_updated` through the column's `onupdate`)."""
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)


def insert_rows(session: Session, rows: Sequence[Base]) -> None:
    """Inserts new rows with one statement per table (an executemany).

    The unit of work would insert rows whose ids the database generates one at a time on
    SQLite, to read each id back; nothing here needs those ids.
    """
    by_model: dict[type[Base], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        columns = row.__table__.columns
        by_model[type(row)].append({c.key: getattr(row, c.key) for c in columns if c.key != "id"})
    for model, values in by_model.items():
        session.execute(insert(model), values)
