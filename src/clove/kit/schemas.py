"""Base class for request bodies."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
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
    """Why some string inside `value` cannot be stored, or None. Iterative: JSON nested
    thousands of levels deep must be a 400, not a RecursionError."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "Null characters are not allowed."
            if _SURROGATE.search(item):
                return "Invalid Unicode: lone surrogate characters are not allowed."
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


class PatchBody(Body):
    """A partial update (every Close PUT): omitted fields stay; explicit null only where allowed."""

    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null(self) -> PatchBody:
        for name in self._declared_set():
            if getattr(self, name) is None and name not in self.nullable:
                raise PydanticCustomError(
                    "null", "{field}: This field may not be null.", {"field": name}
                )
        return self

    def changes(self) -> dict[str, Any]:
        """The declared fields the body sets (extra keys such as custom values excluded)."""
        return {name: getattr(self, name) for name in self._declared_set()}

    def _declared_set(self) -> set[str]:
        return self.model_fields_set & type(self).model_fields.keys()


class _Unknown:
    """Stands in for the value of a key that is neither a field, read-only, nor `custom.*`."""


def _custom_value(value: Any) -> Any:
    if isinstance(value, _Unknown):
        raise PydanticCustomError("extra_forbidden", "Unknown field.")
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


CustomValue = Annotated[Any, AfterValidator(_custom_value)]


class TolerantBody(Body):
    """A body that ignores the read-only fields of the object it writes.

    Clients (restore and import scripts) POST or PUT whole objects they got back earlier,
    `id`, `date_created` and all; those fields are dropped, any other unknown key is refused.
    """

    read_only: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _drop_read_only(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {k: v for k, v in data.items() if k in cls.model_fields or k not in cls.read_only}


class ObjectBody(TolerantBody):
    """A body of an object with custom fields: `custom.<field id>[.add|.remove]` keys are kept
    for the custom field service; other unknown keys are 400 "Unknown field."."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, CustomValue] = Field(init=False)

    @model_validator(mode="before")
    @classmethod
    def _mark_unknown(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = cls.model_fields.keys() | cls.read_only
        return {
            k: v if k in known or k.startswith("custom.") else _Unknown() for k, v in data.items()
        }

    def custom_writes(self) -> dict[str, Any]:
        """The `custom.*` entries of the body."""
        return dict(self.model_extra or {})


class ObjectPatch(ObjectBody, PatchBody):
    """A partial update of an object with custom fields."""

    # Pydantic merges configs along the bases; keep ObjectBody's: custom keys are extras.
    model_config = ConfigDict(extra="allow")
