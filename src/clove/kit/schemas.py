"""Base class for request bodies."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pydantic_core import PydanticCustomError


class Body(BaseModel):
    """A JSON request body: unknown fields are errors, and text may not hold NUL characters
    or lone UTF-16 surrogates (valid JSON escapes such as `\\ud800`, but not Unicode text).

    PostgreSQL cannot store NUL in text, and no database can store a lone surrogate as UTF-8,
    so both are refused for every database alike.
    """

    # strict: "yes" is not a boolean and "5" is not a number, as a typed JSON API expects.
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _clean_text(cls, value: Any) -> Any:
        problem = text_problem(value)
        if problem:
            raise ValueError(problem)
        return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: Any) -> str | None:
    """Why some string inside `value` cannot be stored, or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return "Null characters are not allowed."
        if _SURROGATE.search(value):
            return "Invalid Unicode: lone surrogate characters are not allowed."
        return None
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list | tuple):
        return next((p for p in map(text_problem, value) if p), None)
    return None


class PatchBody(Body):
    """A partial update (every Close PUT): omitted fields stay; explicit null only where allowed."""

    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null(self) -> PatchBody:
        for name in self.model_fields_set:
            if getattr(self, name) is None and name not in self.nullable:
                raise PydanticCustomError(
                    "null", "{field}: This field may not be null.", {"field": name}
                )
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


_text_problem = text_problem  # TEMP alias while contact/schemas.py moves to the public name
