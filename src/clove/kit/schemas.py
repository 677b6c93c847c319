"""Base class for request bodies."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pydantic_core import PydanticCustomError


class Body(BaseModel):
    """A JSON request body: unknown fields are errors, and text may not hold NUL characters.

    PostgreSQL cannot store NUL in text, so it is refused for every database alike.
    """

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise ValueError("Null characters are not allowed.")
        return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


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
