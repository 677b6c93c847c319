from __future__ import annotations

from pydantic import Field

from clove.kit.schemas import Body


class ApiKeyCreate(Body):
    name: str = Field(default="", max_length=200)
